# Warnings, sanitizers and fuzzing instrumentation for forkpool's own targets.

function(forkpool_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic $<$<BOOL:${FORKPOOL_WERROR}>:-Werror>)
endfunction()

set(_forkpool_sanitizers "" "address,undefined" "thread")
if(NOT FORKPOOL_SANITIZE IN_LIST _forkpool_sanitizers)
  message(FATAL_ERROR "FORKPOOL_SANITIZE='${FORKPOOL_SANITIZE}': supported values are '', "
                      "'address,undefined' and 'thread'")
endif()
if(FORKPOOL_SANITIZE)
  add_compile_options(-fsanitize=${FORKPOOL_SANITIZE} -fno-omit-frame-pointer -g)
  add_link_options(-fsanitize=${FORKPOOL_SANITIZE})
  if(FORKPOOL_SANITIZE STREQUAL "address,undefined")
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
endif()

# libFuzzer's coverage instrumentation on everything, the library included, so that the fuzz targets
# are guided by the branches of the code they call; only they link the fuzzer's main.
if(FORKPOOL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "FORKPOOL_FUZZ needs clang++ (libFuzzer); the fuzz preset sets it")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
