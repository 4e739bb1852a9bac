// The standard workloads (workloads.hpp, /work/shared/WORKLOADS.md) on forkpool with each of its
// schedules, next to a sequential loop and OpenMP with the same cost functions.
//
// Benchmark names are <workload>/<system>, with systems
//   seq                      the sequential loop
//   forkpool_<schedule>      forkpool::Pool(P), created once in main; map_reduce (or map)
//   forkpool_prealloc_<...>  seed_1e8_map only: for_each into a SharedArray allocated once
//   omp_<schedule>           #pragma omp parallel for ... num_threads(P)
//   omp_static_fresh         seed_1e8_map only: OpenMP static into a fresh array per iteration
// P = 2, or the environment variable FORKPOOL_BENCH_P.
//
// The spin workloads (uniform, triangular, heavytail) report two more counters, against the
// sequential loop timed in this same run (best of 3, at the workload's first use):
//   efficiency = seq / (P * time)    vs_ideal = time / (seq / P)
//
// Every result is checked; a wrong one fails the benchmark (SkipWithError) and the exit status.
//
// Order matters: the pool is forked in main, before any OpenMP region has created its threads
// (fork after threads is hazardous), and the startup benchmarks, which fork, are registered first
// so that they run before any OpenMP thread exists. Do not use random interleaving with them.
#include "workloads.hpp"

#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace {

using workloads::N;
using Clock = std::chrono::steady_clock;

unsigned g_p = 2;
std::unique_ptr<forkpool::Pool> g_pool;
std::unique_ptr<forkpool::SharedArray<std::uint64_t>> g_prealloc;  // seed_1e8_map, forkpool
bool g_failed = false;  // a benchmark reported an error: main exits with status 1

// Fails the running benchmark (Google Benchmark 1.7.1 still exits with 0, hence g_failed).
void fail(benchmark::State& state, const std::string& msg) {
  g_failed = true;
  std::fprintf(stderr, "bench_workloads: %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

unsigned parse_p() {
  const char* env = std::getenv("FORKPOOL_BENCH_P");
  if (env == nullptr || *env == '\0') return 2;
  char* end = nullptr;
  const unsigned long p = std::strtoul(env, &end, 10);
  if (*end != '\0' || p < 1 || p > 4096) {
    std::fprintf(stderr, "bench_workloads: FORKPOOL_BENCH_P='%s' is not a number in 1..4096\n",
                 env);
    std::exit(2);
  }
  return static_cast<unsigned>(p);
}

forkpool::Pool& pool() { return *g_pool; }

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <class T>
bool check(benchmark::State& state, const char* what, T got, T expected) {
  if (got == expected) return true;
  fail(state, std::string(what) + ": got " + std::to_string(got) + ", expected " +
                  std::to_string(expected));
  return false;
}

void set_items(benchmark::State& state, std::int64_t items_per_iteration) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items_per_iteration);
}

// ---- Schedules

struct ForkpoolSchedule {
  const char* name;
  forkpool::Schedule schedule;
};

std::vector<ForkpoolSchedule> forkpool_schedules(bool with_dynamic_1) {
  std::vector<ForkpoolSchedule> s{{"static_blocks", forkpool::Schedule::static_blocks()}};
  if (with_dynamic_1) s.push_back({"dynamic_1", forkpool::Schedule::dynamic(1)});
  s.push_back({"dynamic_64", forkpool::Schedule::dynamic(64)});
  s.push_back({"guided", forkpool::Schedule::guided()});
  s.push_back({"work_stealing", forkpool::Schedule::work_stealing()});
  return s;
}

enum class Omp { static_, dynamic_1, dynamic_64, guided };

const char* omp_name(Omp s) {
  switch (s) {
    case Omp::static_:
      return "static";
    case Omp::dynamic_1:
      return "dynamic_1";
    case Omp::dynamic_64:
      return "dynamic_64";
    case Omp::guided:
      return "guided";
  }
  return "?";
}

std::vector<Omp> omp_schedules(bool with_dynamic_1) {
  std::vector<Omp> s{Omp::static_};
  if (with_dynamic_1) s.push_back(Omp::dynamic_1);
  s.push_back(Omp::dynamic_64);
  s.push_back(Omp::guided);
  return s;
}

// sum over i in [first, last) of f(i), OpenMP with schedule s on P threads.
template <class T, class F>
T omp_reduce(Omp s, std::int64_t first, std::int64_t last, F f) {
  const int p = static_cast<int>(g_p);
  T sum = 0;
  switch (s) {
    case Omp::static_:
#pragma omp parallel for reduction(+ : sum) schedule(static) num_threads(p)
      for (std::int64_t i = first; i < last; ++i) sum += f(i);
      break;
    case Omp::dynamic_1:
#pragma omp parallel for reduction(+ : sum) schedule(dynamic, 1) num_threads(p)
      for (std::int64_t i = first; i < last; ++i) sum += f(i);
      break;
    case Omp::dynamic_64:
#pragma omp parallel for reduction(+ : sum) schedule(dynamic, 64) num_threads(p)
      for (std::int64_t i = first; i < last; ++i) sum += f(i);
      break;
    case Omp::guided:
#pragma omp parallel for reduction(+ : sum) schedule(guided) num_threads(p)
      for (std::int64_t i = first; i < last; ++i) sum += f(i);
      break;
  }
  return sum;
}

// out[i] = f(i) for i in [0, n), OpenMP with schedule s on P threads.
template <class F>
void omp_fill(Omp s, std::uint64_t* out, std::int64_t n, F f) {
  const int p = static_cast<int>(g_p);
  switch (s) {
    case Omp::static_:
#pragma omp parallel for schedule(static) num_threads(p)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(i);
      break;
    case Omp::dynamic_1:
#pragma omp parallel for schedule(dynamic, 1) num_threads(p)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(i);
      break;
    case Omp::dynamic_64:
#pragma omp parallel for schedule(dynamic, 64) num_threads(p)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(i);
      break;
    case Omp::guided:
#pragma omp parallel for schedule(guided) num_threads(p)
      for (std::int64_t i = 0; i < n; ++i) out[i] = f(i);
      break;
  }
}

// ---- startup

void bm_startup_forkpool(benchmark::State& state) {
  for (auto _ : state) {
    forkpool::Pool p(g_p);
    benchmark::DoNotOptimize(p.size());
  }
  set_items(state, 1);
}

// The floor: fork() + waitpid() of P children that _exit(0) at once.
void bm_startup_fork_waitpid(benchmark::State& state) {
  std::vector<pid_t> pids(g_p);
  for (auto _ : state) {
    for (pid_t& pid : pids) {
      pid = fork();
      if (pid == 0) _exit(0);
    }
    bool ok = true;
    for (const pid_t pid : pids) {
      int status = 0;
      ok &= pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0;
    }
    if (!ok) {
      fail(state, "fork or waitpid failed");
      break;
    }
  }
  set_items(state, 1);
}

// ---- seed_small, seed_1e6, tiny: sum over x = 1..last of x*x (int64)

void bm_squares_seq(benchmark::State& state, std::int64_t last, std::int64_t expected) {
  for (auto _ : state) {
    std::int64_t hi = last;
    benchmark::DoNotOptimize(hi);  // no constant folding of the whole loop
    std::int64_t sum = 0;
    for (std::int64_t x = 1; x <= hi; ++x) sum += workloads::square(x);
    benchmark::DoNotOptimize(sum);
    if (!check(state, "sum", sum, expected)) break;
  }
  set_items(state, last);
}

void bm_squares_forkpool(benchmark::State& state, std::int64_t last, std::int64_t expected,
                         forkpool::Schedule s) {
  forkpool::Pool& p = pool();
  const auto square = [](std::int64_t x) { return workloads::square(x); };
  for (auto _ : state) {
    const std::int64_t sum =
        p.map_reduce(square, forkpool::range(1, last + 1), std::int64_t{0}, std::plus<>{}, s);
    if (!check(state, "sum", sum, expected)) break;
  }
  set_items(state, last);
}

void bm_squares_omp(benchmark::State& state, std::int64_t last, std::int64_t expected, Omp s) {
  const auto square = [](std::int64_t x) { return workloads::square(x); };
  for (auto _ : state) {
    const std::int64_t sum = omp_reduce<std::int64_t>(s, 1, last + 1, square);
    if (!check(state, "sum", sum, expected)) break;
  }
  set_items(state, last);
}

// ---- seed_1e8_map: out[x] = x*x (uint64) for x < 1e8, then sum(out)

constexpr std::int64_t kMapCount = workloads::kSeed1e8Count;

// The preallocated output of the sequential loop and of OpenMP (touched once, when made).
std::vector<std::uint64_t>& map_output() {
  static std::vector<std::uint64_t> out(static_cast<std::size_t>(kMapCount));
  return out;
}

void bm_map_seq(benchmark::State& state) {
  std::uint64_t* out = map_output().data();
  for (auto _ : state) {
    std::int64_t n = kMapCount;
    benchmark::DoNotOptimize(n);
    for (std::int64_t x = 0; x < n; ++x) out[x] = workloads::square_u64(x);
    benchmark::ClobberMemory();
    std::uint64_t sum = 0;
    for (std::int64_t x = 0; x < n; ++x) sum += out[x];
    if (!check(state, "sum", sum, workloads::kSeed1e8MapSum)) break;
  }
  set_items(state, kMapCount);
}

// pool.map into a fresh SharedArray (as a user writes it), then map_reduce over that array (it
// lives in the segment: no copy) with the same schedule.
void bm_map_forkpool(benchmark::State& state, forkpool::Schedule s) {
  forkpool::Pool& p = pool();
  const auto square = [](std::int64_t x) { return workloads::square_u64(x); };
  // Untimed warm-up, once: the first map of this size faults its result pages in (seconds on a
  // VM where a page fault costs ~15 us); later maps reuse them (the segment keeps a spare block).
  // OpenMP's vector is touched untimed too, when it is made.
  static bool warm = false;
  if (!warm) {
    warm = true;
    p.map(square, forkpool::range(0, kMapCount), forkpool::Schedule::static_blocks());
  }
  for (auto _ : state) {
    const forkpool::SharedArray<std::uint64_t> out =
        p.map(square, forkpool::range(0, kMapCount), s);
    const std::uint64_t sum = p.map_reduce([](const std::uint64_t& v) { return v; }, out,
                                           std::uint64_t{0}, std::plus<>{}, s);
    if (!check(state, "sum", sum, workloads::kSeed1e8MapSum)) break;
  }
  set_items(state, kMapCount);
}

// The same into one SharedArray allocated (and touched) once, as OpenMP's preallocated vector:
// the difference to bm_map_forkpool is the cost of a fresh result array per map (page faults in
// every worker: the segment gives a freed block's pages back with MADV_REMOVE).
void bm_map_forkpool_prealloc(benchmark::State& state, forkpool::Schedule s) {
  forkpool::Pool& p = pool();
  if (!g_prealloc) {
    g_prealloc = std::make_unique<forkpool::SharedArray<std::uint64_t>>(
        p.shared_array<std::uint64_t>(static_cast<std::size_t>(kMapCount)));
    // Untimed warm-up: every worker write-faults every page of the array into its own page
    // table once (static_blocks over P items gives each worker one item), as OpenMP's threads
    // share the parent's page table where the vector is already mapped.
    std::uint64_t* a = g_prealloc->data();
    p.for_each(
        forkpool::range(0, static_cast<std::int64_t>(p.size())),
        [a](std::int64_t) {
          for (std::int64_t j = 0; j < kMapCount; j += 512)
            std::atomic_ref<std::uint64_t>(a[j]).fetch_add(0, std::memory_order_relaxed);
        },
        forkpool::Schedule::static_blocks());
  }
  std::uint64_t* out = g_prealloc->data();
  for (auto _ : state) {
    p.for_each(
        forkpool::range(0, kMapCount), [out](std::int64_t x) { out[x] = workloads::square_u64(x); },
        s);
    const std::uint64_t sum =
        p.map_reduce([out](std::int64_t i) { return out[i]; }, forkpool::range(0, kMapCount),
                     std::uint64_t{0}, std::plus<>{}, s);
    if (!check(state, "sum", sum, workloads::kSeed1e8MapSum)) break;
  }
  set_items(state, kMapCount);
}

void bm_map_omp(benchmark::State& state, Omp s) {
  std::uint64_t* out = map_output().data();
  for (auto _ : state) {
    omp_fill(s, out, kMapCount, [](std::int64_t x) { return workloads::square_u64(x); });
    const std::uint64_t sum =
        omp_reduce<std::uint64_t>(s, 0, kMapCount, [out](std::int64_t i) { return out[i]; });
    if (!check(state, "sum", sum, workloads::kSeed1e8MapSum)) break;
  }
  set_items(state, kMapCount);
}

// OpenMP static into a fresh, untouched array per iteration (glibc mmaps and unmaps a block this
// large): the same work as pool.map, which returns a new SharedArray each time.
void bm_map_omp_fresh(benchmark::State& state) {
  for (auto _ : state) {
    const auto out = std::make_unique_for_overwrite<std::uint64_t[]>(kMapCount);
    std::uint64_t* o = out.get();
    omp_fill(Omp::static_, o, kMapCount, [](std::int64_t x) { return workloads::square_u64(x); });
    const std::uint64_t sum =
        omp_reduce<std::uint64_t>(Omp::static_, 0, kMapCount, [o](std::int64_t i) { return o[i]; });
    if (!check(state, "sum", sum, workloads::kSeed1e8MapSum)) break;
  }
  set_items(state, kMapCount);
}

// ---- Spin workloads: sum over i < N of spin(i, cost_i), uint64 wrap

enum class Spin { uniform, triangular, heavytail };

std::uint64_t spin_sequential(Spin w) {
  switch (w) {
    case Spin::uniform:
      return workloads::uniform_sequential();
    case Spin::triangular:
      return workloads::triangular_sequential();
    case Spin::heavytail:
      return workloads::heavytail_sequential();
  }
  return 0;
}

// The sequential loop's result and time (best of 3), measured at the workload's first use.
struct SeqRef {
  std::uint64_t result;
  double seconds;
};

const SeqRef& seq_ref(Spin w) {
  static std::optional<SeqRef> cache[3];
  std::optional<SeqRef>& c = cache[static_cast<int>(w)];
  if (!c) {
    SeqRef r{0, 0.0};
    for (int k = 0; k < 3; ++k) {
      const auto t0 = Clock::now();
      const std::uint64_t sum = spin_sequential(w);
      const double t = seconds_since(t0);
      if (k > 0 && sum != r.result) {
        std::fprintf(stderr, "bench_workloads: the sequential loop is not deterministic\n");
        std::abort();
      }
      r.result = sum;
      r.seconds = k == 0 ? t : std::min(r.seconds, t);
    }
    c = r;
  }
  return *c;
}

// efficiency and vs_ideal from the wall time of the state's loop, and items per second.
void spin_counters(benchmark::State& state, const SeqRef& ref, double elapsed) {
  set_items(state, static_cast<std::int64_t>(N));
  if (state.error_occurred() || state.iterations() == 0) return;
  const double t = elapsed / static_cast<double>(state.iterations());
  const double p = static_cast<double>(g_p);
  state.counters["efficiency"] = ref.seconds / (p * t);
  state.counters["vs_ideal"] = t / (ref.seconds / p);
}

void bm_spin_seq(benchmark::State& state, Spin w) {
  const SeqRef& ref = seq_ref(w);
  const auto t0 = Clock::now();
  for (auto _ : state) {
    if (!check(state, "sum", spin_sequential(w), ref.result)) break;
  }
  spin_counters(state, ref, seconds_since(t0));
}

template <class F>
void bm_spin_forkpool(benchmark::State& state, Spin w, F item, forkpool::Schedule s) {
  const SeqRef& ref = seq_ref(w);
  forkpool::Pool& p = pool();
  const auto t0 = Clock::now();
  for (auto _ : state) {
    const std::uint64_t sum = p.map_reduce(item, forkpool::range(0, static_cast<std::int64_t>(N)),
                                           std::uint64_t{0}, std::plus<>{}, s);
    if (!check(state, "sum", sum, ref.result)) break;
  }
  spin_counters(state, ref, seconds_since(t0));
}

template <class F>
void bm_spin_omp(benchmark::State& state, Spin w, F item, Omp s) {
  const SeqRef& ref = seq_ref(w);
  const auto t0 = Clock::now();
  for (auto _ : state) {
    const std::uint64_t sum = omp_reduce<std::uint64_t>(s, 0, static_cast<std::int64_t>(N), item);
    if (!check(state, "sum", sum, ref.result)) break;
  }
  spin_counters(state, ref, seconds_since(t0));
}

// ---- Registration

template <class Fn, class... Args>
void add(const std::string& name, Fn fn, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(), fn, args...)->UseRealTime();
}

template <class F>
void register_spin(const char* workload, Spin w, F item) {
  const std::string base = workload;
  add(base + "/seq", bm_spin_seq, w);
  for (const ForkpoolSchedule& s : forkpool_schedules(true))
    add(base + "/forkpool_" + s.name, bm_spin_forkpool<F>, w, item, s.schedule);
  for (const Omp s : omp_schedules(true))
    add(base + "/omp_" + omp_name(s), bm_spin_omp<F>, w, item, s);
}

void register_squares(const char* workload, std::int64_t last, std::int64_t expected) {
  const std::string base = workload;
  add(base + "/seq", bm_squares_seq, last, expected);
  for (const ForkpoolSchedule& s : forkpool_schedules(true))
    add(base + "/forkpool_" + s.name, bm_squares_forkpool, last, expected, s.schedule);
  for (const Omp s : omp_schedules(true))
    add(base + "/omp_" + omp_name(s), bm_squares_omp, last, expected, s);
}

void register_all() {
  // First: these fork, and must run before any OpenMP region has created threads.
  add("startup/forkpool_pool", bm_startup_forkpool);
  add("startup/fork_waitpid", bm_startup_fork_waitpid);

  register_squares("tiny", workloads::kTinyLast, workloads::kTiny);
  register_squares("seed_small", workloads::kSeedSmallLast, workloads::kSeedSmall);
  register_squares("seed_1e6", workloads::kSeed1e6Last, workloads::kSeed1e6);

  // No dynamic(1) here: one chunk claim per item of 1e8 takes seconds per map (OpenMP: ~7 s).
  add("seed_1e8_map/seq", bm_map_seq);
  for (const ForkpoolSchedule& s : forkpool_schedules(false))
    add(std::string("seed_1e8_map/forkpool_") + s.name, bm_map_forkpool, s.schedule);
  add("seed_1e8_map/forkpool_prealloc_static_blocks", bm_map_forkpool_prealloc,
      forkpool::Schedule::static_blocks());
  add("seed_1e8_map/forkpool_prealloc_work_stealing", bm_map_forkpool_prealloc,
      forkpool::Schedule::work_stealing());
  for (const Omp s : omp_schedules(false))
    add(std::string("seed_1e8_map/omp_") + omp_name(s), bm_map_omp, s);
  add("seed_1e8_map/omp_static_fresh", bm_map_omp_fresh);

  register_spin("uniform", Spin::uniform,
                [](std::int64_t i) { return workloads::uniform_item(i); });
  register_spin("triangular", Spin::triangular,
                [](std::int64_t i) { return workloads::triangular_item(i); });
  // The workers read the cost table through this pointer: it was filled before the fork.
  const std::uint64_t* costs = workloads::heavytail_costs().data();
  register_spin("heavytail", Spin::heavytail,
                [costs](std::int64_t i) { return workloads::heavytail_item(costs, i); });
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  g_p = parse_p();
  // Computed and checked (abort on mismatch) before the fork, so the workers see the table.
  workloads::heavytail_costs();
  register_all();
  // Fork the pool now: no OpenMP thread exists yet.
  g_pool = std::make_unique<forkpool::Pool>(g_p);
  benchmark::AddCustomContext("P", std::to_string(g_p));
  benchmark::AddCustomContext("K", std::to_string(workloads::K));
  benchmark::AddCustomContext("N", std::to_string(workloads::N));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_prealloc.reset();
  g_pool.reset();
  return g_failed ? 1 : 0;
}
