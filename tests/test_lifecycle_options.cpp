// Options::initializer and Options::max_tasks_per_child: which processes run the initializer and
// when, what a failing one does to the pool, when workers retire and are replaced, and that
// retirements lose nothing under any schedule and leave nothing behind.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using forkpool::BrokenPool;
using forkpool::Options;
using forkpool::Pool;
using forkpool::PoolClosed;
using forkpool::Schedule;
using forkpool_test::catch_as;
using forkpool_test::child_count;
using forkpool_test::eventually;
using forkpool_test::kEverySchedule;
using forkpool_test::map_works;
using forkpool_test::open_fd_count;

// Set by the initializer in each worker, read by f: a per-process resource.
int g_devnull = -1;
pid_t g_initialized_in = 0;
// Read by the initializer: a replacement forked after the parent sets it sees it set.
bool g_fail_initializer = false;

// A pipe on which each initializer writes its pid, so the test can count the processes that ran
// it. Read end non-blocking: reading stops when the pipe is empty.
struct PidLog {
  int fds[2] = {-1, -1};
  PidLog() {
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  ~PidLog() {
    close(fds[0]);
    close(fds[1]);
  }
  std::function<void()> initializer() const {
    const int out = fds[1];
    return [out] {
      g_devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
      g_initialized_in = getpid();
      const pid_t pid = getpid();
      if (write(out, &pid, sizeof pid) != sizeof pid) throw std::runtime_error("pid log");
    };
  }
  std::vector<pid_t> read_all() const {
    std::vector<pid_t> pids;
    pid_t pid;
    while (read(fds[0], &pid, sizeof pid) == sizeof pid) pids.push_back(pid);
    return pids;
  }
};

std::set<pid_t> as_set(const std::vector<pid_t>& v) { return {v.begin(), v.end()}; }

TEST(Initializer, RunsOnceInEachWorkerBeforeItsFirstItem) {
  const PidLog log;
  Pool pool(Options{.processes = 3, .initializer = log.initializer()});
  // The constructor waited for every initializer.
  const auto initialized = log.read_all();
  EXPECT_EQ(initialized.size(), 3u);
  EXPECT_EQ(as_set(initialized), as_set(pool.pids()));
  // f sees what the initializer of its own process set up.
  const auto ok = pool.map(
      [](std::int64_t) {
        return g_initialized_in == getpid() && fcntl(g_devnull, F_GETFD) != -1 ? 1 : 0;
      },
      forkpool::range(3000));
  EXPECT_EQ(std::count(ok.begin(), ok.end(), 1), 3000);
  ASSERT_TRUE(map_works(pool));
  EXPECT_TRUE(log.read_all().empty());  // once per process, not per map
  EXPECT_EQ(g_devnull, -1);             // and never in the parent
}

TEST(Initializer, RunsInEveryReplacement) {
  const PidLog log;
  Pool pool(Options{.processes = 2, .initializer = log.initializer()});
  const auto before = pool.pids();
  log.read_all();
  kill(before[0], SIGKILL);
  ASSERT_TRUE(eventually([&] { return pool.pids()[0] != before[0]; }));
  EXPECT_EQ(log.read_all(), std::vector<pid_t>{pool.pids()[0]});
  ASSERT_TRUE(map_works(pool));
}

TEST(Initializer, ThatThrowsFailsTheConstructorAndLeavesNothing) {
  const std::size_t children = child_count();
  const std::size_t fds = open_fd_count();
  const auto e = catch_as<BrokenPool>([] {
    Pool pool(Options{.processes = 3, .initializer = [] {
                        if (forkpool::current_process().index == 1)
                          throw std::runtime_error("no database");
                      }});
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "Options::initializer failed in worker 1");
  EXPECT_CONTAINS(e->what(), "std::runtime_error: no database");
  EXPECT_CONTAINS(e->what(), "the pool has been terminated");
  EXPECT_EQ(child_count(), children);
  EXPECT_EQ(open_fd_count(), fds);
}

TEST(Initializer, ThatExitsFailsTheConstructor) {
  const std::size_t children = child_count();
  const auto e = catch_as<BrokenPool>(
      [] { Pool pool(Options{.processes = 2, .initializer = [] { _exit(3); }}); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "exited with status 3 in it");
  EXPECT_EQ(child_count(), children);
}

TEST(Initializer, ThatHangsFailsAfterTheTimeout) {
  const std::size_t children = child_count();
  const auto start = std::chrono::steady_clock::now();
  const auto e = catch_as<BrokenPool>([] {
    Pool pool(Options{.processes = 2, .timeout = std::chrono::milliseconds(200), .initializer = [] {
                        std::this_thread::sleep_for(std::chrono::seconds(30));
                      }});
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "did not finish within Options::timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(child_count(), children);
}

// Python's Pool forks a new worker forever when the initializer fails; here the call that
// replaced the worker fails once, and the pool is terminated.
TEST(Initializer, ThatFailsInAReplacementTerminatesThePool) {
  const std::size_t children = child_count();
  Pool pool(Options{.processes = 2, .initializer = [] {
                      if (g_fail_initializer) throw std::logic_error("fails from now on");
                    }});
  g_fail_initializer = true;
  kill(pool.pids()[1], SIGKILL);
  const auto e = catch_as<BrokenPool>([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    static_cast<void>(pool.map([](std::int64_t i) { return i; }, forkpool::range(10)));
  });
  g_fail_initializer = false;
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "worker 1");
  EXPECT_CONTAINS(e->what(), "std::logic_error: fails from now on");
  EXPECT_THROW(static_cast<void>(pool.map([](std::int64_t i) { return i; }, forkpool::range(10))),
               PoolClosed);
  EXPECT_EQ(child_count(), children);
}

TEST(Initializer, ThatFailsInARetiredWorkersReplacementFailsTheMap) {
  const std::size_t children = child_count();
  Pool pool(Options{.processes = 2,
                    .schedule = Schedule::dynamic(1),
                    .initializer =
                        [] {
                          if (g_fail_initializer) throw std::logic_error("fails from now on");
                        },
                    .max_tasks_per_child = 5});
  g_fail_initializer = true;
  const auto e = catch_as<BrokenPool>(
      [&] { static_cast<void>(pool.map([](std::int64_t i) { return i; }, forkpool::range(100))); });
  g_fail_initializer = false;
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "fails from now on");
  EXPECT_EQ(child_count(), children);
}

// static_blocks gives each worker one chunk per map: with max_tasks_per_child = 2 the workers of
// every second map are new processes, forked (and initialized) before that map returns.
TEST(MaxTasksPerChild, WorkersAreReplacedAfterTheirNthChunk) {
  const PidLog log;
  Pool pool(Options{.processes = 2,
                    .schedule = Schedule::static_blocks(),
                    .initializer = log.initializer(),
                    .max_tasks_per_child = 2});
  std::vector<pid_t> pids = pool.pids();
  EXPECT_EQ(log.read_all().size(), 2u);
  for (int m = 1; m <= 6; ++m) {
    ASSERT_TRUE(map_works(pool, 1000));
    const auto now = pool.pids();
    const auto initialized = log.read_all();
    if (m % 2 == 1) {
      EXPECT_EQ(now, pids) << "after map " << m;
      EXPECT_TRUE(initialized.empty());
    } else {
      for (std::size_t w = 0; w < now.size(); ++w) EXPECT_NE(now[w], pids[w]) << "after map " << m;
      EXPECT_EQ(as_set(initialized), as_set(now));
    }
    EXPECT_EQ(child_count(), 2u);  // the retired ones are reaped: no zombies
    pids = now;
  }
}

// Each item of a dynamic(1) map is a chunk: no process runs more than max_tasks_per_child items.
TEST(MaxTasksPerChild, NoProcessRunsMoreChunksThanTheLimit) {
  Pool pool(Options{.processes = 2, .schedule = Schedule::dynamic(1), .max_tasks_per_child = 3});
  const auto ran_in = pool.map([](std::int64_t) { return getpid(); }, forkpool::range(60));
  std::map<pid_t, int> chunks;
  for (pid_t pid : ran_in) ++chunks[pid];
  EXPECT_GE(chunks.size(), 20u);
  for (const auto& [pid, n] : chunks) EXPECT_LE(n, 3) << "pid " << pid;
}

// Retirements in the middle of maps, under every schedule: each item runs exactly once, results
// and reductions are exact, and retirements never count as failures, even with retries = 0.
class Retirement : public ::testing::TestWithParam<Schedule> {};

TEST_P(Retirement, LosesNothingAndRunsNothingTwice) {
  const std::size_t children = child_count();
  const std::size_t fds = open_fd_count();
  constexpr std::int64_t n = 120;
  {
    Pool pool(
        Options{.processes = 3, .schedule = GetParam(), .retries = 0, .max_tasks_per_child = 5});
    const auto out = pool.map([](std::int64_t i) { return 3 * i + 1; }, forkpool::range(n));
    for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], 3 * i + 1);
    EXPECT_EQ(pool.last_stats().items, static_cast<std::uint64_t>(n));

    EXPECT_EQ(pool.map_reduce([](std::int64_t i) { return i; }, forkpool::range(n), std::int64_t{0},
                              std::plus<>{}),
              n * (n - 1) / 2);

    auto runs = pool.shared_array<std::int32_t>(n);
    std::int32_t* r = runs.data();
    pool.for_each(forkpool::range(n), [r](std::int64_t i) {
      std::atomic_ref<std::int32_t>(r[i]).fetch_add(1, std::memory_order_relaxed);
    });
    for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(runs[static_cast<std::size_t>(i)], 1) << i;
    EXPECT_EQ(child_count(), children + 3);
  }
  EXPECT_EQ(child_count(), children);
  EXPECT_EQ(open_fd_count(), fds);
}

INSTANTIATE_TEST_SUITE_P(EverySchedule, Retirement, ::testing::ValuesIn(kEverySchedule),
                         [](const auto& info) {
                           return forkpool_test::schedule_test_name(info.param);
                         });

// A crash among retirements: retries count the crash only, and the error names the crash.
TEST(MaxTasksPerChild, CrashesStillCountAgainstRetries) {
  Pool pool(Options{
      .processes = 2, .schedule = Schedule::dynamic(1), .retries = 1, .max_tasks_per_child = 5});
  auto crashed = pool.shared_array<std::int32_t>(1);
  std::int32_t* once = crashed.data();
  // Item 20 kills its worker the first time only: run again, the map is exact.
  const auto out = pool.map(
      [once](std::int64_t i) {
        if (i == 20 && std::atomic_ref<std::int32_t>(*once).exchange(1) == 0) raise(SIGKILL);
        return i + 1;
      },
      forkpool::range(50));
  for (std::int64_t i = 0; i < 50; ++i) ASSERT_EQ(out[static_cast<std::size_t>(i)], i + 1);
  // Item 20 kills every worker that runs it: BrokenPool, naming the kill, not a retirement.
  const auto e = catch_as<BrokenPool>([&] {
    static_cast<void>(pool.map(
        [](std::int64_t i) {
          if (i == 20) raise(SIGKILL);
          return i;
        },
        forkpool::range(50)));
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "killed by signal 9") << e->what();
  EXPECT_CONTAINS(e->what(), "while running items [20, 21)");
  EXPECT_TRUE(map_works(pool, 50));
}

TEST(MaxTasksPerChild, ZeroMeansNoLimit) {
  Pool pool(Options{.processes = 2, .schedule = Schedule::dynamic(1)});
  const auto pids = pool.pids();
  for (int m = 0; m < 3; ++m) ASSERT_TRUE(map_works(pool, 2000));
  EXPECT_EQ(pool.pids(), pids);
}

}  // namespace
