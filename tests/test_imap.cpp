// Pool::imap and imap_unordered: order, exactly-once delivery, bounded memory with a slow reader,
// lazy input, early abandonment, errors, dead workers, and the pool's state around a stream.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <list>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

using forkpool::ImapOptions;
using forkpool::Indexed;
using forkpool::Options;
using forkpool::Pool;
using forkpool::Schedule;
using forkpool_test::catch_as;
using forkpool_test::map_works;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

using Squares =
    decltype(std::declval<Pool&>().imap([](std::int64_t i) { return i * i; }, forkpool::range(1)));
static_assert(std::input_iterator<std::ranges::iterator_t<Squares>>);
static_assert(std::ranges::input_range<Squares>);
static_assert(std::is_same_v<std::ranges::range_value_t<Squares>, std::int64_t>);
static_assert(!std::is_copy_constructible_v<Squares> && std::is_move_constructible_v<Squares>);

std::int64_t square(std::int64_t i) { return i * i; }

// The schedules a window may run under, and the default (dynamic(chunksize)).
const Schedule kSchedules[] = {Schedule::dynamic(1),        Schedule::static_blocks(),
                               Schedule::static_chunked(3), Schedule::guided(),
                               Schedule::work_stealing(),   Schedule::adaptive_stealing(),
                               Schedule::python(5)};

TEST(Imap, YieldsInInputOrderForEverySchedule) {
  for (unsigned processes : {1u, 3u}) {
    Pool pool(processes);
    for (const Schedule& s : kSchedules) {
      std::vector<std::int64_t> out;
      for (std::int64_t r :
           pool.imap(square, forkpool::range(-5, 1500), {.chunksize = 4, .ahead = 6}, s))
        out.push_back(r);
      ASSERT_EQ(out.size(), 1505u) << s.name();
      for (std::int64_t k = 0; k < 1505; ++k) ASSERT_EQ(out[k], square(k - 5)) << s.name();
    }
    std::vector<std::int64_t> out;
    for (std::int64_t r : pool.imap(square, forkpool::range(3000))) out.push_back(r);
    EXPECT_EQ(out, pool.map(square, forkpool::range(3000)).to_vector());
  }
}

TEST(Imap, UnorderedYieldsEveryIndexOnceWithItsValue) {
  Pool pool(3);
  for (const Schedule& s : kSchedules) {
    std::vector<int> seen(1000);
    for (const Indexed<std::int64_t>& r :
         pool.imap_unordered(square, forkpool::range(100, 1100), {.chunksize = 3, .ahead = 5}, s)) {
      ASSERT_GE(r.index, 100);
      ASSERT_LT(r.index, 1100);
      EXPECT_EQ(r.value, square(r.index));
      ++seen[r.index - 100];
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 1000) << s.name();
  }
}

struct Point {
  double x, y;
};

TEST(Imap, EveryKindOfInputGivesTheResultsOfMap) {
  Pool pool(2);
  std::vector<Point> points;
  for (int i = 0; i < 777; ++i) points.push_back({i * 0.5, -i * 1.0});
  const auto norm = [](const Point& p) { return p.x * p.x + p.y * p.y; };
  const std::vector<double> expected = pool.map(norm, points).to_vector();
  const ImapOptions small{.chunksize = 5, .ahead = 4};

  std::vector<double> from_vector, from_shared, from_list, from_temporary;
  for (double r : pool.imap(norm, points, small)) from_vector.push_back(r);
  const auto shared = pool.shared_array<Point>(points);
  for (double r : pool.imap(norm, shared, small)) from_shared.push_back(r);
  const std::list<Point> list(points.begin(), points.end());  // read through its iterators
  for (double r : pool.imap(norm, list, small)) from_list.push_back(r);
  for (double r : pool.imap(norm, std::vector<Point>(points), small)) from_temporary.push_back(r);
  EXPECT_EQ(from_vector, expected);
  EXPECT_EQ(from_shared, expected);
  EXPECT_EQ(from_list, expected);
  EXPECT_EQ(from_temporary, expected);

  std::vector<int> seen(points.size());
  for (auto [index, value] : pool.imap_unordered(norm, points, small)) {
    EXPECT_EQ(value, expected[index]);
    ++seen[index];
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 777);

  {
    auto none = pool.imap(square, forkpool::range(0));
    EXPECT_TRUE(none.begin() == none.end());
    // One stream at a time: a second one on the same thread would wait for the first forever.
    EXPECT_THROW(static_cast<void>(pool.imap(square, forkpool::range(1))), std::logic_error);
  }
  auto none = pool.imap_unordered(norm, std::vector<Point>{});
  EXPECT_TRUE(none.begin() == none.end());
}

// The workers run at most ahead x chunksize items past what the reader has read, however long
// it stops: f counts the items started in a SharedArray.
TEST(Imap, ASlowReaderHoldsBackTheWorkers) {
  Pool pool(2);
  auto started = pool.shared_array<std::atomic<std::int64_t>>(1);
  const ImapOptions o{.chunksize = 4, .ahead = 5};  // 20 items
  for (bool ordered : {true, false}) {
    started[0] = 0;
    const auto f = [s = started.data()](std::int64_t i) {
      s->fetch_add(1);
      return i;
    };
    std::int64_t read = 0;
    const auto check = [&] {
      std::this_thread::sleep_for(30ms);
      const std::int64_t n = started[0].load();
      // The reader holds result read - 1: nothing past read - 1 + 20 may have started.
      EXPECT_LE(n, read - 1 + 20) << "after " << read << " results, ordered " << ordered;
      EXPECT_GT(n, read) << "the workers should have run ahead";
    };
    const auto consume = [&](auto&& stream) {
      for (auto it = stream.begin(); it != stream.end(); ++it) {
        ++read;
        if (read == 1 || read == 57 || read == 300) check();
      }
    };
    if (ordered)
      consume(pool.imap(f, forkpool::range(1000), o));
    else
      consume(pool.imap_unordered(f, forkpool::range(1000), o));
    EXPECT_EQ(read, 1000);
  }
}

// An input range that counts how far it has been read: each ++ makes the next item, as a
// generator or a stream would.
class CountingInput {
 public:
  class iterator {
   public:
    using value_type = std::int64_t;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(const CountingInput* in) : in_(in) {}
    std::int64_t operator*() const { return *in_->made; }
    iterator& operator++() {
      ++*in_->made;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return *in_->made >= in_->size; }

   private:
    const CountingInput* in_ = nullptr;
  };
  CountingInput(std::int64_t* made, std::int64_t size) : made(made), size(size) {}
  iterator begin() const { return iterator(this); }
  std::default_sentinel_t end() const { return {}; }

  std::int64_t* made = nullptr;  // the position of the current item
  std::int64_t size = 0;
};
static_assert(std::ranges::input_range<CountingInput>);

TEST(Imap, ReadsItsInputLazily) {
  Pool pool(2);
  const ImapOptions o{.chunksize = 3, .ahead = 4};  // 12 items
  std::int64_t made = 0;
  std::int64_t read = 0;
  auto stream = pool.imap([](std::int64_t i) { return i * 3; }, CountingInput(&made, 500), o);
  EXPECT_LE(made + 1, 12);  // items read: the one at `made` and those before it
  for (std::int64_t r : stream) {
    EXPECT_EQ(r, read * 3);
    ++read;
    EXPECT_LE(made + 1, read - 1 + 12) << "after " << read << " results";
  }
  EXPECT_EQ(read, 500);
  EXPECT_EQ(made, 500);
}

TEST(Imap, BreakingOutStopsTheMapAndLeavesThePoolUsable) {
  Pool pool(2);
  const auto slow = [](std::int64_t i) {
    forkpool_test::spin_for_us(200);
    return i;
  };
  for (int round = 0; round < 2; ++round) {
    const auto t0 = Clock::now();
    std::int64_t n = 0;
    if (round == 0) {
      for (std::int64_t r : pool.imap(slow, forkpool::range(1'000'000))) {
        EXPECT_EQ(r, n);
        if (++n == 10) break;
      }
    } else {
      for (auto r : pool.imap_unordered(slow, forkpool::range(1'000'000))) {
        static_cast<void>(r);
        if (++n == 10) break;
      }
    }
    EXPECT_LT(Clock::now() - t0, 2s);
    EXPECT_TRUE(map_works(pool));
    EXPECT_EQ(pool.pids().size(), 2u);
  }
}

TEST(Imap, ATaskErrorComesAfterEveryResultBeforeIt) {
  Pool pool(3);
  const auto f = [](std::int64_t i) {
    if (i == 510 || i == 700) throw std::runtime_error("bad item " + std::to_string(i));
    return i;
  };
  for (const Schedule& s : {Schedule::dynamic(1), Schedule::work_stealing()}) {
    std::int64_t next = 10;
    auto stream = pool.imap(f, forkpool::range(10, 2010), {.chunksize = 5, .ahead = 8}, s);
    const auto e = catch_as<forkpool::TaskError>([&] {
      for (std::int64_t r : stream) ASSERT_EQ(r, next++);
    });
    ASSERT_TRUE(e);
    EXPECT_EQ(e->index(), 510);
    EXPECT_EQ(next, 510) << s.name();
    EXPECT_TRUE(stream.begin() == stream.end());  // the range ended
  }
  std::vector<int> seen(2000);
  const auto e = catch_as<forkpool::TaskError>([&] {
    for (auto [i, r] :
         pool.imap_unordered(f, forkpool::range(10, 2010), {.chunksize = 5, .ahead = 8})) {
      EXPECT_EQ(r, i);
      ++seen[r - 10];
    }
  });
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->index() == 510 || e->index() == 700) << e->index();
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 2), 0);
  EXPECT_TRUE(map_works(pool));
}

// A fault that kills its worker the first time item `at` runs.
struct Trap {
  std::atomic<int> armed;
};

TEST(Imap, AWorkerKilledMidStreamLosesNoResultAndRepeatsNone) {
  Pool pool(3);
  auto trap = pool.shared_array<Trap>(1);
  for (bool ordered : {true, false}) {
    for (const Schedule& s : {Schedule::dynamic(2), Schedule::work_stealing()}) {
      trap[0].armed = 1;
      const auto before = pool.pids();
      const auto f = [t = trap.data()](std::int64_t i) {
        if (i == 333 && t->armed.fetch_sub(1) > 0) raise(SIGKILL);
        return i * 2;
      };
      std::vector<int> seen(1000);
      std::int64_t next = 0;
      const ImapOptions o{.chunksize = 2, .ahead = 30};
      if (ordered) {
        for (std::int64_t r : pool.imap(f, forkpool::range(1000), o, s)) {
          ASSERT_EQ(r, 2 * next++);
          ++seen[r / 2];
        }
      } else {
        for (auto [i, r] : pool.imap_unordered(f, forkpool::range(1000), o, s)) {
          ASSERT_EQ(r, 2 * i);
          ++seen[i];
        }
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 1000) << s.name();
      EXPECT_NE(pool.pids(), before) << "the dead worker was not replaced";
    }
  }
  EXPECT_TRUE(map_works(pool));
}

TEST(Imap, ThePoolServesOtherThreadsOnlyAfterTheStream) {
  Pool pool(2);
  std::atomic<bool> done{false};
  std::thread other;
  {
    auto stream = pool.imap(square, forkpool::range(100));
    const auto e = catch_as<std::logic_error>([&] { pool.map(square, forkpool::range(10)); });
    ASSERT_TRUE(e);
    EXPECT_CONTAINS(e->what(), "imap");
    EXPECT_THROW(static_cast<void>(pool.last_stats()), std::logic_error);
    other = std::thread([&] {
      EXPECT_TRUE(map_works(pool));
      done = true;
    });
    std::int64_t n = 0;
    for (std::int64_t r : stream) {
      EXPECT_EQ(r, n * n);
      ++n;
    }
    EXPECT_EQ(n, 100);
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(done) << "another thread's map ran while the stream was alive";
  }
  other.join();
  EXPECT_TRUE(done);
}

TEST(Imap, BadOptionsNameTheField) {
  Pool pool(2);
  auto e = catch_as<std::invalid_argument>(
      [&] { static_cast<void>(pool.imap(square, forkpool::range(10), {.chunksize = 0})); });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "ImapOptions::chunksize");
  e = catch_as<std::invalid_argument>([&] {
    static_cast<void>(
        pool.imap_unordered(square, forkpool::range(10), {.chunksize = 1 << 20, .ahead = 1 << 21}));
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "ImapOptions::ahead");
  EXPECT_THROW(static_cast<void>(pool.imap(square, forkpool::range(5, 4))), std::invalid_argument);
  EXPECT_TRUE(map_works(pool));
}

TEST(Imap, CancelStopsTheStream) {
  Pool pool(2);
  const auto slow = [](std::int64_t i) {
    forkpool_test::spin_for_us(100);
    return i;
  };
  std::int64_t n = 0;
  const auto e = catch_as<forkpool::Cancelled>([&] {
    for (std::int64_t r : pool.imap(slow, forkpool::range(1'000'000))) {
      static_cast<void>(r);
      if (++n == 50) pool.cancel();
    }
  });
  EXPECT_TRUE(e);
  EXPECT_LT(n, 100'000);
  EXPECT_TRUE(map_works(pool));
}

// Options::timeout bounds each window's computation; the reader's own time does not count.
TEST(Imap, TheReadersTimeIsNotTheMapsTimeout) {
  Pool pool(Options{.processes = 2, .timeout = 100ms});
  std::int64_t n = 0;
  for (std::int64_t r : pool.imap(square, forkpool::range(40), {.chunksize = 2, .ahead = 4})) {
    EXPECT_EQ(r, n * n);
    if (++n == 3) std::this_thread::sleep_for(250ms);
  }
  EXPECT_EQ(n, 40);
  const auto e = catch_as<forkpool::Timeout>([&] {
    for (std::int64_t r : pool.imap(
             [](std::int64_t i) {
               if (i == 5) forkpool_test::spin_for_us(2'000'000);
               return i;
             },
             forkpool::range(40)))
      static_cast<void>(r);
  });
  EXPECT_TRUE(e);
  EXPECT_TRUE(map_works(pool));
}

}  // namespace
