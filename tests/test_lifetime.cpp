// A pool's lifetime: close / join / terminate, use after close or move, what is left behind
// (processes, zombies, descriptors, mappings), idle cost, signals, and pools made on threads.
#include <forkpool/forkpool.hpp>

#include "library_thread.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using forkpool::Pool;
using forkpool::PoolClosed;
using forkpool_test::child_count;
using forkpool_test::map_works;
using forkpool_test::process_exists;
using forkpool_test::process_state;

// True when none of `pids` exists any more (reaped: no zombie either).
bool all_gone(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids)
    if (process_exists(pid)) return false;
  return true;
}

// A process that has been killed but may not have been reaped by whoever adopted it.
bool dead_or_zombie(pid_t pid) {
  const char s = process_state(pid);
  return s == 0 || s == 'Z' || s == 'X';
}

TEST(Lifetime, CloseThenJoin) {
  const std::size_t children_before = child_count();
  Pool pool(3);
  const auto pids = pool.pids();
  EXPECT_EQ(child_count(), children_before + 3);
  ASSERT_TRUE(map_works(pool));
  pool.close();
  pool.join();
  EXPECT_TRUE(all_gone(pids));
  EXPECT_EQ(child_count(), children_before);
  // Both are idempotent.
  EXPECT_NO_THROW(pool.close());
  EXPECT_NO_THROW(pool.join());
}

TEST(Lifetime, CloseLetsIdleWorkersExitBeforeJoin) {
  Pool pool(2);
  const auto pids = pool.pids();
  pool.close();
  // The workers exit on their own, and the pool's monitor reaps them: no zombie waits for join().
  EXPECT_TRUE(forkpool_test::eventually([&] { return all_gone(pids); }));
  pool.join();
  EXPECT_TRUE(all_gone(pids));
}

TEST(Lifetime, JoinBeforeCloseThrowsLogicError) {
  Pool pool(2);
  EXPECT_THROW(pool.join(), std::logic_error);
  // Nothing was harmed.
  EXPECT_TRUE(map_works(pool));
  for (pid_t pid : pool.pids()) EXPECT_TRUE(process_exists(pid));
}

TEST(Lifetime, TerminateKillsAndReapsAtOnce) {
  const std::size_t children_before = child_count();
  Pool pool(3);
  const auto pids = pool.pids();
  ASSERT_TRUE(map_works(pool));
  const auto t0 = std::chrono::steady_clock::now();
  pool.terminate();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_TRUE(all_gone(pids));  // no waiting: terminate() reaps before it returns
  EXPECT_EQ(child_count(), children_before);
  EXPECT_THROW(map_works(pool), PoolClosed);
  EXPECT_NO_THROW(pool.join());
  EXPECT_NO_THROW(pool.terminate());
  EXPECT_NO_THROW(pool.close());
}

TEST(Lifetime, TerminateWithoutAnyMap) {
  Pool pool(4);
  const auto pids = pool.pids();
  pool.terminate();
  EXPECT_TRUE(all_gone(pids));
}

// Every way of starting work on `pool` over a Range, and making a shared array, throws PoolClosed.
void expect_range_uses_throw_pool_closed(Pool& pool) {
  const std::vector<std::int64_t> v{1, 2, 3};
  const auto f = [](std::int64_t x) { return x + 1; };
  EXPECT_THROW((void)pool.map(f, forkpool::range(100)), PoolClosed);
  EXPECT_THROW((void)pool.map(f, forkpool::range(0)), PoolClosed);
  EXPECT_THROW((void)pool.map(f, forkpool::range(100), forkpool::Schedule::dynamic(2)), PoolClosed);
  EXPECT_THROW((void)pool.map_reduce(f, forkpool::range(100), std::int64_t{0}, std::plus<>{}),
               PoolClosed);
  EXPECT_THROW(pool.for_each(forkpool::range(100), [](std::int64_t) {}), PoolClosed);
  EXPECT_THROW(pool.for_each(forkpool::range(0), [](std::int64_t) {}), PoolClosed);
  EXPECT_THROW((void)pool.shared_array<int>(10), PoolClosed);
  EXPECT_THROW((void)pool.shared_array<std::int64_t>(std::span<const std::int64_t>(v)), PoolClosed);
}

// The same for maps over contiguous inputs (vector, span).
void expect_input_uses_throw_pool_closed(Pool& pool) {
  const std::vector<std::int64_t> v{1, 2, 3};
  const auto f = [](std::int64_t x) { return x + 1; };
  EXPECT_THROW((void)pool.map(f, v), PoolClosed);
  EXPECT_THROW((void)pool.map(f, std::span<const std::int64_t>(v)), PoolClosed);
  EXPECT_THROW((void)pool.map(f, std::span<const std::int64_t>()), PoolClosed);
  EXPECT_THROW((void)pool.map_reduce(f, v, std::int64_t{0}, std::plus<>{}), PoolClosed);
}

void expect_every_use_throws_pool_closed(Pool& pool) {
  expect_range_uses_throw_pool_closed(pool);
  expect_input_uses_throw_pool_closed(pool);
}

TEST(Lifetime, ClosedPoolThrowsPoolClosed) {
  Pool pool(2);
  pool.close();
  expect_every_use_throws_pool_closed(pool);
  pool.join();
  expect_every_use_throws_pool_closed(pool);
}

TEST(Lifetime, TerminatedPoolThrowsPoolClosed) {
  Pool pool(2);
  pool.terminate();
  expect_every_use_throws_pool_closed(pool);
}

TEST(Lifetime, PoolClosedIsALogicError) {
  Pool pool(1);
  pool.close();
  EXPECT_THROW(map_works(pool), std::logic_error);
}

TEST(Lifetime, MovedFromPoolThrowsPoolClosed) {
  Pool a(2);
  const auto pids = a.pids();
  Pool b(std::move(a));
  expect_range_uses_throw_pool_closed(a);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.size(), 0u);                 // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(a.pids().empty());           // NOLINT(bugprone-use-after-move)
  EXPECT_NO_THROW(a.close());
  EXPECT_NO_THROW(a.join());
  EXPECT_NO_THROW(a.terminate());
  // The workers moved with the pool.
  EXPECT_EQ(b.pids(), pids);
  EXPECT_TRUE(map_works(b));
}

TEST(Lifetime, MovedFromPoolMapOverAnInputThrowsPoolClosed) {
  Pool a(2);
  Pool b(std::move(a));
  expect_input_uses_throw_pool_closed(a);  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(map_works(b));
}

TEST(Lifetime, MoveAssignmentShutsDownTheOldWorkers) {
  Pool a(2), c(3);
  const auto pids_a = a.pids(), pids_c = c.pids();
  c = std::move(a);
  EXPECT_TRUE(all_gone(pids_c));  // c's old workers were closed and reaped
  EXPECT_EQ(c.pids(), pids_a);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_TRUE(map_works(c));
  expect_range_uses_throw_pool_closed(a);  // NOLINT(bugprone-use-after-move)
  // Self-move leaves the pool working.
  Pool& alias = c;
  c = std::move(alias);
  EXPECT_TRUE(map_works(c));
}

TEST(Lifetime, NoChildLeftAfterTheDestructor) {
  const std::size_t children_before = child_count();
  std::vector<pid_t> pids;
  {
    Pool pool(4);
    pids = pool.pids();
    EXPECT_EQ(child_count(), children_before + 4);
    ASSERT_TRUE(map_works(pool, 100000));
  }
  EXPECT_TRUE(all_gone(pids));  // reaped: not even zombies
  EXPECT_EQ(child_count(), children_before);
  {
    Pool idle(3);  // never used
    pids = idle.pids();
  }
  EXPECT_TRUE(all_gone(pids));
  EXPECT_EQ(child_count(), children_before);
}

TEST(Lifetime, ResultsOutliveThePool) {
  forkpool::SharedArray<std::int64_t> out;
  std::vector<pid_t> pids;
  {
    Pool pool(2);
    pids = pool.pids();
    out = pool.map([](std::int64_t i) { return 3 * i; }, forkpool::range(100000));
  }
  EXPECT_TRUE(all_gone(pids));
  ASSERT_EQ(out.size(), 100000u);
  for (std::size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], 3 * static_cast<std::int64_t>(k));
}

TEST(Lifetime, IdleWorkersUseNoCpu) {
  Pool pool(3);
  ASSERT_TRUE(map_works(pool, 1000000));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past the post-map spin
  std::vector<std::uint64_t> before;
  for (pid_t pid : pool.pids()) {
    const auto t = forkpool_test::cpu_ticks(pid);
    ASSERT_TRUE(t.has_value());
    before.push_back(*t);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto pids = pool.pids();
  for (std::size_t w = 0; w < pids.size(); ++w) {
    const auto t = forkpool_test::cpu_ticks(pids[w]);
    ASSERT_TRUE(t.has_value());
    EXPECT_LE(*t - before[w], 2u) << "worker " << w << " used CPU while idle (clock ticks of "
                                  << sysconf(_SC_CLK_TCK) << " Hz)";
  }
  EXPECT_TRUE(map_works(pool));
}

TEST(Lifetime, PoolBuiltOnAThreadThatExits) {
  // PR_SET_PDEATHSIG fires when the forking *thread* exits (HAZARDS.md 3): the pool must not
  // lose its workers when the thread that built it ends.
  std::optional<Pool> pool;
  std::thread([&pool] { pool.emplace(2); }).join();
  ASSERT_TRUE(pool.has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (pid_t pid : pool->pids()) {
    EXPECT_TRUE(process_exists(pid));
    EXPECT_NE(process_state(pid), 'Z') << "worker " << pid << " died with the thread";
  }
  EXPECT_TRUE(map_works(*pool, 100000));
  // And it shuts down normally from the main thread.
  const auto pids = pool->pids();
  pool.reset();
  EXPECT_TRUE(all_gone(pids));
}

TEST(Lifetime, PoolBuiltWhileAnotherThreadWritesToAFile) {
  // Only the forking thread survives in the child (HAZARDS.md 4): a stdio lock another thread
  // holds at the fork must not stop the workers, which flush every stream after each map.
  std::FILE* sink = std::fopen("/dev/null", "w");
  ASSERT_NE(sink, nullptr);
  std::atomic<bool> stop{false}, writing{false};
  std::thread writer([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      std::fprintf(sink, "some text to keep the stream's lock busy %d\n", 42);
      std::fprintf(stdout, "%s", "");  // stdout's lock too, without printing anything
      writing.store(true, std::memory_order_release);
    }
  });
  // Not before the writer is running: AddressSanitizer's allocator (GCC 12) is not fork-safe, and
  // a thread that is starting allocates through it (README, Known limits); a fork at that instant
  // would leave the child blocked on an allocator lock that no thread of it holds.
  while (!writing.load(std::memory_order_acquire)) std::this_thread::yield();
  for (int round = 0; round < 20; ++round) {
    Pool pool(2);
    ASSERT_TRUE(map_works(pool, 1000)) << "round " << round;
  }
  stop.store(true);
  writer.join();
  std::fclose(sink);
}

TEST(Lifetime, LibraryThreadsRunWithEverySignalBlocked) {
  // The monitor's and the dispatcher's threads: a program's signals are for its own threads, and
  // the caller's mask is left as it was.
  sigset_t before;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &before), 0);
  sigset_t seen;
  sigemptyset(&seen);
  auto thread = forkpool::detail::start_library_thread(
      [&seen] { pthread_sigmask(SIG_SETMASK, nullptr, &seen); });
  thread->join();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGRTMIN})
    EXPECT_EQ(sigismember(&seen, sig), 1) << "signal " << sig << " not blocked in the thread";
  sigset_t after;
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
  for (int sig = 1; sig < SIGRTMAX; ++sig)
    EXPECT_EQ(sigismember(&after, sig), sigismember(&before, sig)) << "signal " << sig;
}

TEST(Lifetime, WorkersIgnoreSigint) {
  Pool pool(3);
  ASSERT_TRUE(map_works(pool));
  const auto pids = pool.pids();
  for (pid_t pid : pids) ASSERT_EQ(kill(pid, SIGINT), 0);
  for (pid_t pid : pids) ASSERT_EQ(kill(pid, SIGQUIT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // A dead worker would be reaped by the pool's monitor at once, so check it still exists.
  for (pid_t pid : pids)
    EXPECT_TRUE(process_exists(pid) && process_state(pid) != 'Z')
        << "worker " << pid << " died of SIGINT";
  EXPECT_TRUE(map_works(pool, 100000));
  // While a map runs, too.
  std::thread interrupter([&pids] {
    for (int k = 0; k < 20; ++k) {
      for (pid_t pid : pids) kill(pid, SIGINT);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  const auto total = pool.map_reduce(
      [](std::int64_t i) {
        forkpool_test::spin_for_us(5);
        return i;
      },
      forkpool::range(20000), std::int64_t{0}, std::plus<>{});
  interrupter.join();
  EXPECT_EQ(total, std::int64_t{20000} * 19999 / 2);
}

TEST(Lifetime, NothingLeaks) {
  {
    Pool warm_up(2);  // first-use allocations of the runtime are not leaks
    ASSERT_TRUE(map_works(warm_up));
  }
  const std::size_t fds_before = forkpool_test::open_fd_count();
  const std::size_t maps_before = forkpool_test::mapping_count();
  const std::size_t children_before = child_count();
  for (int round = 0; round < 5; ++round) {
    Pool pool(2 + round % 3);
    ASSERT_TRUE(map_works(pool, 100000));
    auto shared = pool.shared_array<double>(1000);
    const auto total = pool.map_reduce([](std::int64_t i) { return i; }, forkpool::range(1000),
                                       std::int64_t{0}, std::plus<>{});
    EXPECT_EQ(total, 499500);
    if (round % 2 == 1) pool.terminate();
  }
  EXPECT_EQ(forkpool_test::open_fd_count(), fds_before);
#if defined(__SANITIZE_ADDRESS__)
  (void)maps_before;  // AddressSanitizer maps memory of its own as it goes
#else
  EXPECT_EQ(forkpool_test::mapping_count(), maps_before);
#endif
  EXPECT_EQ(child_count(), children_before);
}

std::vector<pid_t> parse_pids(const std::string& s) {
  std::vector<pid_t> pids;
  std::istringstream in(s);
  for (long p; in >> p;) pids.push_back(static_cast<pid_t>(p));
  return pids;
}

void write_pids(int fd, const std::vector<pid_t>& pids) {
  std::string s;
  for (pid_t p : pids) s += std::to_string(p) + " ";
  (void)!write(fd, s.data(), s.size());
}

TEST(Lifetime, WorkersDieWithTheirParentProcess) {
  // The owner process ends without destroying its pool (as if it were killed): the workers,
  // adopted by another process, must not live on.
  const auto r = forkpool_test::run_in_child([](int fd) {
    auto* pool = new Pool(3);  // leaked on purpose
    write_pids(fd, pool->pids());
    close(fd);
    _exit(0);
  });
  ASSERT_TRUE(WIFEXITED(r.status));
  const auto pids = parse_pids(r.output);
  ASSERT_EQ(pids.size(), 3u);
  for (pid_t pid : pids)
    EXPECT_TRUE(forkpool_test::eventually([pid] { return dead_or_zombie(pid); }))
        << "worker " << pid << " outlived its parent";
}

TEST(Lifetime, WorkersOfAThreadBuiltPoolDieWithTheirParentProcess) {
  // Made on a thread, the pool cannot use PR_SET_PDEATHSIG; the workers notice the parent's
  // death on their own (they check it while they sleep).
  const auto r = forkpool_test::run_in_child([](int fd) {
    Pool* pool = nullptr;
    std::thread([&pool] { pool = new Pool(2); }).join();
    write_pids(fd, pool->pids());
    close(fd);
    _exit(0);
  });
  ASSERT_TRUE(WIFEXITED(r.status));
  const auto pids = parse_pids(r.output);
  ASSERT_EQ(pids.size(), 2u);
  for (pid_t pid : pids)
    EXPECT_TRUE(forkpool_test::eventually([pid] { return dead_or_zombie(pid); },
                                          std::chrono::milliseconds(5000)))
        << "worker " << pid << " outlived its parent";
}

}  // namespace
