// Tasks that spawn tasks (forkpool::spawn, TaskGroup): results of nested spawns under every P,
// deep recursion, full deques and arenas, tasks running on several workers, and what happens
// when a task throws, a thief dies, or the map is cancelled or times out.
#include "test_util.hpp"

#include <forkpool/forkpool.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using forkpool::Options;
using forkpool::Pool;
using forkpool::TaskGroup;
using forkpool_test::catch_as;
using forkpool_test::spin_for_us;
using Clock = std::chrono::steady_clock;

// Fibonacci with a TaskGroup per call: results come back through TaskResult.
std::int64_t fib(int n) {
  if (n < 2) return n;
  TaskGroup g;
  auto a = g.spawn(fib, n - 1);
  const std::int64_t b = fib(n - 2);
  g.wait();
  return a.get() + b;
}

std::int64_t fib_closed_form(int n) {
  std::int64_t a = 0, b = 1;
  for (int i = 0; i < n; ++i) b = std::exchange(a, b) + b;
  return a;
}

// An irregular tree: node `seed` at `depth` has 0 to 4 children (a hash of the seed decides).
struct Node {
  std::uint64_t seed;
  int depth;
};
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}
int children(Node n) { return n.depth >= 9 ? 0 : static_cast<int>(mix(n.seed) % 5); }
Node child(Node n, int i) {
  return {mix(n.seed * 31 + static_cast<std::uint64_t>(i) + 1), n.depth + 1};
}

std::int64_t tree_sum_sequential(Node n) {
  std::int64_t sum = static_cast<std::int64_t>(n.seed % 100);
  for (int i = 0; i < children(n); ++i) sum += tree_sum_sequential(child(n, i));
  return sum;
}

std::int64_t tree_sum(Node n) {
  TaskGroup g;
  forkpool::TaskResult<std::int64_t> parts[4] = {};
  const int k = children(n);
  for (int i = 0; i < k; ++i) parts[i] = g.spawn(tree_sum, child(n, i));
  g.wait();
  std::int64_t sum = static_cast<std::int64_t>(n.seed % 100);
  for (int i = 0; i < k; ++i) sum += parts[i].get();
  return sum;
}

// forkpool::spawn (no results): every node adds itself to a counter in the segment.
void count_nodes(Node n, std::int64_t* count) {
  std::atomic_ref<std::int64_t>(*count).fetch_add(static_cast<std::int64_t>(n.seed % 100));
  for (int i = 0; i < children(n); ++i) forkpool::spawn(count_nodes, child(n, i), count);
}

void quicksort(std::int32_t* a, std::int64_t lo, std::int64_t hi) {
  while (hi - lo > 2000) {
    const std::int32_t pivot = a[lo + (hi - lo) / 2];
    std::int64_t i = lo, j = hi - 1;
    while (i <= j) {
      while (a[i] < pivot) ++i;
      while (a[j] > pivot) --j;
      if (i <= j) std::swap(a[i++], a[j--]);
    }
    forkpool::spawn(quicksort, a, lo, j + 1);
    lo = i;
  }
  std::sort(a + lo, a + hi);
}

class TasksEveryP : public ::testing::TestWithParam<unsigned> {};

TEST_P(TasksEveryP, FibonacciThroughTaskGroups) {
  Pool pool(GetParam());
  const auto out =
      pool.map([](std::int64_t n) { return fib(static_cast<int>(n)); }, forkpool::range(18, 22));
  for (int n = 18; n < 22; ++n)
    EXPECT_EQ(out[static_cast<std::size_t>(n - 18)], fib_closed_form(n));
}

TEST_P(TasksEveryP, IrregularTreeSumThroughTaskGroups) {
  Pool pool(GetParam());
  const auto out = pool.map(
      [](std::int64_t s) {
        return tree_sum({static_cast<std::uint64_t>(s), 0});
      },
      forkpool::range(1, 4));
  for (std::int64_t s = 1; s < 4; ++s)
    EXPECT_EQ(out[static_cast<std::size_t>(s - 1)],
              tree_sum_sequential({static_cast<std::uint64_t>(s), 0}));
}

TEST_P(TasksEveryP, FreeSpawnsFinishBeforeTheirItem) {
  Pool pool(GetParam());
  auto counts = pool.shared_array<std::int64_t>(3);
  std::int64_t* c = counts.data();
  // Read by the parent once the map has returned: every task an item spawned has run by then.
  pool.for_each(forkpool::range(1, 4), [c](std::int64_t s) {
    count_nodes({static_cast<std::uint64_t>(s), 0}, c + (s - 1));
  });
  for (std::int64_t s = 1; s < 4; ++s)
    EXPECT_EQ(counts[static_cast<std::size_t>(s - 1)],
              tree_sum_sequential({static_cast<std::uint64_t>(s), 0}));
}

TEST_P(TasksEveryP, QuicksortOfAMillionInts) {
  Pool pool(GetParam());
  std::vector<std::int32_t> data(1'000'000);
  std::mt19937 rng(7);
  for (auto& x : data) x = static_cast<std::int32_t>(rng() % 100000);
  auto shared = pool.shared_array<std::int32_t>(std::span<const std::int32_t>(data));
  std::int32_t* a = shared.data();
  const auto n = static_cast<std::int64_t>(shared.size());
  pool.for_each(forkpool::range(1), [a, n](std::int64_t) { quicksort(a, 0, n); });
  std::sort(data.begin(), data.end());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), shared.begin()));
}

INSTANTIATE_TEST_SUITE_P(P, TasksEveryP, ::testing::Values(1u, 2u, 3u, 4u));

// A chain: each task spawns one child and waits for it, 3000 deep.
std::int64_t chain(std::int64_t depth) {
  if (depth == 0) return 0;
  TaskGroup g;
  auto below = g.spawn(chain, depth - 1);
  g.wait();
  return below.get() + 1;
}

TEST(Tasks, DeepRecursion) {
  Pool pool(2);
  const auto out = pool.map([](std::int64_t d) { return chain(d); }, forkpool::range(3000, 3001));
  EXPECT_EQ(out[0], 3000);
}

std::int64_t identity(std::int64_t i) { return i; }

// 1000 children of one group, with a deque of 2 (and an arena of 4096 bytes): most run inline
// in the spawner, and every result is still right.
std::int64_t many_children(std::int64_t n) {
  TaskGroup g;
  std::vector<forkpool::TaskResult<std::int64_t>> parts;
  for (std::int64_t i = 0; i < n; ++i) parts.push_back(g.spawn(identity, i));
  g.wait();
  std::int64_t sum = 0;
  for (const auto& p : parts) sum += p.get();
  return sum;
}

TEST(Tasks, FullDequeAndFullArenaRunTasksInline) {
  for (const Options& o : {Options{.processes = 2, .task_deque_capacity = 2},
                           Options{.processes = 2, .task_arena_bytes = 4096}}) {
    Pool pool(o);
    const auto out =
        pool.map([](std::int64_t n) { return many_children(n); }, forkpool::range(1000, 1002));
    EXPECT_EQ(out[0], 999 * 1000 / 2);
    EXPECT_EQ(out[1], 1000 * 1001 / 2);
  }
}

// Tasks that take a while and record where they ran.
void record_pid(pid_t* where) {
  spin_for_us(2000);
  *where = getpid();
}

TEST(Tasks, TasksAreStolenByOtherWorkers) {
  Pool pool(3);
  auto where = pool.shared_array<pid_t>(200);
  pid_t* w = where.data();
  pool.for_each(forkpool::range(1), [w](std::int64_t) {
    for (int i = 0; i < 200; ++i) forkpool::spawn(record_pid, w + i);
  });
  const std::set<pid_t> pids(where.begin(), where.end());
  EXPECT_EQ(pids.count(0), 0u) << "a task did not run";
  EXPECT_GE(pids.size(), 2u) << "every task ran on the worker that spawned it";
  const auto workers = pool.pids();
  for (pid_t p : pids) EXPECT_NE(std::find(workers.begin(), workers.end(), p), workers.end());
}

// A task run by Pool::apply or submit is a root like a map item: its children are stolen.
TEST(Tasks, ApplyAndSubmitRunRootTasksWhoseChildrenAreStolen) {
  Pool pool(3);
  auto where = pool.shared_array<pid_t>(200);
  pid_t* w = where.data();
  pool.apply([w] {
    for (int i = 0; i < 200; ++i) forkpool::spawn(record_pid, w + i);
  });
  const std::set<pid_t> pids(where.begin(), where.end());
  EXPECT_EQ(pids.count(0), 0u) << "a task did not run";
  EXPECT_GE(pids.size(), 2u) << "every task ran on the worker that spawned it";

  std::vector<std::int32_t> data(200'000);
  std::mt19937 rng(11);
  for (auto& x : data) x = static_cast<std::int32_t>(rng() % 100000);
  auto shared = pool.shared_array<std::int32_t>(std::span<const std::int32_t>(data));
  auto sorted = pool.submit(quicksort, shared.data(), std::int64_t{0},
                            static_cast<std::int64_t>(shared.size()));
  auto sum = pool.submit(tree_sum, Node{2, 0});
  sorted.get();
  EXPECT_EQ(sum.get(), tree_sum_sequential({2, 0}));
  std::sort(data.begin(), data.end());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), shared.begin()));
}

void throw_at(std::int64_t depth) {
  if (depth == 5) throw std::runtime_error("bad node");
  forkpool::spawn(throw_at, depth + 1);
  forkpool::spawn(throw_at, depth + 1);
}

TEST(Tasks, AnExceptionInATaskIsTheMapsTaskError) {
  Pool pool(2);
  const auto e = catch_as<forkpool::TaskError>(
      [&] { pool.for_each(forkpool::range(40, 41), [](std::int64_t) { throw_at(0); }); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 40);
  EXPECT_EQ(e->type(), "std::runtime_error");
  EXPECT_EQ(e->message(), "bad node");
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

// Constant chunks run in the loop compiled with the map's closure (constant_chunks.hpp), which
// opens each item's frame too: a task's error names the item that spawned it.
TEST(Tasks, UnderDynamicOneATasksErrorNamesItsItem) {
  Pool pool(2);
  const auto e = catch_as<forkpool::TaskError>([&] {
    pool.for_each(
        forkpool::range(40, 60),
        [](std::int64_t i) {
          if (i == 47) throw_at(0);
        },
        forkpool::Schedule::dynamic(1));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 47);
  EXPECT_EQ(e->message(), "bad node");
}

// Run by whichever worker steals it: a thief (not the root's worker) dies of SIGKILL.
void die_if_stolen(const int* root_worker) {
  if (forkpool::current_process().index != *root_worker) raise(SIGKILL);
  spin_for_us(2000);
}

TEST(Tasks, ADeadThiefStopsTheMapWithBrokenPool) {
  Pool pool(2);
  auto root = pool.shared_array<int>(1);
  int* r = root.data();
  const auto before = pool.pids();
  const auto start = Clock::now();
  const auto e = catch_as<forkpool::BrokenPool>([&] {
    pool.for_each(forkpool::range(1), [r](std::int64_t) {
      *r = forkpool::current_process().index;
      TaskGroup g;
      for (int i = 0; i < 2000; ++i) g.spawn(die_if_stolen, static_cast<const int*>(r));
      g.wait();
    });
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "signal 9");
  EXPECT_CONTAINS(e->what(), "tasks");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 10.0);
  EXPECT_NE(pool.pids(), before) << "the dead thief was not replaced";
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

TEST(Tasks, MapReduceItemsThatSpawn) {
  Pool pool(2);
  const std::int64_t total =
      pool.map_reduce([](std::int64_t n) { return fib(static_cast<int>(n)); },
                      forkpool::range(10, 20), std::int64_t{0}, std::plus<>{});
  std::int64_t expected = 0;
  for (int n = 10; n < 20; ++n) expected += fib_closed_form(n);
  EXPECT_EQ(total, expected);
}

// The item dies the first time it runs, after its children have all run: no task is
// outstanding, so the item is simply run again (Options::retries), like any item.
std::int64_t sum_then_die_once(int* died) {
  TaskGroup g;
  auto a = g.spawn(fib, 15);
  auto b = g.spawn(fib, 16);
  g.wait();
  if (std::atomic_ref<int>(*died).exchange(1) == 0) raise(SIGKILL);
  return a.get() + b.get();
}

TEST(Tasks, ADeathWithNoTaskOutstandingIsRetried) {
  Pool pool(2);
  auto died = pool.shared_array<int>(1);
  int* d = died.data();
  const auto out = pool.map([d](std::int64_t) { return sum_then_die_once(d); }, forkpool::range(1));
  EXPECT_EQ(died[0], 1);
  EXPECT_EQ(out[0], fib_closed_form(17));
}

// A binary tree of busy tasks, far too big to finish: 2^22 tasks of 20 us.
void busy_tree(int depth) {
  spin_for_us(20);
  if (depth == 22) return;
  forkpool::spawn(busy_tree, depth + 1);
  forkpool::spawn(busy_tree, depth + 1);
}

TEST(Tasks, CancelStopsATaskGraph) {
  Pool pool(2);
  const auto start = Clock::now();
  std::thread canceller([&pool] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pool.cancel();
  });
  const auto e = catch_as<forkpool::Cancelled>(
      [&] { pool.for_each(forkpool::range(1), [](std::int64_t) { busy_tree(0); }); });
  canceller.join();
  EXPECT_TRUE(e);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 3.0);
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

TEST(Tasks, TimeoutStopsATaskGraph) {
  Pool pool(Options{.processes = 2, .timeout = std::chrono::milliseconds(100)});
  const auto start = Clock::now();
  EXPECT_TRUE(catch_as<forkpool::Timeout>(
      [&] { pool.for_each(forkpool::range(1), [](std::int64_t) { busy_tree(0); }); }));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 3.0);
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

void nothing() {}

TEST(Tasks, OutsideAWorkerSpawnAndTaskGroupThrowLogicError) {
  const auto e = catch_as<std::logic_error>([] { forkpool::spawn(nothing); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "forkpool::spawn");
  EXPECT_CONTAINS(e->what(), "only inside a pool worker");
  EXPECT_THROW(TaskGroup{}, std::logic_error);
}

void read_int(const int* p) { static_cast<void>(*p); }

TEST(Tasks, APointerToTheSpawnersStackIsRejected) {
  Pool pool(2);
  const auto e = catch_as<forkpool::TaskError>([&] {
    pool.for_each(forkpool::range(1), [](std::int64_t) {
      int local = 1;
      forkpool::spawn(read_int, static_cast<const int*>(&local));
    });
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type(), "std::invalid_argument");
  EXPECT_CONTAINS(e->message(), "argument 1 points into the spawning worker's stack");
}

TEST(Tasks, AResultReadBeforeWaitThrows) {
  Pool pool(1);
  const auto e = catch_as<forkpool::TaskError>([&] {
    pool.map(
        [](std::int64_t) {
          TaskGroup g;
          auto r = g.spawn(identity, std::int64_t{1});
          return r.get();
        },
        forkpool::range(1));
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->message(), "call its TaskGroup's wait() first");
}

TEST(Tasks, BadTaskOptions) {
  EXPECT_THROW(Pool(Options{.processes = 1, .task_deque_capacity = 3}), std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 1, .task_deque_capacity = 1}), std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 1, .task_deque_capacity = std::size_t{1} << 25}),
               std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 1, .task_arena_bytes = 4095}), std::invalid_argument);
}

}  // namespace
