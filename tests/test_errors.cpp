// Bad input, a full segment, exceptions thrown by f, and nested maps.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace errors_test {
struct MyError : std::exception {
  const char* what() const noexcept override { return "my own error"; }
};
}  // namespace errors_test

namespace {

using forkpool::BrokenPool;
using forkpool::Options;
using forkpool::Pool;
using forkpool::PoolClosed;
using forkpool::Schedule;
using forkpool::SegmentFull;
using forkpool::TaskError;
using Clock = std::chrono::steady_clock;

// Every kind of schedule (test_util.hpp).
const auto& kAllSchedules = forkpool_test::kEverySchedule;

using forkpool_test::catch_as;
using forkpool_test::map_works;
using forkpool_test::schedule_test_name;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Bad arguments

TEST(BadInput, ZeroProcesses) {
  EXPECT_THROW(Pool(0u), std::invalid_argument);
  // Options{.processes = 0} means cpu_count(), not an error.
  Pool pool(Options{.processes = 0});
  EXPECT_EQ(pool.size(), forkpool::cpu_count());
}

TEST(BadInput, TooManyProcessesFailsAtOnceWithoutForking) {
  const std::size_t children_before = forkpool_test::child_count();
  const auto t0 = Clock::now();
  EXPECT_THROW(Pool(1000000u), std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 1000000}), std::invalid_argument);
  EXPECT_THROW(Pool(Pool::max_processes() + 1), std::invalid_argument);
  EXPECT_LT(seconds_since(t0), 1.0);
  EXPECT_EQ(forkpool_test::child_count(), children_before);
  EXPECT_GE(Pool::max_processes(), 1u);
  const auto e = catch_as<std::invalid_argument>([] { Pool p(1000000u); });
  if (e) {
    EXPECT_CONTAINS(e->what(), "1000000");
  }
}

TEST(BadInput, ScheduleParameters) {
  EXPECT_THROW(Schedule::dynamic(0), std::invalid_argument);
  EXPECT_THROW(Schedule::guided(0), std::invalid_argument);
  EXPECT_NO_THROW(Schedule::work_stealing(0));  // 0 = automatic grain
}

TEST(BadInput, Ranges) {
  EXPECT_THROW(forkpool::range(5, 1), std::invalid_argument);
  EXPECT_THROW(forkpool::range(-1), std::invalid_argument);
  EXPECT_NO_THROW(forkpool::range(5, 5));
  EXPECT_NO_THROW(forkpool::range(0));
}

TEST(BadInput, BackwardsRangeBuiltByHand) {
  Pool pool(2);
  const forkpool::Range r{5, 1};
  const auto f = [](std::int64_t i) { return i; };
  EXPECT_THROW((void)pool.map(f, r), std::invalid_argument);
  EXPECT_THROW((void)pool.map(f, r, Schedule::dynamic(1)), std::invalid_argument);
  EXPECT_THROW((void)pool.map_reduce(f, r, std::int64_t{0}, std::plus<>{}), std::invalid_argument);
  EXPECT_THROW(pool.for_each(r, [](std::int64_t) {}), std::invalid_argument);
  EXPECT_TRUE(map_works(pool));
}

TEST(BadInput, RangesOfTwoToTheSixtyTwoItemsOrMore) {
  Pool pool(2);
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t k61 = std::int64_t{1} << 61;
  const forkpool::Range too_big[] = {forkpool::range(0, std::int64_t{1} << 62),
                                     forkpool::range(-k61, k61), forkpool::range(kMin, kMax),
                                     forkpool::range(kMin, 0), forkpool::range(-1, kMax)};
  const auto f = [](std::int64_t i) { return i; };
  for (const auto& r : too_big) {
    SCOPED_TRACE(std::to_string(r.first) + " .. " + std::to_string(r.last));
    EXPECT_THROW((void)pool.map(f, r), std::invalid_argument);
    EXPECT_THROW((void)pool.map_reduce(f, r, std::int64_t{0}, std::plus<>{}),
                 std::invalid_argument);
    EXPECT_THROW(pool.for_each(r, [](std::int64_t) {}), std::invalid_argument);
  }
  // One fewer is a valid range, but its results cannot fit the segment.
  EXPECT_THROW((void)pool.map(f, forkpool::range(0, (std::int64_t{1} << 62) - 1)), SegmentFull);
  EXPECT_TRUE(map_works(pool));
}

TEST(BadInput, SegmentTooSmall) {
  const std::size_t children_before = forkpool_test::child_count();
  EXPECT_THROW(Pool(Options{.processes = 2, .segment_bytes = 1024}), std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 2, .segment_bytes = 0}), std::invalid_argument);
  EXPECT_THROW(Pool(Options{.processes = 2, .segment_bytes = 65535}), std::invalid_argument);
  EXPECT_EQ(forkpool_test::child_count(), children_before);  // nothing was forked
  const auto e = catch_as<std::invalid_argument>(
      [] { Pool p(Options{.processes = 2, .segment_bytes = 1024}); });
  if (e) {
    EXPECT_CONTAINS(e->what(), "segment_bytes");
  }
  // A small segment (1 MiB) is accepted and works.
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{1} << 20});
  EXPECT_TRUE(map_works(pool, 1000));
}

// ---------------------------------------------------------------------------------------------
// A full segment

TEST(SegmentFullError, ResultsThatCannotFit) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{1} << 20});
  const auto e = catch_as<SegmentFull>(
      [&] { (void)pool.map([](std::int64_t i) { return i; }, forkpool::range(1000000)); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "segment_bytes");
  EXPECT_CONTAINS(e->what(), "1000000");  // what it needed
  // SegmentFull is a forkpool::Error.
  EXPECT_THROW((void)pool.map([](std::int64_t i) { return i; }, forkpool::range(1000000)),
               forkpool::Error);
  // The pool is still usable.
  EXPECT_TRUE(map_works(pool, 10000));
}

TEST(SegmentFullError, WhenEarlierResultsHoldTheSpace) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{1} << 20});
  const auto f = [](std::int64_t i) { return i; };
  auto first = pool.map(f, forkpool::range(100000));  // 800000 bytes: fits once, not twice
  const auto e = catch_as<SegmentFull>([&] { (void)pool.map(f, forkpool::range(100000)); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "segment_bytes");
  EXPECT_CONTAINS(e->what(), "800000");
  // Giving the first results back makes room again.
  first = forkpool::SharedArray<std::int64_t>();
  const auto again = pool.map(f, forkpool::range(100000));
  EXPECT_EQ(again[99999], 99999);
}

TEST(SegmentFullError, InputsAndSharedArraysThatCannotFit) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{1} << 20});
  const std::vector<std::int64_t> big(200000, 1);  // 1.6 MB to copy in
  EXPECT_THROW((void)pool.map([](std::int64_t x) { return x; }, big), SegmentFull);
  EXPECT_THROW(
      (void)pool.map_reduce([](std::int64_t x) { return x; }, big, std::int64_t{0}, std::plus<>{}),
      SegmentFull);
  EXPECT_THROW((void)pool.shared_array<double>(1000000), SegmentFull);
  volatile std::size_t huge = std::numeric_limits<std::size_t>::max();  // not a constant
  EXPECT_THROW((void)pool.shared_array<char>(huge), SegmentFull);
  EXPECT_TRUE(map_works(pool, 10000));
  const std::vector<std::int64_t> small(1000, 2);
  EXPECT_EQ(
      pool.map_reduce([](std::int64_t x) { return x; }, small, std::int64_t{0}, std::plus<>{}),
      2000);
}

// ---------------------------------------------------------------------------------------------
// Exceptions thrown by f

class ErrorsEverySchedule : public ::testing::TestWithParam<Schedule> {};

void expect_bad_item(const std::optional<TaskError>& e, std::int64_t index) {
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), index);
  EXPECT_EQ(e->type(), "std::runtime_error");
  EXPECT_EQ(e->message(), "bad item");
  EXPECT_CONTAINS(e->what(), std::to_string(index));
  EXPECT_CONTAINS(e->what(), "std::runtime_error");
  EXPECT_CONTAINS(e->what(), "bad item");
}

TEST_P(ErrorsEverySchedule, MapPropagatesTaskError) {
  const Schedule s = GetParam();
  Pool pool(3);
  const auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 12345) throw std::runtime_error("bad item");
          return i;
        },
        forkpool::range(1000000), s);
  });
  expect_bad_item(e, 12345);
  // The pool is usable afterwards, and the next map is right.
  EXPECT_TRUE(map_works(pool, 1000000));
  // A TaskError is a forkpool::Error and a std::runtime_error.
  EXPECT_THROW((void)pool.map(
                   [](std::int64_t i) {
                     if (i == 999999) throw std::runtime_error("bad item");
                     return i;
                   },
                   forkpool::range(1000000), s),
               std::runtime_error);
  EXPECT_TRUE(map_works(pool));
}

TEST_P(ErrorsEverySchedule, MapReduceAndForEachPropagateTaskError) {
  const Schedule s = GetParam();
  Pool pool(2);
  auto e = catch_as<TaskError>([&] {
    (void)pool.map_reduce(
        [](std::int64_t i) {
          if (i == 12345) throw std::runtime_error("bad item");
          return i;
        },
        forkpool::range(-100, 1000000), std::int64_t{0}, std::plus<>{}, s);
  });
  expect_bad_item(e, 12345);
  EXPECT_EQ(pool.map_reduce([](std::int64_t i) { return i; }, forkpool::range(1000),
                            std::int64_t{0}, std::plus<>{}, s),
            499500);
  e = catch_as<TaskError>([&] {
    pool.for_each(
        forkpool::range(1000000),
        [](std::int64_t i) {
          if (i == 12345) throw std::runtime_error("bad item");
        },
        s);
  });
  expect_bad_item(e, 12345);
  EXPECT_TRUE(map_works(pool));
  // Over a span: the index is the position in the input, not the item's value.
  std::vector<std::int32_t> items(50000);
  for (std::size_t k = 0; k < items.size(); ++k) items[k] = static_cast<std::int32_t>(k) + 1000;
  e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](const std::int32_t& x) {
          if (x == 5321) throw std::runtime_error("bad item");
          return x;
        },
        items, s);
  });
  expect_bad_item(e, 4321);
  const auto f = catch_as<TaskError>([&] {
    (void)pool.map_reduce(
        [](const std::int32_t& x) {
          if (x == 3) throw std::runtime_error("bad item");
          return std::int64_t{x};
        },
        std::vector<std::int32_t>{1, 2, 3, 4}, std::int64_t{0}, std::plus<>{}, s);
  });
  expect_bad_item(f, 2);
  EXPECT_TRUE(map_works(pool));
}

TEST_P(ErrorsEverySchedule, ErrorAtTheFirstAndLastItems) {
  const Schedule s = GetParam();
  Pool pool(3);
  for (std::int64_t bad : {std::int64_t{0}, std::int64_t{99999}}) {
    const auto e = catch_as<TaskError>([&] {
      (void)pool.map(
          [bad](std::int64_t i) {
            if (i == bad) throw std::runtime_error("bad item");
            return i;
          },
          forkpool::range(100000), s);
    });
    expect_bad_item(e, bad);
  }
  EXPECT_TRUE(map_works(pool));
}

TEST_P(ErrorsEverySchedule, ManyThrowingItemsReportOneConsistentError) {
  // Every item throws, with its own index as the message: the first recorded error wins, and its
  // index, type and message all come from the same exception.
  const Schedule s = GetParam();
  Pool pool(4);
  for (int round = 0; round < 20; ++round) {
    const auto e = catch_as<TaskError>([&] {
      (void)pool.map(
          [](std::int64_t i) -> std::int64_t { throw std::out_of_range(std::to_string(i)); },
          forkpool::range(100000), s);
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type(), "std::out_of_range");
    EXPECT_EQ(e->message(), std::to_string(e->index()));
    EXPECT_GE(e->index(), 0);
    EXPECT_LT(e->index(), 100000);
  }
  EXPECT_TRUE(map_works(pool));
}

TEST_P(ErrorsEverySchedule, MapIsCancelledPromptly) {
  // Items of ~10 us; the error is at item 0 of 10^6: the whole map would take 10 s of CPU
  // (5 s on two workers). The rest must be cancelled: few items run, well under that time.
  // Item 0 throws only once the other worker has started on its own items (or after 0.5 s), so
  // that the error always meets a map in full flight, whatever the timing of the wake-ups.
  const Schedule s = GetParam();
  Pool pool(2);
  auto ran = pool.shared_array<std::uint64_t>(1);
  const std::int64_t n = 1000000;
  const auto t0 = Clock::now();
  const auto e = catch_as<TaskError>([&] {
    pool.for_each(
        forkpool::range(n),
        [ran = ran.data()](std::int64_t i) {
          std::atomic_ref<std::uint64_t> started(*ran);
          started.fetch_add(1, std::memory_order_relaxed);
          if (i == 0) {
            const auto until = Clock::now() + std::chrono::milliseconds(500);
            while (started.load(std::memory_order_relaxed) < 2 && Clock::now() < until) {
            }
            throw std::runtime_error("bad item");
          }
          forkpool_test::spin_for_us(10);
        },
        s);
  });
  const double elapsed = seconds_since(t0);
  expect_bad_item(e, 0);
  EXPECT_LT(elapsed, 2.0) << "the map was not cancelled promptly";
  EXPECT_LT(ran[0], static_cast<std::uint64_t>(n / 10))
      << "items run after the error: most of the map should have been cancelled";
  EXPECT_TRUE(map_works(pool));
}

INSTANTIATE_TEST_SUITE_P(All, ErrorsEverySchedule, ::testing::ValuesIn(kAllSchedules),
                         [](const ::testing::TestParamInfo<Schedule>& info) {
                           return schedule_test_name(info.param);
                         });

TEST(TaskErrors, CustomExceptionTypeIsDemangled) {
  Pool pool(2);
  const auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 77) throw errors_test::MyError();
          return i;
        },
        forkpool::range(1000));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 77);
  EXPECT_EQ(e->type(), "errors_test::MyError");
  EXPECT_EQ(e->message(), "my own error");
  EXPECT_CONTAINS(e->what(), "errors_test::MyError");
  EXPECT_TRUE(map_works(pool));
}

TEST(TaskErrors, ThrowingAnInt) {
  Pool pool(2);
  const auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 5) throw 42;
          return i;
        },
        forkpool::range(1000));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 5);
  EXPECT_EQ(e->type(), "int");
  EXPECT_FALSE(e->message().empty());
  EXPECT_CONTAINS(e->what(), "int");
  EXPECT_TRUE(map_works(pool));
}

TEST(TaskErrors, StandardLibraryExceptions) {
  Pool pool(2);
  auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 3) return static_cast<std::int64_t>(std::vector<int>(2).at(5));
          return i;
        },
        forkpool::range(10));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 3);
  EXPECT_EQ(e->type(), "std::out_of_range");
  EXPECT_CONTAINS(e->message(), "5");
  // A very long message is cut, not overflowed.
  e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 1) throw std::runtime_error(std::string(100000, 'x'));
          return i;
        },
        forkpool::range(10));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 1);
  EXPECT_GT(e->message().size(), 100u);
  EXPECT_LT(e->message().size(), 100000u);
  EXPECT_EQ(e->message().find_first_not_of('x'), std::string::npos);
  EXPECT_TRUE(map_works(pool));
}

// f calls target->map(...) and returns; `target` is a pool the workers know.
std::optional<TaskError> nested_map_error(Pool& pool, Pool* target) {
  return catch_as<TaskError>([&] {
    (void)pool.map(
        [target](std::int64_t i) {
          const auto inner = target->map([](std::int64_t x) { return x; }, forkpool::range(3));
          return i + static_cast<std::int64_t>(inner.size());
        },
        forkpool::range(100));
  });
}

TEST(TaskErrors, NestedMapOnTheSamePoolIsATaskError) {
  // In the workers, `pool` is the object as it was during its own construction, when they were
  // forked; the error must still say what went wrong: a nested map.
  Pool pool(2);
  const auto e = nested_map_error(pool, &pool);
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->message(), "nested");
  EXPECT_CONTAINS(e->message(), "not supported");
  EXPECT_TRUE(map_works(pool));
}

TEST(TaskErrors, NestedMapOnAnotherPoolIsATaskError) {
  Pool other(1);  // built first, so that the workers of `pool` have a copy of it
  Pool pool(2);
  const auto e = nested_map_error(pool, &other);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type(), "std::logic_error");
  EXPECT_CONTAINS(e->message(), "nested");
  EXPECT_CONTAINS(e->message(), "not supported");
  EXPECT_TRUE(map_works(pool));
  EXPECT_TRUE(map_works(other));
}

TEST(TaskErrors, PoolUsedFromAForkedChildThrowsLogicError) {
  Pool pool(2);
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    int code = 1;
    try {
      (void)pool.map([](std::int64_t i) { return i; }, forkpool::range(10));
    } catch (const PoolClosed&) {
      code = 2;
    } catch (const std::logic_error&) {
      code = 0;
    } catch (...) {
      code = 3;
    }
    _exit(code);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(map_works(pool));
}

}  // namespace
