// Tasks that spawn tasks (forkpool::spawn, TaskGroup) on recursive divide and conquer, next to the
// same recursion run sequentially and on oneTBB, all in one run:
//
//   quicksort/seq                 the recursive quicksort below, one thread
//   quicksort/std_sort            std::sort, one thread
//   quicksort/tbb_task_group      the same recursion, tbb::task_group, in a task_arena of P threads
//   quicksort/tbb_parallel_invoke the same recursion, tbb::parallel_invoke, same arena
//   quicksort/forkpool            the same recursion, forkpool::spawn, on a Pool(P)
//   tree/seq, tree/tbb_task_group, tree/forkpool
//                                 the sum of an irregular tree (1 to 4 children per node, from a
//                                 hash of a fixed seed), results through TaskGroup / locals
//
// quicksort sorts --quicksort_size ints (default 10^8, uniform random with a fixed seed) in a
// SharedArray, refilled from the same input before each iteration (not timed), whose pages every
// worker has mapped before the first one; a leaf below 2^14 items is sorted with std::sort. tree
// has --tree_depth levels (default 17: 2.1 x 10^7 nodes; the context line tree_nodes says), each
// node 8 rounds of hashing (about 11 ns); subtrees of the last 8 levels (about 1500 nodes) are
// summed without spawning.
// P = --workers (default 2).
//
// Counters: best_s, the fastest iteration (of every repetition so far); vs_seq = seq's best_s /
// best_s (the speedup over the sequential recursion); vs_tbb = best_s / the best oneTBB
// variant's best_s (1.3 means 30% slower than oneTBB). Each is from this run: the benchmarks run
// in the order above. Every result is checked (sorted and the same multiset, or the sequential
// tree sum); a wrong one fails the benchmark.
//
// Order matters: the pool is forked in main, before oneTBB has started a thread.
#include "flags.hpp"

#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>
#include <oneapi/tbb/parallel_invoke.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t g_size = 100'000'000;
std::uint64_t g_depth = 17;
std::uint64_t g_workers = 2;
std::unique_ptr<forkpool::Pool> g_pool;
std::unique_ptr<tbb::task_arena> g_arena;
std::map<std::string, double> g_best;  // best seconds of each finished benchmark

constexpr std::int64_t kLeaf = std::int64_t{1} << 14;

// ---- Quicksort: Hoare partition around the middle element; the left part is spawned.

// Partitions a[lo, hi): afterwards a[lo, left_end) <= pivot <= a[right_begin, hi).
std::pair<std::int64_t, std::int64_t> partition(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  const std::int32_t pivot = a[lo + (hi - lo) / 2];
  std::int64_t i = lo, j = hi - 1;
  while (i <= j) {
    while (a[i] < pivot) ++i;
    while (a[j] > pivot) --j;
    if (i <= j) std::swap(a[i++], a[j--]);
  }
  return {j + 1, i};
}

void quicksort_seq(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  while (hi - lo > kLeaf) {
    const auto [left_end, right_begin] = partition(a, lo, hi);
    quicksort_seq(a, lo, left_end);
    lo = right_begin;
  }
  std::sort(a + lo, a + hi);
}

void quicksort_forkpool(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  while (hi - lo > kLeaf) {
    const auto [left_end, right_begin] = partition(a, lo, hi);
    forkpool::spawn(quicksort_forkpool, a, lo, left_end);
    lo = right_begin;
  }
  std::sort(a + lo, a + hi);
}

void quicksort_tbb_task_group(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  tbb::task_group g;
  while (hi - lo > kLeaf) {
    const auto [left_end, right_begin] = partition(a, lo, hi);
    g.run([a, lo, left_end = left_end] { quicksort_tbb_task_group(a, lo, left_end); });
    lo = right_begin;
  }
  std::sort(a + lo, a + hi);
  g.wait();
}

void quicksort_tbb_invoke(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  if (hi - lo <= kLeaf) return std::sort(a + lo, a + hi);
  const auto [left_end, right_begin] = partition(a, lo, hi);
  tbb::parallel_invoke(
      [a, lo, left_end = left_end] { quicksort_tbb_invoke(a, lo, left_end); },
      [a, hi, right_begin = right_begin] { quicksort_tbb_invoke(a, right_begin, hi); });
}

// ---- Irregular tree: node (seed, depth) has 1 to 4 children below g_depth; value seed % 1000.

struct Node {
  std::uint64_t seed;
  std::uint32_t depth;
};
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}
std::uint32_t children(Node n, std::uint32_t depth_limit) {
  return n.depth >= depth_limit ? 0 : 1 + static_cast<std::uint32_t>(mix(n.seed) % 4);
}
Node child(Node n, std::uint32_t i) {
  return {mix(n.seed + 0x9e3779b97f4a7c15ULL * (i + 1)), n.depth + 1};
}
// A node's work: a few rounds of hashing (about 11 ns, as small as a real visit).
std::int64_t value(Node n) {
  std::uint64_t x = n.seed;
  for (int k = 0; k < 8; ++k) x = mix(x);
  return static_cast<std::int64_t>(x % 1000);
}
// Subtrees this many levels above the leaves or closer are summed sequentially (~1500 nodes).
constexpr std::uint32_t kTreeSequentialLevels = 8;

std::int64_t tree_seq(Node n, std::uint32_t limit) {
  std::int64_t sum = value(n);
  for (std::uint32_t i = 0; i < children(n, limit); ++i) sum += tree_seq(child(n, i), limit);
  return sum;
}

std::int64_t tree_nodes(Node n, std::uint32_t limit) {
  std::int64_t count = 1;
  for (std::uint32_t i = 0; i < children(n, limit); ++i) count += tree_nodes(child(n, i), limit);
  return count;
}

std::int64_t tree_forkpool(Node n, std::uint32_t limit) {
  if (n.depth + kTreeSequentialLevels >= limit) return tree_seq(n, limit);
  forkpool::TaskGroup g;
  forkpool::TaskResult<std::int64_t> parts[4];
  const std::uint32_t k = children(n, limit);
  for (std::uint32_t i = 1; i < k; ++i) parts[i] = g.spawn(tree_forkpool, child(n, i), limit);
  std::int64_t sum = value(n) + tree_forkpool(child(n, 0), limit);
  g.wait();
  for (std::uint32_t i = 1; i < k; ++i) sum += parts[i].get();
  return sum;
}

std::int64_t tree_tbb(Node n, std::uint32_t limit) {
  if (n.depth + kTreeSequentialLevels >= limit) return tree_seq(n, limit);
  tbb::task_group g;
  std::int64_t parts[4] = {};
  const std::uint32_t k = children(n, limit);
  for (std::uint32_t i = 1; i < k; ++i)
    g.run([&parts, n, i, limit] { parts[i] = tree_tbb(child(n, i), limit); });
  std::int64_t sum = value(n) + tree_tbb(child(n, 0), limit);
  g.wait();
  for (std::uint32_t i = 1; i < k; ++i) sum += parts[i];
  return sum;
}

constexpr Node kRoot{20251201, 0};

// ---- Benchmarks

bool g_failed = false;  // a wrong result: the exit status says so

void fail(benchmark::State& state, const std::string& why) {
  state.SkipWithError(why.c_str());
  std::fprintf(stderr, "bench_tasks: %s\n", why.c_str());
  g_failed = true;
}

// Times each iteration of `run`, after `prepare` (not timed); records the best and the ratios.
template <class Prepare, class Run, class Check>
void timed(benchmark::State& state, const std::string& name, const std::string& seq_name,
           Prepare prepare, Run run, Check check) {
  double best = std::numeric_limits<double>::infinity();
  for (auto _ : state) {
    state.PauseTiming();
    prepare();
    state.ResumeTiming();
    const Clock::time_point start = Clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
    state.PauseTiming();
    if (!check()) return fail(state, name + ": wrong result");
    state.ResumeTiming();
  }
  // The best over repetitions too (--benchmark_repetitions).
  if (g_best.count(name)) best = std::min(best, g_best[name]);
  g_best[name] = best;
  state.counters["best_s"] = best;
  if (g_best.count(seq_name)) state.counters["vs_seq"] = g_best[seq_name] / best;
  const std::string family = name.substr(0, name.find('/'));
  double tbb = std::numeric_limits<double>::infinity();
  for (const auto& [n, t] : g_best)
    if (n.rfind(family + "/tbb", 0) == 0) tbb = std::min(tbb, t);
  if (tbb < std::numeric_limits<double>::infinity()) state.counters["vs_tbb"] = best / tbb;
}

struct SortData {
  std::vector<std::int32_t> input;
  std::vector<std::int32_t> sorted;
  forkpool::SharedArray<std::int32_t> work;
};
SortData& sort_data() {
  static SortData d = [] {
    SortData s;
    s.input.resize(g_size);
    std::mt19937_64 rng(42);
    for (auto& x : s.input) x = static_cast<std::int32_t>(rng());
    s.sorted = s.input;
    std::sort(s.sorted.begin(), s.sorted.end());
    s.work = g_pool->shared_array<std::int32_t>(g_size);
    // Every worker maps the array's pages once, as the parent's threads (oneTBB's) already have:
    // the timed sorts then measure steady state, not each process's first touch of each page.
    std::int32_t* a = s.work.data();
    const std::size_t bytes = s.work.size() * sizeof(std::int32_t);
    g_pool->for_each(
        forkpool::range(static_cast<std::int64_t>(g_workers)),
        [a, bytes](std::int64_t) {
          const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
          const auto first = reinterpret_cast<std::uintptr_t>(a) / page * page;
          const auto last = reinterpret_cast<std::uintptr_t>(a) + bytes;
          madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
        },
        forkpool::Schedule::static_blocks());
    return s;
  }();
  return d;
}

template <class Sort>
void BM_quicksort(benchmark::State& state, const std::string& name, Sort sort) {
  SortData& d = sort_data();
  std::int32_t* a = d.work.data();
  const auto n = static_cast<std::int64_t>(d.work.size());
  timed(
      state, name, "quicksort/seq", [&] { std::copy(d.input.begin(), d.input.end(), a); },
      [&] { sort(a, n); }, [&] { return std::equal(d.sorted.begin(), d.sorted.end(), a); });
  state.SetItemsProcessed(state.iterations() * n);
}

template <class Sum>
void BM_tree(benchmark::State& state, const std::string& name, Sum sum) {
  static const std::int64_t expected = tree_seq(kRoot, static_cast<std::uint32_t>(g_depth));
  std::int64_t got = 0;
  timed(
      state, name, "tree/seq", [] {}, [&] { got = sum(); }, [&] { return got == expected; });
}

void register_all() {
  const auto limit = static_cast<std::uint32_t>(g_depth);
  const auto add = [](const std::string& name, auto body) {
    benchmark::RegisterBenchmark(name.c_str(), [name, body](benchmark::State& s) { body(s, name); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  add("quicksort/seq", [](benchmark::State& s, const std::string& n) {
    BM_quicksort(s, n, [](std::int32_t* a, std::int64_t size) { quicksort_seq(a, 0, size); });
  });
  add("quicksort/std_sort", [](benchmark::State& s, const std::string& n) {
    BM_quicksort(s, n, [](std::int32_t* a, std::int64_t size) { std::sort(a, a + size); });
  });
  add("quicksort/tbb_task_group", [](benchmark::State& s, const std::string& n) {
    BM_quicksort(s, n, [](std::int32_t* a, std::int64_t size) {
      g_arena->execute([a, size] { quicksort_tbb_task_group(a, 0, size); });
    });
  });
  add("quicksort/tbb_parallel_invoke", [](benchmark::State& s, const std::string& n) {
    BM_quicksort(s, n, [](std::int32_t* a, std::int64_t size) {
      g_arena->execute([a, size] { quicksort_tbb_invoke(a, 0, size); });
    });
  });
  add("quicksort/forkpool", [](benchmark::State& s, const std::string& n) {
    BM_quicksort(s, n, [](std::int32_t* a, std::int64_t size) {
      g_pool->apply(quicksort_forkpool, a, std::int64_t{0}, size);
    });
  });
  add("tree/seq", [limit](benchmark::State& s, const std::string& n) {
    BM_tree(s, n, [limit] { return tree_seq(kRoot, limit); });
  });
  add("tree/tbb_task_group", [limit](benchmark::State& s, const std::string& n) {
    BM_tree(s, n, [limit] {
      std::int64_t sum = 0;
      g_arena->execute([&sum, limit] { sum = tree_tbb(kRoot, limit); });
      return sum;
    });
  });
  add("tree/forkpool", [limit](benchmark::State& s, const std::string& n) {
    BM_tree(s, n, [limit] { return g_pool->apply(tree_forkpool, kRoot, limit); });
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (!forkpool_bench::take_uint_flags(argc, argv,
                                       {{"--quicksort_size=", &g_size, 1, std::uint64_t{1} << 32},
                                        {"--tree_depth=", &g_depth, 1, 40},
                                        {"--workers=", &g_workers, 1, 1024}},
                                       "bench_tasks"))
    return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const auto p = static_cast<unsigned>(g_workers);
  // The input and its copy in the segment: g_size ints, plus room for the rest.
  g_pool = std::make_unique<forkpool::Pool>(forkpool::Options{
      .processes = p, .segment_bytes = g_size * sizeof(std::int32_t) + (std::size_t{1} << 30)});
  g_arena = std::make_unique<tbb::task_arena>(static_cast<int>(p));
  benchmark::AddCustomContext("P", std::to_string(p));
  benchmark::AddCustomContext("quicksort_size", std::to_string(g_size));
  benchmark::AddCustomContext("tree_depth", std::to_string(g_depth));
  benchmark::AddCustomContext(
      "tree_nodes", std::to_string(tree_nodes(kRoot, static_cast<std::uint32_t>(g_depth))));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_arena.reset();
  g_pool.reset();
  return g_failed ? 1 : 0;
}
