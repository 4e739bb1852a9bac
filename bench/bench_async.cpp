// What a submitted task costs on top of its work: 10^4 trivial tasks submitted then collected
// (they run in batches, as maps over a table of tasks) against a plain map of 10^4 items; and one
// apply at a time (a round trip through the dispatcher thread and a map of one item each) against
// one map of one item at a time.
// items_per_second counts tasks (or map items) per second of wall time. Run:
// ./build/default/bench/bench_async
#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

namespace {

constexpr std::int64_t kTasks = 10'000;

std::int64_t twice(std::int64_t x) { return 2 * x; }

forkpool::Pool& pool() {
  static forkpool::Pool p(2);
  return p;
}

void per_task(benchmark::State& state, std::int64_t tasks) {
  state.SetItemsProcessed(state.iterations() * tasks);
}

void submit_then_get(benchmark::State& state) {
  std::vector<forkpool::Future<std::int64_t>> futures;
  futures.reserve(kTasks);
  for (auto _ : state) {
    for (std::int64_t i = 0; i < kTasks; ++i) futures.push_back(pool().submit(&twice, i));
    for (std::int64_t i = 0; i < kTasks; ++i)
      if (futures[static_cast<std::size_t>(i)].get() != 2 * i) state.SkipWithError("wrong result");
    futures.clear();
  }
  per_task(state, kTasks);
}

void apply_one_at_a_time(benchmark::State& state) {
  constexpr std::int64_t kApplies = 1000;
  for (auto _ : state)
    for (std::int64_t i = 0; i < kApplies; ++i)
      if (pool().apply(&twice, i) != 2 * i) state.SkipWithError("wrong result");
  per_task(state, kApplies);
}

void map_of_one_item_at_a_time(benchmark::State& state) {
  constexpr std::int64_t kMaps = 1000;
  for (auto _ : state)
    for (std::int64_t i = 0; i < kMaps; ++i)
      if (pool().map(&twice, forkpool::range(i, i + 1))[0] != 2 * i)
        state.SkipWithError("wrong result");
  per_task(state, kMaps);
}

void map_of_the_same_count(benchmark::State& state) {
  for (auto _ : state) {
    const auto out = pool().map(&twice, forkpool::range(kTasks));
    if (out[kTasks - 1] != 2 * (kTasks - 1)) state.SkipWithError("wrong result");
  }
  per_task(state, kTasks);
}

void map_dynamic_1_of_the_same_count(benchmark::State& state) {
  for (auto _ : state) {
    const auto out = pool().map(&twice, forkpool::range(kTasks), forkpool::Schedule::dynamic(1));
    if (out[kTasks - 1] != 2 * (kTasks - 1)) state.SkipWithError("wrong result");
  }
  per_task(state, kTasks);
}

BENCHMARK(submit_then_get)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(apply_one_at_a_time)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(map_of_one_item_at_a_time)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(map_of_the_same_count)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(map_dynamic_1_of_the_same_count)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
