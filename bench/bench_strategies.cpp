// Every scheduling strategy of forkpool next to OpenMP's and oneTBB's, on the standard workloads
// (workloads.hpp, /work/shared/WORKLOADS.md): the figures of ./dev.sh report (bench/report.py).
//
// Benchmark names (Google Benchmark appends /real_time):
//   <workload>/seq                      the sequential loop, the baseline
//   <workload>/forkpool/<schedule>      Pool::map_reduce with each of forkpool::bench::strategies()
//   <workload>/omp/<schedule>           #pragma omp parallel for reduction schedule(static),
//                                       (dynamic,1), (dynamic,64), (guided) on P threads
//   <workload>/tbb/<auto|static>        tbb::parallel_reduce with auto_partitioner or
//                                       static_partitioner in a task_arena of P threads
//   uniform/stats_on/<schedule>         the cost of Options::statistics: the same map on a pool
//   uniform/stats_off/<schedule>        with it (the shared pool) and one without
// for the workloads uniform, triangular, heavytail, bimodal, mandelbrot, seed_1e6 and tiny, each
// the uint64 sum of its items. P = --workers=P, or cpu_count().
//
// Counters (forkpool/bench.hpp): items_per_second; vs_ideal = time / (seq / P) and efficiency =
// seq / (P * time), where seq is the sequential loop's best of 3, timed in this run at the
// workload's first benchmark; for forkpool also makespan, imbalance, chunks, steals and sched_ops
// of the last map. Every result is checked against the sequential loop's (and against
// WORKLOADS.md's value where it gives one); a wrong one fails the benchmark and the exit status.
//
// Order matters: the pools are forked in main, before OpenMP or oneTBB has started a thread.
#include "workloads.hpp"

#include <forkpool/bench.hpp>
#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace {

namespace fb = forkpool::bench;
using Sum = std::uint64_t;

unsigned g_p = 1;
std::unique_ptr<forkpool::Pool> g_stats_off;  // Options::statistics = false
std::unique_ptr<tbb::task_arena> g_arena;

forkpool::Pool& pool() { return fb::shared_pool(g_p); }

// ---- A workload: the uint64 sum of item(i) over a range

template <class F>
struct Workload {
  std::string name;
  forkpool::Range range;
  F item;
  std::optional<Sum> expected;  // WORKLOADS.md's result, where it gives one
  std::shared_ptr<std::optional<fb::Baseline<Sum>>> baseline_cache =
      std::make_shared<std::optional<fb::Baseline<Sum>>>();

  std::int64_t items() const { return range.last - range.first; }

  Sum sequential() const {
    Sum sum = 0;
    for (std::int64_t i = range.first; i < range.last; ++i) sum += item(i);
    return sum;
  }

  // Measured by the first of the workload's benchmarks to run.
  const fb::Baseline<Sum>& baseline() const {
    if (!*baseline_cache) {
      *baseline_cache = fb::measure_baseline([this] { return sequential(); });
      if (expected && (*baseline_cache)->result != *expected)
        throw std::logic_error(name + ": the sequential loop gave " +
                               std::to_string((*baseline_cache)->result) + ", WORKLOADS.md says " +
                               std::to_string(*expected));
    }
    return **baseline_cache;
  }
};

// ---- OpenMP and oneTBB

enum class Omp { static_, dynamic_1, dynamic_64, guided };

const char* omp_name(Omp s) {
  switch (s) {
    case Omp::static_:
      return "static";
    case Omp::dynamic_1:
      return "dynamic,1";
    case Omp::dynamic_64:
      return "dynamic,64";
    case Omp::guided:
      return "guided";
  }
  return "?";
}

template <class F>
Sum omp_sum(Omp s, forkpool::Range r, F item) {
  const int p = static_cast<int>(g_p);
  Sum sum = 0;
  switch (s) {
    case Omp::static_:
#pragma omp parallel for reduction(+ : sum) schedule(static) num_threads(p)
      for (std::int64_t i = r.first; i < r.last; ++i) sum += item(i);
      break;
    case Omp::dynamic_1:
#pragma omp parallel for reduction(+ : sum) schedule(dynamic, 1) num_threads(p)
      for (std::int64_t i = r.first; i < r.last; ++i) sum += item(i);
      break;
    case Omp::dynamic_64:
#pragma omp parallel for reduction(+ : sum) schedule(dynamic, 64) num_threads(p)
      for (std::int64_t i = r.first; i < r.last; ++i) sum += item(i);
      break;
    case Omp::guided:
#pragma omp parallel for reduction(+ : sum) schedule(guided) num_threads(p)
      for (std::int64_t i = r.first; i < r.last; ++i) sum += item(i);
      break;
  }
  return sum;
}

template <class F, class Partitioner>
Sum tbb_sum(forkpool::Range r, F item, const Partitioner& partitioner) {
  return g_arena->execute([&] {
    return tbb::parallel_reduce(
        tbb::blocked_range<std::int64_t>(r.first, r.last), Sum{0},
        [&](const tbb::blocked_range<std::int64_t>& b, Sum sum) {
          for (std::int64_t i = b.begin(); i != b.end(); ++i) sum += item(i);
          return sum;
        },
        std::plus<>{}, partitioner);
  });
}

// ---- Registration

// Registers <workload>/<system>: run() per iteration, checked against the sequential loop; then()
// adds counters after a successful run.
// OpenMP's and oneTBB's idle threads spin for a while after a parallel region before they sleep;
// with the runs interleaved, they would take a core from whatever runs next. Each run first
// waits this long, so that it starts with the machine to itself.
constexpr auto kSettle = std::chrono::milliseconds(30);

template <class F, class Run, class Then>
void add(const Workload<F>& w, const std::string& system, Run run, Then then) {
  benchmark::RegisterBenchmark((w.name + "/" + system).c_str(),
                               [w, run, then](benchmark::State& state) {
                                 std::this_thread::sleep_for(kSettle);
                                 const fb::Baseline<Sum>* baseline = nullptr;
                                 try {
                                   baseline = &w.baseline();
                                 } catch (const std::exception& e) {
                                   fb::fail(state, e.what());
                                   return;
                                 }
                                 if (fb::measure(state, *baseline, w.items(), g_p, run))
                                   then(state);
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

const auto no_counters = [](benchmark::State&) {};
const auto pool_counters = [](benchmark::State& state) {
  fb::set_stats_counters(state, pool().last_stats());
};

template <class F>
void register_workload(const Workload<F>& w) {
  add(
      w, "seq", [w] { return w.sequential(); }, no_counters);
  for (const forkpool::Schedule& s : fb::strategies())
    add(
        w, "forkpool/" + s.name(),
        [w, s] { return pool().map_reduce(w.item, w.range, Sum{0}, std::plus<>{}, s); },
        pool_counters);
  for (const Omp s : {Omp::static_, Omp::dynamic_1, Omp::dynamic_64, Omp::guided})
    add(
        w, std::string("omp/") + omp_name(s), [w, s] { return omp_sum(s, w.range, w.item); },
        no_counters);
  add(
      w, "tbb/auto", [w] { return tbb_sum(w.range, w.item, tbb::auto_partitioner{}); },
      no_counters);
  add(
      w, "tbb/static", [w] { return tbb_sum(w.range, w.item, tbb::static_partitioner{}); },
      no_counters);
}

// The same map on a pool with statistics and on one without, one after the other.
template <class F>
void register_statistics_cost(const Workload<F>& w) {
  for (const forkpool::Schedule& s :
       {forkpool::Schedule::work_stealing(), forkpool::Schedule::dynamic(64)}) {
    add(
        w, "stats_on/" + s.name(),
        [w, s] { return pool().map_reduce(w.item, w.range, Sum{0}, std::plus<>{}, s); },
        no_counters);
    add(
        w, "stats_off/" + s.name(),
        [w, s] { return g_stats_off->map_reduce(w.item, w.range, Sum{0}, std::plus<>{}, s); },
        no_counters);
  }
}

template <class F>
Workload<F> workload(std::string name, forkpool::Range r, F item,
                     std::optional<Sum> expected = std::nullopt) {
  return Workload<F>{std::move(name), r, item, expected};
}

void register_all() {
  const auto n = static_cast<std::int64_t>(workloads::N);
  const auto uniform = workload("uniform", forkpool::range(n),
                                [](std::int64_t i) { return workloads::uniform_item(i); });
  register_workload(uniform);
  register_workload(workload("triangular", forkpool::range(n),
                             [](std::int64_t i) { return workloads::triangular_item(i); }));
  // The workers read the cost table through this pointer: it was filled before the fork.
  const std::uint64_t* costs = workloads::heavytail_costs().data();
  register_workload(workload("heavytail", forkpool::range(n), [costs](std::int64_t i) {
    return workloads::heavytail_item(costs, i);
  }));
  register_workload(workload("bimodal", forkpool::range(n),
                             [](std::int64_t i) { return workloads::bimodal_item(i); }));
  register_workload(workload("mandelbrot", forkpool::range(workloads::kMandelbrotSize),
                             [](std::int64_t row) { return workloads::mandelbrot_row(row); }));
  register_workload(workload(
      "seed_1e6", forkpool::range(1, workloads::kSeed1e6Last + 1),
      [](std::int64_t x) { return workloads::square_u64(x); }, Sum{workloads::kSeed1e6}));
  register_workload(workload(
      "tiny", forkpool::range(1, workloads::kTinyLast + 1),
      [](std::int64_t x) { return workloads::square_u64(x); }, Sum{workloads::kTiny}));
  register_statistics_cost(uniform);
}

// Takes --workers=P out of argv (Google Benchmark rejects flags it does not know).
unsigned take_workers_flag(int& argc, char** argv) {
  constexpr std::string_view flag = "--workers=";
  unsigned p = forkpool::cpu_count();
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (!arg.starts_with(flag)) {
      argv[kept++] = argv[i];
      continue;
    }
    const std::string_view value = arg.substr(flag.size());
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), p);
    if (error != std::errc{} || end != value.data() + value.size() || p < 1 ||
        p > forkpool::Pool::max_processes()) {
      std::fprintf(stderr, "bench_strategies: %s: P must be a number in 1..%u\n", argv[i],
                   forkpool::Pool::max_processes());
      std::exit(2);
    }
  }
  argc = kept;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  g_p = take_workers_flag(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Computed and checked (abort on mismatch) before the fork, so the workers see the table.
  workloads::heavytail_costs();
  // Fork the pools now: no OpenMP or oneTBB thread exists yet.
  fb::shared_pool(g_p);
  g_stats_off =
      std::make_unique<forkpool::Pool>(forkpool::Options{.processes = g_p, .statistics = false});
  const tbb::global_control tbb_threads(tbb::global_control::max_allowed_parallelism, g_p);
  g_arena = std::make_unique<tbb::task_arena>(static_cast<int>(g_p));
  register_all();
  benchmark::AddCustomContext("P", std::to_string(g_p));
  benchmark::AddCustomContext("K", std::to_string(workloads::K));
  benchmark::AddCustomContext("N", std::to_string(workloads::N));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_arena.reset();
  g_stats_off.reset();
  return fb::failed() ? 1 : 0;
}
