// Futures: apply, submit / apply_async, map_async and starmap; results, errors, recovery, the
// pool's lifetime with calls still queued, and what is left behind.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using forkpool::Future;
using forkpool::Pool;
using forkpool::PoolClosed;
using forkpool::SharedArray;
using forkpool_test::catch_as;
using forkpool_test::spin_for_us;
using forkpool_test::thread_count;
using namespace std::chrono_literals;

std::int64_t times3(std::int64_t x) { return x * 3; }

// submit(f, i) for i in [0, n).
template <class F>
std::vector<Future<std::int64_t>> submit_each(Pool& pool, std::int64_t n, F f) {
  std::vector<Future<std::int64_t>> futures;
  for (std::int64_t i = 0; i < n; ++i) futures.push_back(pool.submit(f, i));
  return futures;
}

TEST(Async, SubmitGivesEachResult) {
  Pool pool(2);
  std::vector<Future<std::int64_t>> futures;
  for (std::int64_t i = 0; i < 200; ++i)
    futures.push_back(pool.submit([](std::int64_t x, std::int64_t k) { return x * k; }, i, 7));
  for (std::int64_t i = 0; i < 200; ++i) {
    ASSERT_TRUE(futures[static_cast<std::size_t>(i)].valid());
    EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), i * 7);
    EXPECT_FALSE(futures[static_cast<std::size_t>(i)].valid());  // get() takes the result
  }
  EXPECT_EQ(pool.apply(&times3, 14), 42);
  EXPECT_EQ(pool.apply_async(&times3, 5).get(), 15);
  struct Pair {
    int a;
    double b;
  };
  const Pair p = pool.apply([](Pair q) { return Pair{q.a + 1, q.b * 2}; }, Pair{1, 1.5});
  EXPECT_EQ(p.a, 2);
  EXPECT_EQ(p.b, 3.0);
}

TEST(Async, VoidTasksWriteIntoTheSegment) {
  Pool pool(2);
  auto out = pool.shared_array<std::int64_t>(50);
  std::vector<Future<void>> futures;
  for (std::int64_t i = 0; i < 50; ++i)
    futures.push_back(
        pool.submit([](std::int64_t* o, std::int64_t k) { o[k] = k + 1; }, out.data(), i));
  for (auto& f : futures) f.get();
  for (std::int64_t i = 0; i < 50; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i + 1);
}

TEST(Async, GetWithATimeoutOnASlowTask) {
  Pool pool(2);
  Future<int> f = pool.submit([] {
    spin_for_us(400'000);
    return 5;
  });
  EXPECT_FALSE(f.ready());
  EXPECT_FALSE(f.wait_for(1ms));
  const auto e = catch_as<forkpool::FutureTimeout>([&] { f.get(20ms); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "not ready within 20 ms");
  EXPECT_TRUE(f.valid());  // the task keeps running
  f.wait();
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.get(5s), 5);
  EXPECT_FALSE(f.valid());
  EXPECT_THROW(f.get(), std::logic_error);
  EXPECT_THROW(static_cast<void>(Future<int>().ready()), std::logic_error);
}

TEST(Async, OneTaskThrowsTheOthersSucceed) {
  Pool pool(3);
  auto futures = submit_each(pool, 30, [](std::int64_t x) {
    if (x == 7) throw std::runtime_error("seven is bad");
    return x + 100;
  });
  for (std::int64_t i = 0; i < 30; ++i) {
    auto& f = futures[static_cast<std::size_t>(i)];
    if (i != 7) {
      EXPECT_EQ(f.get(), i + 100);
      continue;
    }
    const auto e = catch_as<forkpool::TaskError>([&] { f.get(); });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->index(), -1);
    EXPECT_EQ(e->type(), "std::runtime_error");
    EXPECT_EQ(e->message(), "seven is bad");
    EXPECT_CONTAINS(e->what(), "seven is bad");
  }
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

TEST(Async, SubmitsRunOnSeveralWorkers) {
  Pool pool(3);
  std::vector<Future<pid_t>> futures;
  for (int i = 0; i < 24; ++i)
    futures.push_back(pool.submit([] {
      spin_for_us(20'000);
      return forkpool::current_process().pid;
    }));
  std::set<pid_t> pids;
  for (auto& f : futures) pids.insert(f.get());
  EXPECT_GE(pids.size(), 2u);
  for (pid_t pid : pids) EXPECT_NE(pid, getpid());
}

struct Trap {
  std::atomic<int> armed;
  std::atomic<int> runs;
};

TEST(Async, AKilledWorkersTaskRunsAgain) {
  Pool pool(2);
  auto trap = pool.shared_array<Trap>(1);
  trap[0].armed = 1;
  std::vector<Future<std::int64_t>> futures;
  for (std::int64_t i = 0; i < 20; ++i)
    futures.push_back(pool.submit(
        [](Trap* t, std::int64_t x) {
          if (x == 3) {
            t->runs.fetch_add(1);
            if (t->armed.fetch_sub(1) > 0) raise(SIGKILL);
          }
          return x * x;
        },
        trap.data(), i));
  for (std::int64_t i = 0; i < 20; ++i)
    EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), i * i);
  EXPECT_EQ(trap[0].runs.load(), 2);
  EXPECT_EQ(pool.pids().size(), 2u);
}

TEST(Async, ATaskThatAlwaysKillsItsWorkerFailsAlone) {
  Pool pool(2);
  auto futures = submit_each(pool, 10, [](std::int64_t x) {
    if (x == 4) raise(SIGKILL);
    return x;
  });
  for (std::int64_t i = 0; i < 10; ++i) {
    auto& f = futures[static_cast<std::size_t>(i)];
    if (i == 4)
      EXPECT_THROW(f.get(), forkpool::BrokenPool);
    else
      EXPECT_EQ(f.get(), i);
  }
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

TEST(Async, OptionsTimeoutFailsOnlyTheTasksStillRunning) {
  Pool pool(forkpool::Options{.processes = 2, .timeout = 300ms});
  auto quick = submit_each(pool, 6, &times3);
  Future<int> stuck = pool.submit([] {
    spin_for_us(5'000'000);
    return 1;
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(stuck.get(), forkpool::Timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  for (std::int64_t i = 0; i < 6; ++i) EXPECT_EQ(quick[static_cast<std::size_t>(i)].get(), i * 3);
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

TEST(Async, DroppedFuturesLeaveOtherMemoryAlone) {
  Pool pool(2);
  // Futures dropped at once: their tasks still run, and write into slots that must still be theirs.
  for (std::int64_t i = 0; i < 200; ++i)
    static_cast<void>(pool.submit(
        [](std::int64_t x) {
          spin_for_us(200);
          return -1 - x;
        },
        i));
  static_cast<void>(pool.map_async([](std::int64_t x) { return -1 - x; }, forkpool::range(64)));
  std::vector<SharedArray<std::int64_t>> probes;
  for (int k = 0; k < 300; ++k) probes.push_back(pool.shared_array<std::int64_t>(1));
  EXPECT_EQ(pool.submit(&times3, 1).get(), 3);  // runs after everything queued before it
  for (const auto& p : probes) EXPECT_EQ(p[0], 0);
}

TEST(Async, AFutureOutlivesItsPool) {
  Future<std::int64_t> f;
  Future<SharedArray<std::int64_t>> m;
  {
    Pool pool(2);
    f = pool.submit(&times3, 11);
    m = pool.map_async(&times3, forkpool::range(1000));
  }  // ~Pool: close() lets them finish, join() waits
  ASSERT_TRUE(f.ready());
  EXPECT_EQ(f.get(), 33);
  const SharedArray<std::int64_t> out = m.get();
  ASSERT_EQ(out.size(), 1000u);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], static_cast<std::int64_t>(i) * 3);
}

TEST(Async, CloseLetsQueuedCallsFinish) {
  Pool pool(2);
  auto futures = submit_each(pool, 8, [](std::int64_t x) {
    spin_for_us(20'000);
    return x;
  });
  auto m = pool.map_async([](std::int64_t x) { return -x; }, forkpool::range(100));
  pool.close();
  EXPECT_THROW(pool.submit(&times3, 1), PoolClosed);
  EXPECT_THROW(pool.map_async(&times3, forkpool::range(3)), PoolClosed);
  EXPECT_THROW(pool.map(&times3, forkpool::range(3)), PoolClosed);
  pool.join();
  for (std::int64_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(futures[static_cast<std::size_t>(i)].ready());
    EXPECT_EQ(futures[static_cast<std::size_t>(i)].get(), i);
  }
  EXPECT_EQ(m.get()[99], -99);
  EXPECT_TRUE(pool.pids().empty());
}

TEST(Async, TerminateFailsQueuedCalls) {
  Pool pool(2);
  auto started = pool.shared_array<Trap>(1);
  Future<int> running = pool.submit(
      [](Trap* t) {
        t->runs.store(1);
        spin_for_us(300'000);
        return 1;
      },
      started.data());
  ASSERT_TRUE(forkpool_test::eventually([&] { return started[0].runs.load() == 1; }));
  auto queued = submit_each(pool, 5, &times3);
  auto m = pool.map_async(&times3, forkpool::range(10));
  pool.terminate();
  for (auto& f : queued) EXPECT_THROW(f.get(), PoolClosed);
  EXPECT_THROW(m.get(), PoolClosed);
  // The call running at terminate() finishes, or is cancelled.
  try {
    EXPECT_EQ(running.get(), 1);
  } catch (const forkpool::Cancelled&) {
  }
  EXPECT_THROW(pool.submit(&times3, 1), PoolClosed);
}

TEST(Async, MapAsyncEqualsMap) {
  Pool pool(3);
  const std::vector<double> in{1.5, 2.5, -3, 4, 0, 8};
  auto by_range =
      pool.map_async([](std::int64_t i) { return i * i - 5; }, forkpool::range(-7, 3000));
  auto by_span = pool.map_async([](const double& x) { return x / 2; }, in);
  auto scheduled = pool.map_async(&times3, forkpool::range(500), forkpool::Schedule::dynamic(7));
  auto empty = pool.map_async(&times3, forkpool::range(0));
  EXPECT_EQ(
      by_range.get().to_vector(),
      pool.map([](std::int64_t i) { return i * i - 5; }, forkpool::range(-7, 3000)).to_vector());
  EXPECT_EQ(by_span.get().to_vector(),
            pool.map([](const double& x) { return x / 2; }, in).to_vector());
  EXPECT_EQ(scheduled.get().to_vector(), pool.map(&times3, forkpool::range(500)).to_vector());
  EXPECT_TRUE(empty.get().empty());
  // A map_async that fails gives its error through the future.
  auto failing = pool.map_async(
      [](std::int64_t i) {
        if (i == 42) throw std::out_of_range("no 42");
        return i;
      },
      forkpool::range(100));
  const auto e = catch_as<forkpool::TaskError>([&] { failing.get(); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 42);
}

TEST(Async, StarmapZipsItsInputs) {
  Pool pool(2);
  const std::vector<std::int64_t> a{1, 2, 3, 4, 5};
  const std::array<double, 5> b{0.5, 1.5, 2.5, 3.5, 4.5};
  auto c = pool.shared_array<int>(5);
  for (int i = 0; i < 5; ++i) c[static_cast<std::size_t>(i)] = 10 * i;
  const auto out = pool.starmap(
      [](std::int64_t x, double y, int z) { return static_cast<double>(x) * y + z; }, a, b, c);
  ASSERT_EQ(out.size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(out[i], static_cast<double>(a[i]) * b[i] + c[i]);
  const auto single = pool.starmap(&times3, a);
  EXPECT_EQ(single.to_vector(), (std::vector<std::int64_t>{3, 6, 9, 12, 15}));
  const auto e = catch_as<std::invalid_argument>([&] {
    pool.starmap([](std::int64_t x, double y) { return x + y; }, a, std::vector<double>{1, 2});
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "(got 5, 2)");
}

TEST(Async, SubmitsAndMapsFromSeveralThreads) {
  Pool pool(2);
  std::atomic<bool> ok{true};
  std::thread mapper([&] {
    for (int k = 0; k < 20; ++k)
      if (!forkpool_test::map_works(pool, 1000)) ok = false;
  });
  for (std::int64_t i = 0; i < 200; ++i) EXPECT_EQ(pool.submit(&times3, i).get(), i * 3);
  mapper.join();
  EXPECT_TRUE(ok);
}

TEST(Async, LeavesNoThreadsProcessesOrDescriptors) {
  const std::size_t threads = thread_count();
  const std::size_t fds = forkpool_test::open_fd_count();
  const std::size_t children = forkpool_test::child_count();
  const std::size_t shared = forkpool_test::shared_mapping_count();
  for (int round = 0; round < 3; ++round) {
    Pool pool(2);
    auto f = pool.submit(&times3, 2);
    auto m = pool.map_async(&times3, forkpool::range(10));
    EXPECT_EQ(f.get(), 6);
    EXPECT_EQ(m.get()[9], 27);
    if (round == 1) pool.terminate();
  }
  EXPECT_EQ(thread_count(), threads);
  EXPECT_EQ(forkpool_test::open_fd_count(), fds);
  EXPECT_EQ(forkpool_test::child_count(), children);
  EXPECT_EQ(forkpool_test::shared_mapping_count(), shared);
}

}  // namespace
