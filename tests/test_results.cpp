// Map results that are not trivially copyable: std::string, std::vector<T> and a user's
// ResultCodec, over every schedule, with workers that die, with results that do not fit the
// first round's arenas, and after the pool is gone.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using forkpool::Options;
using forkpool::Pool;
using forkpool::Schedule;
using forkpool_test::catch_as;

// Item i's string: empty for every 10th, else i's decimal digits padded with 'x' to |i| % 40 + 1.
std::string text_of(std::int64_t i) {
  if (i % 10 == 0) return {};
  std::string s = std::to_string(i);
  const auto size = static_cast<std::size_t>((i < 0 ? -i : i) % 40 + 1);
  if (s.size() < size) s.resize(size, 'x');
  return s;
}

std::string long_text(std::int64_t i, std::size_t bytes) {
  std::string s(bytes, static_cast<char>('a' + i % 26));
  std::memcpy(s.data(), &i, sizeof i);
  return s;
}

// Counts how many times f ran, in the segment, so that the workers' counts reach the parent.
struct RunCount {
  forkpool::SharedArray<std::atomic<std::int64_t>> runs;
  explicit RunCount(Pool& pool, std::size_t n = 1)
      : runs(pool.shared_array<std::atomic<std::int64_t>>(n)) {}
  std::atomic<std::int64_t>* get() { return runs.data(); }
};

class ResultsEverySchedule : public ::testing::TestWithParam<Schedule> {};

TEST_P(ResultsEverySchedule, StringsComeBackInIndexOrder) {
  Pool pool(2);
  const std::vector<std::string> out = pool.map(text_of, forkpool::range(-500, 3000), GetParam());
  ASSERT_EQ(out.size(), 3500u);
  for (std::int64_t i = -500; i < 3000; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i + 500)], text_of(i)) << i;
}

TEST_P(ResultsEverySchedule, StringsFromAContiguousInput) {
  Pool pool(2);
  std::vector<std::int32_t> in(2000);
  for (std::size_t k = 0; k < in.size(); ++k) in[k] = static_cast<std::int32_t>(k * 7);
  const auto out = pool.map([](const std::int32_t& x) { return text_of(x); }, in, GetParam());
  static_assert(std::is_same_v<decltype(out), const std::vector<std::string>>);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t k = 0; k < in.size(); ++k) ASSERT_EQ(out[k], text_of(in[k])) << k;
}

// A worker dies once in the middle of the map: the items it lost run again and rewrite their
// results, so every string is still exact.
TEST_P(ResultsEverySchedule, ExactAfterAWorkerIsKilledMidMap) {
  Pool pool(2);
  RunCount trap(pool);
  constexpr std::int64_t n = 3000, at = 1234;  // worker 0's under static_blocks, after commits
  const auto out = pool.map(
      [t = trap.get()](std::int64_t i) {
        forkpool_test::spin_for_us(2);  // pieces get committed before the death
        if (i == at && t->fetch_add(1) == 0) raise(SIGKILL);
        return long_text(i, static_cast<std::size_t>(i % 300));
      },
      forkpool::range(n), GetParam());
  EXPECT_EQ(trap.get()->load(), 2);  // the fatal item ran again, once
  ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], long_text(i, static_cast<std::size_t>(i % 300)))
        << i;
  EXPECT_EQ(pool.pids().size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(All, ResultsEverySchedule,
                         ::testing::ValuesIn(forkpool_test::kEverySchedule), [](const auto& info) {
                           return forkpool_test::schedule_test_name(info.param);
                         });

TEST(Results, EmptyShortLongAndMany) {
  Pool pool(2);
  EXPECT_TRUE(pool.map([](std::int64_t) { return std::string(); }, forkpool::range(0)).empty());
  const auto empty = pool.map([](std::int64_t) { return std::string(); }, forkpool::range(100));
  EXPECT_EQ(empty, std::vector<std::string>(100));

  constexpr std::size_t big =
      (std::size_t{3} << 20) / 2;  // 1.5 MiB each, larger than a prefault step
  const auto longs =
      pool.map([](std::int64_t i) { return long_text(i, big + static_cast<std::size_t>(i)); },
               forkpool::range(6), Schedule::dynamic(1));
  for (std::int64_t i = 0; i < 6; ++i)
    EXPECT_EQ(longs[static_cast<std::size_t>(i)], long_text(i, big + static_cast<std::size_t>(i)));

  const auto many =
      pool.map([](std::int64_t i) { return std::to_string(i); }, forkpool::range(200000));
  ASSERT_EQ(many.size(), 200000u);
  for (std::int64_t i = 0; i < 200000; ++i)
    ASSERT_EQ(many[static_cast<std::size_t>(i)], std::to_string(i));
}

TEST(Results, VectorsOfTriviallyCopyableElements) {
  Pool pool(2);
  const auto ints = pool.map(
      [](std::int64_t i) {
        std::vector<std::int32_t> v(static_cast<std::size_t>(i % 7));
        for (std::size_t k = 0; k < v.size(); ++k)
          v[k] = static_cast<std::int32_t>(i * 10 + static_cast<std::int64_t>(k));
        return v;
      },
      forkpool::range(1000));
  for (std::int64_t i = 0; i < 1000; ++i) {
    const auto& v = ints[static_cast<std::size_t>(i)];
    ASSERT_EQ(v.size(), static_cast<std::size_t>(i % 7));
    for (std::size_t k = 0; k < v.size(); ++k)
      ASSERT_EQ(v[k], i * 10 + static_cast<std::int64_t>(k));
  }
  struct Point {
    double x, y;
  };
  const std::vector<double> in{1.5, -2.0, 3.25};
  const auto points = pool.map(
      [](const double& d) {
        return std::vector<Point>{{d, -d}, {2 * d, 0}};
      },
      in);
  ASSERT_EQ(points.size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    ASSERT_EQ(points[k].size(), 2u);
    EXPECT_EQ(points[k][0].x, in[k]);
    EXPECT_EQ(points[k][0].y, -in[k]);
    EXPECT_EQ(points[k][1].x, 2 * in[k]);
  }
  const auto wide = pool.map(
      [](std::int64_t i) { return std::u32string(static_cast<std::size_t>(i), U'\u00e9'); },
      forkpool::range(50));
  for (std::int64_t i = 0; i < 50; ++i)
    EXPECT_EQ(wide[static_cast<std::size_t>(i)],
              std::u32string(static_cast<std::size_t>(i), U'\u00e9'));
}

}  // namespace

// A user's type with its own codec: a name and a score.
struct Scored {
  std::string name;
  std::int64_t score = 0;
  bool operator==(const Scored&) const = default;
};

template <>
struct forkpool::ResultCodec<Scored> {
  static std::size_t size(const Scored& s) { return sizeof s.score + s.name.size(); }
  static void encode(const Scored& s, std::byte* out) {
    std::memcpy(out, &s.score, sizeof s.score);
    std::memcpy(out + sizeof s.score, s.name.data(), s.name.size());
  }
  static Scored decode(std::span<const std::byte> bytes) {
    Scored s;
    std::memcpy(&s.score, bytes.data(), sizeof s.score);
    s.name.assign(reinterpret_cast<const char*>(bytes.data()) + sizeof s.score,
                  bytes.size() - sizeof s.score);
    return s;
  }
};

namespace {

TEST(Results, AUserCodec) {
  static_assert(forkpool::EncodedResult<Scored>);
  static_assert(forkpool::EncodedResult<std::string>);
  static_assert(forkpool::EncodedResult<std::vector<float>>);
  static_assert(!forkpool::EncodedResult<std::vector<bool>>);
  static_assert(!forkpool::EncodedResult<std::map<int, int>>);
  static_assert(!forkpool::EncodedResult<std::vector<std::string>>);
  Pool pool(2);
  const auto out = pool.map(
      [](std::int64_t i) {
        return Scored{text_of(i), i * i};
      },
      forkpool::range(500));
  for (std::int64_t i = 0; i < 500; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], (Scored{text_of(i), i * i}));
}

TEST(Results, UsableAfterThePoolIsGone) {
  std::vector<std::string> out;
  {
    Pool pool(2);
    out = pool.map(text_of, forkpool::range(1000));
  }
  for (std::int64_t i = 0; i < 1000; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], text_of(i));
}

TEST(Results, AnExceptionNamesItsIndexAndThePoolStillWorks) {
  Pool pool(2);
  const auto e = catch_as<forkpool::TaskError>([&] {
    pool.map(
        [](std::int64_t i) {
          if (i == 777) throw std::out_of_range("no string for 777");
          return text_of(i);
        },
        forkpool::range(100, 2000));
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->index(), 777);
  EXPECT_EQ(pool.map(text_of, forkpool::range(10)).back(), text_of(9));
}

// Results that overflow the first round's arenas (half of a small segment) are not truncated:
// they run again into places reserved at their size, in as many rounds as the segment needs.
TEST(Results, ResultsThatDoNotFitTheArenasRunAgain) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{8} << 20});
  RunCount runs(pool);
  const std::int64_t n = 12;
  const auto size_of = [](std::int64_t i) {
    return (std::size_t{1} << 20) + 4096 * static_cast<std::size_t>(i);
  };
  const auto out = pool.map(
      [r = runs.get(), size_of](std::int64_t i) {
        r->fetch_add(1);
        return long_text(i, size_of(i));
      },
      forkpool::range(n), Schedule::dynamic(1));
  EXPECT_GT(runs.get()->load(), n);  // some ran twice
  ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], long_text(i, size_of(i))) << i;
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

// A worker dies in a later round, while it runs an item again into its reserved place: the
// recovery of that round runs it once more, and the result is still exact.
TEST(Results, ExactAfterAWorkerDiesInALaterRound) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{8} << 20});
  constexpr std::int64_t n = 8, victim = 5;
  RunCount runs(pool, n);
  const auto size_of = [](std::int64_t i) {
    return (std::size_t{3} << 20) / 2 + 4096 * static_cast<std::size_t>(i);
  };
  const auto out = pool.map(
      [r = runs.get(), size_of](std::int64_t i) {
        if (r[i].fetch_add(1) == 1 && i == victim) raise(SIGKILL);  // its second run
        return long_text(i, size_of(i));
      },
      forkpool::range(n));
  EXPECT_EQ(runs.get()[victim].load(), 3);
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], long_text(i, size_of(i))) << i;
  EXPECT_EQ(pool.pids().size(), 2u);
}

TEST(Results, AResultLargerThanTheSegmentIsSegmentFull) {
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{4} << 20});
  const auto e = catch_as<forkpool::SegmentFull>([&] {
    pool.map([](std::int64_t i) { return std::string(static_cast<std::size_t>(i) << 20, 'z'); },
             forkpool::range(8));
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "Options::segment_bytes");
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

// A result that did not fit and is larger when run again cannot be placed: a clear error.
TEST(Results, AResultThatGrowsWhenRunAgainIsAnError) {
  Pool pool(Options{.processes = 1, .segment_bytes = std::size_t{4} << 20});
  RunCount runs(pool);
  const auto e = catch_as<forkpool::Error>([&] {
    pool.map(
        [r = runs.get()](std::int64_t) {
          return std::string(
              (std::size_t{3} << 20) + 1000 * static_cast<std::size_t>(r->fetch_add(1)), 'g');
        },
        forkpool::range(1));
  });
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e->what(), "for index 0");
  EXPECT_CONTAINS(e->what(), "same size");
  EXPECT_EQ(runs.get()->load(), 2);
  EXPECT_TRUE(forkpool_test::map_works(pool));
}

}  // namespace
