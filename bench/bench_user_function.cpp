// forkpool/bench.hpp on a function of your own: one line registers the sequential loop and every
// scheduling strategy, and Google Benchmark prints how each compares (vs_ideal = 1 is a perfect
// speed-up). Run it with ./build/default/bench/bench_user_function; Google Benchmark's flags
// apply, e.g. --benchmark_filter='guided|sequential' or --benchmark_repetitions=3.
//
// The function: the Collatz stopping time of each start value, whose cost varies from item to
// item without a pattern, as real per-item work often does.
#include <forkpool/bench.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>

namespace {

std::int64_t collatz_steps(std::int64_t n) {
  std::int64_t steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

}  // namespace

int main(int argc, char** argv) {
  forkpool::bench::register_strategies("collatz", forkpool::range(1, 500'001),
                                       [](std::int64_t i) { return collatz_steps(i); });
  // A choice of strategies and of the number of workers:
  //   forkpool::bench::register_strategies(
  //       "collatz", forkpool::range(1, 500'001), [](std::int64_t i) { return collatz_steps(i); },
  //       forkpool::bench::Setup{.processes = 4,
  //                              .strategies = {forkpool::Schedule::guided(),
  //                                             forkpool::Schedule::work_stealing()}});
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return forkpool::bench::failed() ? 1 : 0;
}
