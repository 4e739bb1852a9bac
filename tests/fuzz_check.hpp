// CHECK for the libFuzzer targets: a broken property aborts, naming itself, and libFuzzer keeps
// the input that broke it. (A bare trap in an optimised build points at no particular line.)
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHECK(ok) ((ok) ? void(0) : forkpool_fuzz_fail(__FILE__, __LINE__, #ok))

[[noreturn]] inline void forkpool_fuzz_fail(const char* file, int line, const char* property) {
  std::fprintf(stderr, "%s:%d: broken: %s\n", file, line, property);
  std::abort();
}
