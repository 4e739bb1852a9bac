// The fork pitfall (SEED.md, "Using multiple pools in a single script"): each worker holds the
// parent's memory as it was when the pool was built. What the parent changes afterwards is
// invisible to the workers unless it lives in the shared segment (Pool::shared_array), or the
// pool is built after the change. Also the output side of forking (HAZARDS.md 5): buffered output
// is neither lost nor duplicated, and workers never run the parent's exit handlers.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace {

using forkpool::Pool;

volatile std::int64_t g_setting = 1;  // a global the parent changes after building a pool
volatile std::int64_t g_touched_by_workers = 0;

std::int64_t square(std::int64_t x) { return x * x; }
std::int64_t cube(std::int64_t x) { return x * x * x; }

TEST(ForkPitfall, AGlobalChangedAfterTheForkIsNotSeen) {
  g_setting = 1;
  Pool before(2);
  g_setting = 2;
  const auto seen_before = before.map([](std::int64_t) { return g_setting; }, forkpool::range(100));
  for (std::int64_t v : seen_before) EXPECT_EQ(v, 1) << "the workers see memory as at the fork";
  // A pool built after the change sees it.
  Pool after(2);
  const auto seen_after = after.map([](std::int64_t) { return g_setting; }, forkpool::range(100));
  for (std::int64_t v : seen_after) EXPECT_EQ(v, 2);
  g_setting = 1;
}

TEST(ForkPitfall, HeapDataChangedAfterTheForkIsNotSeen) {
  std::vector<std::int64_t> table(1000,
                                  7);  // allocated before the fork: the pointer is valid there
  Pool pool(2);
  table[10] = 99;
  const auto out =
      pool.map([t = table.data()](std::int64_t i) { return t[i]; }, forkpool::range(1000));
  EXPECT_EQ(out[10], 7);  // the worker's copy-on-write page still holds the old value
  // Passing the data as the map's input copies it into the segment: then it is current.
  const auto current = pool.map([](std::int64_t x) { return x; }, table);
  EXPECT_EQ(current[10], 99);
}

TEST(ForkPitfall, SharedArrayIsTheFix) {
  Pool pool(3);
  auto table = pool.shared_array<std::int64_t>(1000);  // made and filled after the fork
  for (std::size_t k = 0; k < table.size(); ++k) table[k] = static_cast<std::int64_t>(k);
  const auto read = [t = table.data()](std::int64_t i) { return t[i]; };
  auto out = pool.map(read, forkpool::range(1000));
  for (std::size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], static_cast<std::int64_t>(k));
  // Changed between maps: the next map sees the new values.
  for (std::size_t k = 0; k < table.size(); ++k) table[k] = -static_cast<std::int64_t>(k);
  out = pool.map(read, forkpool::range(1000));
  for (std::size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], -static_cast<std::int64_t>(k));
  // A copy made from a span.
  const std::vector<std::int32_t> v{4, 5, 6};
  auto copy = pool.shared_array<std::int32_t>(std::span<const std::int32_t>(v));
  EXPECT_EQ(copy.to_vector(), v);
  const auto doubled =
      pool.map([c = copy.data()](std::int64_t i) { return 2 * c[i]; }, forkpool::range(3));
  EXPECT_EQ(doubled.to_vector(), (std::vector<std::int32_t>{8, 10, 12}));
}

TEST(ForkPitfall, WorkersWritesReachTheParentOnlyThroughTheSegment) {
  Pool pool(2);
  g_touched_by_workers = 0;
  auto shared = pool.shared_array<std::int64_t>(100);
  pool.for_each(forkpool::range(100), [s = shared.data()](std::int64_t i) {
    g_touched_by_workers = g_touched_by_workers + 1;  // the worker's private copy
    s[i] = i + 1;                                     // shared
  });
  EXPECT_EQ(g_touched_by_workers, 0);
  for (std::int64_t k = 0; k < 100; ++k) EXPECT_EQ(shared[static_cast<std::size_t>(k)], k + 1);
}

TEST(ForkPitfall, EveryFunctionExistsInTheWorkers) {
  // Python's broken_pool.py fails because `cube` is defined after the fork. In C++ every
  // function is in the binary the workers run, so both maps work on one pool.
  Pool pool(2);
  const std::vector<std::int64_t> a{1, 2, 3, 4, 5};
  EXPECT_EQ(pool.map(square, a).to_vector(), (std::vector<std::int64_t>{1, 4, 9, 16, 25}));
  EXPECT_EQ(pool.map(cube, a).to_vector(), (std::vector<std::int64_t>{1, 8, 27, 64, 125}));
}

TEST(ForkOutput, BufferedOutputIsWrittenOnce) {
  // stdout on a pipe is fully buffered: text printed before the pool is built must not be
  // written again by each worker (HAZARDS.md 5).
  const auto r = forkpool_test::run_in_child([](int fd) {
    dup2(fd, STDOUT_FILENO);
    close(fd);
    std::printf("before the pool\n");  // still in the buffer at the fork
    {
      Pool pool(3);
      (void)pool.map(square, forkpool::range(100));
      std::printf("between maps\n");
      (void)pool.map(cube, forkpool::range(100));
    }
    std::printf("after the pool\n");
    std::fflush(stdout);
    _exit(0);
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.output;
  EXPECT_EQ(forkpool_test::occurrences(r.output, "before the pool"), 1u) << r.output;
  EXPECT_EQ(forkpool_test::occurrences(r.output, "between maps"), 1u) << r.output;
  EXPECT_EQ(forkpool_test::occurrences(r.output, "after the pool"), 1u) << r.output;
}

TEST(ForkOutput, WhatWorkersPrintArrivesOnce) {
  const auto r = forkpool_test::run_in_child([](int fd) {
    dup2(fd, STDOUT_FILENO);
    close(fd);
    Pool pool(2);
    pool.for_each(forkpool::range(20),
                  [](std::int64_t i) { std::printf("[item %lld]\n", static_cast<long long>(i)); });
    // The workers flush after each map: all of it is written before the map returns.
    std::printf("[map returned]\n");
    std::fflush(stdout);
    _exit(0);
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.output;
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(forkpool_test::occurrences(r.output, "[item " + std::to_string(i) + "]"), 1u)
        << r.output;
  const auto returned = r.output.find("[map returned]");
  ASSERT_NE(returned, std::string::npos);
  EXPECT_EQ(r.output.find("[item", returned), std::string::npos)
      << "worker output arrived after the map returned:\n"
      << r.output;
}

int g_exit_fd = -1;

TEST(ForkOutput, WorkersDoNotRunTheParentsExitHandlers) {
  const auto r = forkpool_test::run_in_child([](int fd) {
    g_exit_fd = fd;
    std::atexit([] { (void)!write(g_exit_fd, "[atexit]\n", 9); });
    {
      Pool pool(3);
      (void)pool.map(square, forkpool::range(1000));
    }
    std::exit(0);  // runs the handler once, in this process only
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.output;
  EXPECT_EQ(WEXITSTATUS(r.status), 0);
  EXPECT_EQ(forkpool_test::occurrences(r.output, "[atexit]"), 1u) << r.output;
}

}  // namespace
