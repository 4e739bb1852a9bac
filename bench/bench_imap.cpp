// What streaming costs: Pool::imap and imap_unordered against Pool::map on the same uniform
// workload (20000 items of about 10 us, or 1 us: the benchmark's argument; workloads::spin), every
// result read and summed (a wrong sum fails the run). One iteration is one whole map or stream on
// a warm Pool(2); times are wall-clock.
//
//   build/default/bench/bench_imap --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include "workloads.hpp"

#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <map>
#include <optional>

namespace {

constexpr std::int64_t kItems = 20000;

// About `us` microseconds of work per item (workloads::K iterations are about 2 us).
struct Item {
  std::uint64_t iterations;
  std::uint64_t operator()(std::int64_t i) const {
    return workloads::spin(static_cast<std::uint64_t>(i), iterations) % 7 +
           static_cast<std::uint64_t>(i);
  }
};

Item item(const benchmark::State& state) {
  return {static_cast<std::uint64_t>(state.range(0)) * workloads::K / 2};
}

void check(benchmark::State& state, std::uint64_t sum) {
  static std::map<std::uint64_t, std::uint64_t> expected;
  const Item f = item(state);
  auto [at, added] = expected.try_emplace(f.iterations, 0);
  if (added)
    for (std::int64_t i = 0; i < kItems; ++i) at->second += f(i);
  if (sum != at->second) state.SkipWithError("wrong sum");
}

forkpool::Pool& pool() {
  static forkpool::Pool p(forkpool::Options{.processes = 2});
  return p;
}

// Times one_run() (a map or a stream, returning the sum of its results) and checks its sum.
template <class Run>
void measure(benchmark::State& state, Run one_run) {
  for (auto _ : state) {
    const std::uint64_t sum = one_run();
    state.PauseTiming();
    check(state, sum);
    state.ResumeTiming();
  }
}

void map(benchmark::State& state, std::optional<forkpool::Schedule> s) {
  const Item f = item(state);
  measure(state, [&] {
    const auto out =
        s ? pool().map(f, forkpool::range(kItems), *s) : pool().map(f, forkpool::range(kItems));
    std::uint64_t sum = 0;
    for (std::uint64_t r : out) sum += r;
    return sum;
  });
}

void imap(benchmark::State& state, forkpool::ImapOptions o) {
  const Item f = item(state);
  measure(state, [&] {
    std::uint64_t sum = 0;
    for (std::uint64_t r : pool().imap(f, forkpool::range(kItems), o)) sum += r;
    return sum;
  });
}

void imap_unordered(benchmark::State& state, forkpool::ImapOptions o) {
  const Item f = item(state);
  measure(state, [&] {
    std::uint64_t sum = 0;
    for (const auto& r : pool().imap_unordered(f, forkpool::range(kItems), o)) sum += r.value;
    return sum;
  });
}

void configure(benchmark::internal::Benchmark* b) {
  b->Arg(10)->Arg(1)->ArgName("us")->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(map, default_schedule, std::nullopt)->Apply(configure);
BENCHMARK_CAPTURE(map, dynamic_1, forkpool::Schedule::dynamic(1))->Apply(configure);
BENCHMARK_CAPTURE(imap, default_options, forkpool::ImapOptions{})->Apply(configure);
BENCHMARK_CAPTURE(imap, chunksize_16, forkpool::ImapOptions{.chunksize = 16})->Apply(configure);
BENCHMARK_CAPTURE(imap, ahead_64, forkpool::ImapOptions{.ahead = 64})->Apply(configure);
BENCHMARK_CAPTURE(imap_unordered, default_options, forkpool::ImapOptions{})->Apply(configure);
BENCHMARK_CAPTURE(imap_unordered, chunksize_16, forkpool::ImapOptions{.chunksize = 16})
    ->Apply(configure);

}  // namespace

BENCHMARK_MAIN();
