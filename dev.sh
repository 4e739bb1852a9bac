#!/usr/bin/env bash
# The project's everyday commands. Installs the Debian packages it needs when missing.
#   ./dev.sh run EXAMPLE [ARGS...]   build and run one of examples/ (pool, pool_pids, ...)
#   ./dev.sh test                    build everything; run the test suite, the benchmarks' smoke
#                                    runs, the test suite again under ASan+UBSan, the thread
#                                    stress tests under ThreadSanitizer, and the libFuzzer targets
#                                    for 20 s each
#   ./dev.sh report [OUTDIR]         run bench_strategies (about 20 minutes) and trace_chunks;
#                                    write report.md, strategies.png and chunks.png into OUTDIR
#                                    (default bench/reports/) with bench/report.py (its inputs
#                                    stay in build/default/bench/)
set -euo pipefail
cd "$(dirname "$0")"

# clang and libclang-rt-dev (libFuzzer's runtime, which clang only recommends) for the fuzz preset.
# libtbb-dev and python3-matplotlib for the comparison with oneTBB and the plots of ./dev.sh report.
packages=(cmake make g++ clang libclang-rt-dev libboost-dev libgtest-dev libbenchmark-dev libtbb-dev
          python3-matplotlib)

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
  report)
    out=${2:-bench/reports}
    install_missing
    cmake --preset default >/dev/null
    cmake --build --preset default -j"$jobs" --target bench_strategies trace_chunks
    # report.py calls the machine busy when the 1-minute load average at the start is above 0.75
    # per CPU; a build just before raises it for a minute or two. Wait (up to 3 minutes) for it to
    # fall, so that the warning speaks of other processes only.
    for i in $(seq 90); do
      awk -v cpus="$jobs" '{ exit !($1 > 0.75 * cpus) }' /proc/loadavg || break
      [ "$i" -gt 1 ] ||
        echo "dev.sh: waiting for the load average to fall from $(cut -d' ' -f1 /proc/loadavg)" >&2
      sleep 2
    done
    # The raw results stay with the build (the trace is megabytes); report.py reruns on them.
    results=build/default/bench/strategies.json
    short_results=build/default/bench/strategies_short.json
    trace=build/default/bench/trace_heavytail.csv
    # Repetitions interleaved at random: a burst of load from other processes then falls on
    # every system alike, not on a run of neighbours (bench_strategies forks before any thread).
    strategies() {  # REPETITIONS SECONDS FILTER OUT
      ./build/default/bench/bench_strategies --benchmark_repetitions="$1" \
        --benchmark_min_time="$2" --benchmark_filter="$3" \
        --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
        --benchmark_out="$4" --benchmark_out_format=json
    }
    strategies 5 0.5 '^(uniform|triangular|heavytail|bimodal|mandelbrot)/' "$results"
    # The maps of a millisecond or less (seed_1e6, tiny) run 10-25% slower or faster for minutes
    # at a time on this VM, on every system alike. 15 repetitions of 0.5 s sample those spells
    # unevenly (two strategies doing the same work differed by 20% in a run); 100 of 0.05 s,
    # spread over the whole run, put them in every system's median alike (about 7 minutes).
    strategies 100 0.05 '^(seed_1e6|tiny)/' "$short_results"
    ./build/default/bench/trace_chunks --workload=heavytail --out="$trace"
    # The Debian python3, which has python3-matplotlib: a pyenv or virtualenv python3 earlier on
    # PATH may not.
    python=/usr/bin/python3
    [ -x "$python" ] || python=python3
    "$python" bench/report.py "$results" "$short_results" --trace "$trace" \
      --trace-workload heavytail --out "$out"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
