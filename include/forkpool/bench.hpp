// forkpool/bench.hpp: compare every scheduling strategy on your own function, in one line, with
// Google Benchmark (link benchmark::benchmark yourself; this header is all there is).
//
//   #include <forkpool/bench.hpp>
//
//   int main(int argc, char** argv) {
//     forkpool::bench::register_strategies("my_loop", forkpool::range(0, n),
//                                          [](std::int64_t i) { return work(i); });
//     benchmark::Initialize(&argc, argv);
//     benchmark::RunSpecifiedBenchmarks();
//     return forkpool::bench::failed() ? 1 : 0;
//   }
//
// registers, each with UseRealTime() and times in milliseconds,
//   my_loop/sequential    the plain loop on the calling thread: the baseline
//   my_loop/<strategy>    the map on a Pool with each schedule of Setup::strategies (by default
//                         strategies(), the whole portfolio), named by Schedule::name():
//                         my_loop/dynamic(64), my_loop/work_stealing(auto), ...
// What runs: f(i) returning an arithmetic type is summed, with Pool::map_reduce and +, integers in
// std::uint64_t (wrapping, so any order gives the same sum) and floating point in double: no array
// of N results, and nothing the optimiser can drop. f returning void runs with Pool::for_each.
// Integer sums are checked against the sequential loop's, so f must be deterministic; a difference
// (typically f reading data that changed after the fork, which the workers do not see) fails that
// benchmark, as does an exception.
//
// Counters:
//   items_per_second   items of the range per second of wall time
//   vs_ideal           time / (sequential time / P): 1 is a perfect speed-up
//   efficiency         sequential time / (P * time) = 1 / vs_ideal
//   makespan, imbalance, chunks, steals, sched_ops (strategies only): Pool::last_stats() of the
//                      last iteration (forkpool/stats.hpp); makespan in ms
// The sequential time is the best of kBaselineRuns timings of the loop (measure_baseline), taken
// once per name by the first of its benchmarks to run, so that every ratio comes from one run.
//
// The pool: every benchmark registered here with P workers shares one Pool(P) (shared_pool),
// built when the first of them runs and kept until exit. Its workers see the parent's memory as it
// was then, so build f's data before running the benchmarks. A fork while other threads run is
// hazardous (a lock they hold stays locked in the workers): a program that also benchmarks
// threads (OpenMP, oneTBB) calls shared_pool(P) in main, before any of them starts.
//
// The pieces below register_strategies (Baseline, measure, the counters) are public so that a
// comparison with other systems can report the same counters: bench/bench_strategies.cpp.
#pragma once

#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace forkpool::bench {

// The portfolio of schedule.hpp, each schedule with its default parameters; static_chunked and
// dynamic need a chunk size: 64 (OpenMP's usual choice), and dynamic(1) as the extreme.
inline std::vector<Schedule> strategies() {
  return {Schedule::static_blocks(),
          Schedule::static_chunked(64),
          Schedule::dynamic(1),
          Schedule::dynamic(64),
          Schedule::guided(),
          Schedule::trapezoid(),
          Schedule::factoring(),
          Schedule::fixed_size(),
          Schedule::adaptive_factoring(),
          Schedule::work_stealing(),
          Schedule::adaptive_stealing(),
          Schedule::python(),
          Schedule::automatic()};
}

struct Setup {
  unsigned processes = 0;  // workers; 0 means cpu_count()
  std::vector<Schedule> strategies = forkpool::bench::strategies();
};

// The Pool(processes) that the benchmarks of this process share (0 means cpu_count()), built on
// the first call and kept until exit.
inline Pool& shared_pool(unsigned processes = 0) {
  static std::map<unsigned, std::unique_ptr<Pool>> pools;
  const unsigned p = processes == 0 ? cpu_count() : processes;
  std::unique_ptr<Pool>& pool = pools[p];
  if (!pool) pool = std::make_unique<Pool>(p);
  return *pool;
}

namespace detail {
inline bool& any_failed() {
  static bool failed = false;
  return failed;
}
}  // namespace detail

// Fails the running benchmark. Google Benchmark still exits with 0 after one failed, hence
// failed().
inline void fail(benchmark::State& state, const std::string& message) {
  detail::any_failed() = true;
  state.SkipWithError(message.c_str());
}

// Whether a benchmark failed (a wrong result, an exception): main's exit status.
inline bool failed() { return detail::any_failed(); }

// The result of a run of f that returns nothing.
struct NoResult {};

// The sequential loop's result and its best time.
template <class T>
struct Baseline {
  T result;
  double seconds;
};

inline constexpr int kBaselineRuns = 3;
// A loop shorter than this is timed over repeated runs, so that the clock's own cost (tens of
// nanoseconds) does not count as the loop's.
inline constexpr double kBaselineMinSeconds = 1e-3;

// Times loop() kBaselineRuns times (each time over enough calls to last kBaselineMinSeconds) and
// keeps the best time, per call: the fastest is the one least disturbed by the rest of the machine.
template <class Loop>
auto measure_baseline(Loop loop) {
  using Clock = std::chrono::steady_clock;
  Baseline<decltype(loop())> best{{}, 0.0};
  const auto seconds_per_call = [&](std::int64_t calls) {
    const auto t0 = Clock::now();
    for (std::int64_t k = 0; k < calls; ++k) {
      best.result = loop();
      benchmark::DoNotOptimize(best.result);
      benchmark::ClobberMemory();  // no hoisting the loop out of the calls
    }
    return std::chrono::duration<double>(Clock::now() - t0).count() / static_cast<double>(calls);
  };
  std::int64_t calls = 1;
  best.seconds = seconds_per_call(calls);
  while (best.seconds * static_cast<double>(calls) < kBaselineMinSeconds) {
    calls *= 10;
    best.seconds = seconds_per_call(calls);
  }
  for (int k = 1; k < kBaselineRuns; ++k)
    best.seconds = std::min(best.seconds, seconds_per_call(calls));
  return best;
}

// vs_ideal and efficiency of a run taking `seconds` per iteration, against the sequential time on
// P = processes workers.
inline void set_ratio_counters(benchmark::State& state, double seconds, double sequential_seconds,
                               unsigned processes) {
  const double ideal = sequential_seconds / processes;
  state.counters["vs_ideal"] = seconds / ideal;
  state.counters["efficiency"] = ideal / seconds;
}

// What the pool says the last map did (stats.hpp): makespan (ms), imbalance, chunks, steals and
// sched_ops (MapStats::scheduling_operations).
inline void set_stats_counters(benchmark::State& state, const MapStats& stats) {
  state.counters["makespan"] = std::chrono::duration<double, std::milli>(stats.makespan).count();
  state.counters["imbalance"] = stats.imbalance;
  state.counters["chunks"] = static_cast<double>(stats.total_chunks());
  state.counters["steals"] = static_cast<double>(stats.total_steals());
  state.counters["sched_ops"] = static_cast<double>(stats.scheduling_operations);
}

// The loop of one benchmark: run() once per iteration, each integer result checked against the
// baseline's; then items_per_second, vs_ideal and efficiency. A wrong result or an exception
// fails the benchmark; returns whether it succeeded.
template <class T, class Run>
bool measure(benchmark::State& state, const Baseline<T>& baseline, std::int64_t items,
             unsigned processes, Run run) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  for (auto _ : state) {
    try {
      const T result = run();
      if constexpr (std::is_integral_v<T>) {
        if (result != baseline.result) {
          fail(state, "wrong result: " + std::to_string(result) + ", the sequential loop gave " +
                          std::to_string(baseline.result) +
                          " (is f deterministic, and does it read only data that existed when "
                          "the pool was built?)");
          break;
        }
      }
    } catch (const std::exception& e) {
      fail(state, e.what());
      break;
    }
  }
  if (state.error_occurred() || state.iterations() == 0) return false;
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
  set_ratio_counters(state, seconds / static_cast<double>(state.iterations()), baseline.seconds,
                     processes);
  return true;
}

namespace detail {

// What the benchmarks sum f's results in: integers wrap in uint64, floating point adds in double
// (long double in long double); a void f gives NoResult.
template <class R>
struct SumOf {
  using type =
      std::conditional_t<std::is_integral_v<R>, std::uint64_t, std::common_type_t<R, double>>;
};
template <>
struct SumOf<void> {
  using type = NoResult;
};

// Argument checks of register_strategies, before anything is registered.
inline void check_registration(const std::string& name, Range r, const Setup& setup) {
  const std::string where = "forkpool::bench::register_strategies(\"" + name + "\"): ";
  static std::set<std::string> registered;
  if (name.empty()) throw std::invalid_argument(where + "the name is empty");
  if (registered.count(name) != 0)
    throw std::invalid_argument(where + "this name is registered already");
  if (r.first >= r.last)
    throw std::invalid_argument(where + "the range [" + std::to_string(r.first) + ", " +
                                std::to_string(r.last) + ") has no items to compare");
  if (setup.processes > Pool::max_processes())
    throw std::invalid_argument(
        where + "Setup::processes = " + std::to_string(setup.processes) +
        " is more than Pool::max_processes() = " + std::to_string(Pool::max_processes()));
  if (setup.strategies.empty()) throw std::invalid_argument(where + "Setup::strategies is empty");
  std::set<std::string> names;
  for (const Schedule& s : setup.strategies)
    if (!names.insert(s.name()).second)
      throw std::invalid_argument(where + "Setup::strategies has " + s.name() + " twice");
  registered.insert(name);
}

}  // namespace detail

// Registers name/sequential and name/<strategy> for each of setup.strategies, running f(i) for i
// in r (see the top of this file). Throws std::invalid_argument for an empty name or one already
// registered, a range without items, more processes than Pool::max_processes(), and no or
// duplicate strategies.
template <class F>
void register_strategies(const std::string& name, Range r, F f, const Setup& setup = {}) {
  static_assert(std::is_invocable_v<const F&, std::int64_t>,
                "forkpool::bench::register_strategies: f must be callable as f(std::int64_t)");
  using R = std::invoke_result_t<const F&, std::int64_t>;
  static_assert(std::is_void_v<R> || std::is_arithmetic_v<R>,
                "forkpool::bench::register_strategies: f must return void or an arithmetic type "
                "(the results are summed)");
  static_assert(std::is_trivially_copyable_v<F>,
                "forkpool::bench::register_strategies: f must be trivially copyable (it is copied "
                "into the workers' shared segment): capture values and pointers, not containers");
  detail::check_registration(name, r, setup);
  using S = typename detail::SumOf<R>::type;
  const unsigned p = setup.processes == 0 ? cpu_count() : setup.processes;
  const std::int64_t items = r.last - r.first;

  const auto sequential = [f, r] {
    if constexpr (std::is_void_v<R>) {
      for (std::int64_t i = r.first; i < r.last; ++i) f(i);
      return NoResult{};
    } else {
      S sum{};
      for (std::int64_t i = r.first; i < r.last; ++i) sum += static_cast<S>(f(i));
      benchmark::DoNotOptimize(sum);
      return sum;
    }
  };
  const auto parallel = [f, r](Pool& pool, Schedule s) {
    if constexpr (std::is_void_v<R>) {
      pool.for_each(r, f, s);
      return NoResult{};
    } else {
      return pool.map_reduce([f](std::int64_t i) { return static_cast<S>(f(i)); }, r, S{},
                             std::plus<S>{}, s);
    }
  };
  // Shared by the name's benchmarks: measured by the first that runs. nullptr after failing the
  // benchmark when the sequential loop threw.
  const auto cache = std::make_shared<std::optional<Baseline<S>>>();
  const auto baseline = [cache, sequential](benchmark::State& state) -> const Baseline<S>* {
    try {
      if (!*cache) *cache = measure_baseline(sequential);
      return &**cache;
    } catch (const std::exception& e) {
      fail(state, std::string("the sequential loop threw: ") + e.what());
      return nullptr;
    }
  };

  const auto add = [](const std::string& full_name, auto body) {
    benchmark::RegisterBenchmark(full_name.c_str(), body)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  add(name + "/sequential", [=](benchmark::State& state) {
    if (const Baseline<S>* base = baseline(state)) measure(state, *base, items, p, sequential);
  });
  for (const Schedule& s : setup.strategies) {
    add(name + "/" + s.name(), [=](benchmark::State& state) {
      const Baseline<S>* base = baseline(state);
      if (base == nullptr) return;
      Pool* pool = nullptr;
      try {
        pool = &shared_pool(p);
      } catch (const std::exception& e) {
        fail(state, std::string("could not build the pool: ") + e.what());
        return;
      }
      if (measure(state, *base, items, p, [&] { return parallel(*pool, s); }))
        set_stats_counters(state, pool->last_stats());
    });
  }
}

}  // namespace forkpool::bench
