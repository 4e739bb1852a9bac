#!/usr/bin/env bash
# The project's two everyday commands. Installs the Debian packages it needs when missing.
#   ./dev.sh run EXAMPLE [ARGS...]   build and run one of examples/ (pool, pool_pids, ...)
#   ./dev.sh test                    build everything; run the test suite, the benchmarks' smoke
#                                    runs, the test suite again under ASan+UBSan, the thread
#                                    stress tests under ThreadSanitizer, and the libFuzzer targets
#                                    for 20 s each
set -euo pipefail
cd "$(dirname "$0")"

# clang and libclang-rt-dev (libFuzzer's runtime, which clang only recommends) for the fuzz preset.
packages=(cmake make g++ clang libclang-rt-dev libboost-dev libgtest-dev libbenchmark-dev)

install_missing() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "dev.sh: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

jobs=$(nproc)
case "${1:-}" in
  run)
    [ $# -ge 2 ] || { echo "usage: ./dev.sh run EXAMPLE [ARGS...]" >&2; exit 2; }
    example=$2
    shift 2
    install_missing
    cmake --preset default >/dev/null
    cmake --build --preset default -j"$jobs" --target "$example"
    exec "./build/default/examples/$example" "$@"
    ;;
  test)
    install_missing
    cmake --preset default
    cmake --build --preset default -j"$jobs"
    ctest --preset default -j1
    cmake --preset asan
    cmake --build --preset asan -j"$jobs"
    ctest --preset asan -j1
    cmake --preset tsan
    cmake --build --preset tsan -j"$jobs" --target forkpool_stress_tests
    ctest --preset tsan
    cmake --preset fuzz
    cmake --build --preset fuzz -j"$jobs"
    ctest --preset fuzz
    ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
