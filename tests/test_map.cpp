// map, map_reduce and for_each: every schedule x pool size x input size gives each index exactly
// once, results in order, from the workers; inputs of every kind; several pools.
//
// The callables run in other processes: they never call GoogleTest assertions, they record what
// they see into shared arrays, and the parent checks those afterwards.
#include <forkpool/forkpool.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using forkpool::Options;
using forkpool::Pool;
using forkpool::Schedule;

// Every kind of schedule (test_util.hpp).
const auto& kAllSchedules = forkpool_test::kEverySchedule;

using forkpool_test::schedule_test_name;

std::int64_t transform(std::int64_t i) { return i * 3 - 7; }

// Counts of claims per item, and the worker index that ran each item.
struct Tally {
  forkpool::SharedArray<std::uint32_t> counts;
  forkpool::SharedArray<std::int32_t> who;
  std::int64_t stride;  // `who` is recorded for every stride-th item

  // current_process() costs a system call (getpid), about 1 us on a small VM: for large maps
  // record the worker of a sample of the items only.
  Tally(Pool& pool, std::size_t n, std::int64_t stride_ = 0)
      : counts(pool.shared_array<std::uint32_t>(n)),
        who(pool.shared_array<std::int32_t>(n)),
        stride(stride_ != 0 ? stride_
               : n > 100000 ? 101
                            : 1) {
    for (std::size_t k = 0; k < n; k += static_cast<std::size_t>(stride))
      who[k] = -2;  // -2: never run; -1: run outside any worker
  }

  // Empty if every item was run exactly once, by a worker of a pool of `workers`.
  std::string faults(unsigned workers) const {
    std::string out;
    std::size_t bad = 0;
    for (std::size_t k = 0; k < counts.size(); ++k) {
      const bool sampled = k % static_cast<std::size_t>(stride) == 0;
      if (counts[k] == 1 &&
          (!sampled || (who[k] >= 0 && who[k] < static_cast<std::int32_t>(workers))))
        continue;
      if (bad++ < 5)
        out += " item " + std::to_string(k) + ": run " + std::to_string(counts[k]) +
               "x, by worker " + std::to_string(who[k]) + ";";
    }
    if (bad != 0) out = std::to_string(bad) + " faulty items:" + out;
    return out;
  }

  std::uint32_t* c() { return counts.data(); }
  std::int32_t* w() { return who.data(); }
};

// Records one run of item k (in a worker).
inline void record(std::uint32_t* counts, std::int32_t* who, std::int64_t stride, std::int64_t k) {
  std::atomic_ref<std::uint32_t>(counts[k]).fetch_add(1, std::memory_order_relaxed);
  if (k % stride == 0) who[k] = forkpool::current_process().index;
}

// ---------------------------------------------------------------------------------------------
// Every schedule x P x size.

class MapEverySchedule : public ::testing::TestWithParam<std::tuple<Schedule, unsigned>> {};

// The sizes each map is checked at on a pool of p workers: the edges around p, then one large
// map. The large map has a million items on a pool of 3 (many chunks, pieces and steals) and
// 10^5 on the other pool sizes: every schedule x pool size with a million items would take
// most of the binary's time budget.
std::vector<std::int64_t> map_sizes(std::int64_t p) {
  return {0, 1, 2, p - 1, p, p + 1, p == 3 ? 1000003 : 100003};
}

TEST_P(MapEverySchedule, EachIndexExactlyOnceInOrder) {
  const auto [schedule, P] = GetParam();
  // The pool's default schedule is the one under test: map() without a schedule uses it.
  Pool pool(Options{.processes = P, .schedule = schedule});
  ASSERT_EQ(pool.size(), P);
  ASSERT_EQ(pool.options().schedule, schedule);

  const std::int64_t p = P;
  const auto sizes = map_sizes(p);
  for (std::int64_t n : sizes)
    for (std::int64_t first : {std::int64_t{-5}, std::int64_t{0}, -(std::int64_t{1} << 40)}) {
      if (n > p + 1 && first != -5) continue;  // the big size once
      SCOPED_TRACE("n " + std::to_string(n) + ", first " + std::to_string(first));
      Tally tally(pool, static_cast<std::size_t>(n));
      const auto out = pool.map(
          [c = tally.c(), w = tally.w(), st = tally.stride, first](std::int64_t i) {
            record(c, w, st, i - first);
            return transform(i);
          },
          forkpool::range(first, first + n));
      ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
      ASSERT_EQ(tally.faults(P), "");
      for (std::int64_t k = 0; k < n; ++k)
        ASSERT_EQ(out[static_cast<std::size_t>(k)], transform(first + k)) << "item " << k;
    }
}

TEST_P(MapEverySchedule, ForEachRunsEachIndexExactlyOnce) {
  const auto [schedule, P] = GetParam();
  Pool pool(P);  // default schedule; the one under test is passed explicitly
  const std::int64_t p = P;
  const auto sizes = map_sizes(p);
  for (std::int64_t n : sizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    const std::int64_t first = -5 - n % 2;  // -5 or -6
    Tally tally(pool, static_cast<std::size_t>(n));
    pool.for_each(
        forkpool::range(first, first + n),
        [c = tally.c(), w = tally.w(), st = tally.stride, first](std::int64_t i) {
          record(c, w, st, i - first);
        },
        schedule);
    ASSERT_EQ(tally.faults(P), "");
  }
}

TEST_P(MapEverySchedule, MapReduceMatchesASequentialFold) {
  const auto [schedule, P] = GetParam();
  Pool pool(P);
  const std::int64_t p = P;
  const auto sizes = map_sizes(p);
  for (std::int64_t n : sizes) {
    SCOPED_TRACE("n " + std::to_string(n));
    const std::int64_t first = -5;
    std::int64_t expected = 17;
    for (std::int64_t i = first; i < first + n; ++i) expected += transform(i);
    const std::int64_t got = pool.map_reduce([](std::int64_t i) { return transform(i); },
                                             forkpool::range(first, first + n), std::int64_t{17},
                                             std::plus<>{}, schedule);
    EXPECT_EQ(got, expected);
  }
}

TEST_P(MapEverySchedule, ExplicitScheduleOverridesThePoolDefault) {
  const auto [schedule, P] = GetParam();
  Pool pool(Options{.processes = P, .schedule = Schedule::dynamic(1)});
  const std::int64_t n = 10007;
  Tally tally(pool, n);
  const auto out = pool.map(
      [c = tally.c(), w = tally.w(), st = tally.stride](std::int64_t i) {
        record(c, w, st, i);
        return static_cast<std::uint8_t>(i * 7);
      },
      forkpool::range(n), schedule);
  ASSERT_EQ(tally.faults(P), "");
  for (std::int64_t k = 0; k < n; ++k)
    ASSERT_EQ(out[static_cast<std::size_t>(k)], static_cast<std::uint8_t>(k * 7));
  if (schedule == Schedule::static_blocks()) {
    // Static blocks are fully determined: worker w runs block w of P near-equal blocks.
    const std::int64_t q = n / P, r = n % P;
    for (std::int64_t k = 0, w = 0, end = q + (0 < r); k < n; ++k) {
      while (k >= end) {
        ++w;
        end += q + (w < r);
      }
      ASSERT_EQ(tally.who[static_cast<std::size_t>(k)], w) << "item " << k;
    }
  }
  if (schedule.kind() == Schedule::Kind::static_chunked) {
    // So are static chunks: chunk k / c goes to worker (k / c) mod P.
    const auto c = static_cast<std::int64_t>(schedule.parameter());
    for (std::int64_t k = 0; k < n; ++k)
      ASSERT_EQ(tally.who[static_cast<std::size_t>(k)], (k / c) % P) << "item " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(All, MapEverySchedule,
                         ::testing::Combine(::testing::ValuesIn(kAllSchedules),
                                            ::testing::Values(1u, 2u, 3u, 4u, 7u)),
                         [](const ::testing::TestParamInfo<MapEverySchedule::ParamType>& info) {
                           return schedule_test_name(std::get<0>(info.param)) + "_P" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Every worker takes part when there is enough work.

class EveryWorkerTakesPart : public ::testing::TestWithParam<std::tuple<Schedule, unsigned>> {};

TEST_P(EveryWorkerTakesPart, WithEnoughWork) {
  const auto [schedule, P] = GetParam();
  Pool pool(P);
  const std::int64_t n = 4000;  // 4000 x 20 us: 80 ms of CPU
  Tally tally(pool, n);
  pool.for_each(
      forkpool::range(n),
      [c = tally.c(), w = tally.w(), st = tally.stride](std::int64_t i) {
        record(c, w, st, i);
        forkpool_test::spin_for_us(20);
      },
      schedule);
  ASSERT_EQ(tally.faults(P), "");
  std::vector<std::int64_t> per_worker(P, 0);
  for (std::int32_t w : tally.who) ++per_worker[static_cast<std::size_t>(w)];
  for (unsigned w = 0; w < P; ++w) EXPECT_GT(per_worker[w], 0) << "worker " << w << " ran nothing";
}

INSTANTIATE_TEST_SUITE_P(Balancing, EveryWorkerTakesPart,
                         ::testing::Combine(::testing::ValuesIn(kAllSchedules),
                                            ::testing::Values(2u, 3u, 4u)),
                         [](const ::testing::TestParamInfo<EveryWorkerTakesPart::ParamType>& info) {
                           return schedule_test_name(std::get<0>(info.param)) + "_P" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---------------------------------------------------------------------------------------------
// Inputs: vectors, spans, arrays and shared arrays of structs.

struct Particle {
  double x, y, z;
  std::int32_t id;
  char tag;
};
static_assert(std::is_trivially_copyable_v<Particle>);

struct Summary {
  double norm2;
  std::int32_t id;
  char tag;
  bool operator==(const Summary&) const = default;
};

Summary summarise(const Particle& p) {
  return {p.x * p.x + p.y * p.y + p.z * p.z, p.id * 2, static_cast<char>(p.tag + 1)};
}

std::vector<Particle> make_particles(std::size_t n) {
  std::vector<Particle> v(n);
  for (std::size_t k = 0; k < n; ++k)
    v[k] = {0.5 * static_cast<double>(k), -1.0 * static_cast<double>(k % 17), 3.25,
            static_cast<std::int32_t>(k), static_cast<char>('a' + k % 26)};
  return v;
}

TEST(MapInputs, VectorOfStructs) {
  Pool pool(3);
  const auto particles = make_particles(10007);  // made after the fork: copied into the segment
  for (const Schedule& s : kAllSchedules) {
    SCOPED_TRACE(s.name());
    const auto out = pool.map([](const Particle& p) { return summarise(p); }, particles, s);
    ASSERT_EQ(out.size(), particles.size());
    for (std::size_t k = 0; k < particles.size(); ++k)
      ASSERT_EQ(out[k], summarise(particles[k])) << "item " << k;
  }
}

TEST(MapInputs, SpanOfStructs) {
  Pool pool(2);
  const auto particles = make_particles(5000);
  const std::span<const Particle> part = std::span(particles).subspan(123, 4000);
  const auto out = pool.map([](const Particle& p) { return summarise(p); }, part);
  ASSERT_EQ(out.size(), part.size());
  for (std::size_t k = 0; k < part.size(); ++k) ASSERT_EQ(out[k], summarise(part[k]));
  // An empty span gives an empty result.
  const auto none = pool.map([](const Particle& p) { return p.id; }, part.subspan(0, 0));
  EXPECT_TRUE(none.empty());
}

TEST(MapInputs, StdArrayAndMutableVector) {
  Pool pool(2);
  const std::array<std::int32_t, 5> a{1, 2, 3, 4, 5};
  const auto squares = pool.map([](std::int32_t x) { return x * x; }, a);
  EXPECT_EQ(squares.to_vector(), (std::vector<std::int32_t>{1, 4, 9, 16, 25}));
  std::vector<double> v{1.5, -2.0, 4.0};
  const std::vector<double> halves = pool.map([](double x) { return x / 2; }, v);
  EXPECT_EQ(halves, (std::vector<double>{0.75, -1.0, 2.0}));
}

TEST(MapInputs, SharedArrayInputIsNotCopied) {
  Pool pool(2);
  auto in = pool.shared_array<Particle>(3001);
  const auto src = make_particles(in.size());
  std::copy(src.begin(), src.end(), in.begin());
  // f returns the address it was given: for an input already in the segment, the item itself.
  const auto addresses =
      pool.map([](const Particle& p) { return reinterpret_cast<std::uintptr_t>(&p); }, in);
  ASSERT_EQ(addresses.size(), in.size());
  for (std::size_t k = 0; k < in.size(); ++k)
    ASSERT_EQ(addresses[k], reinterpret_cast<std::uintptr_t>(&in[k])) << "item " << k;
  // The same through its span.
  const auto via_span =
      pool.map([](const Particle& p) { return reinterpret_cast<std::uintptr_t>(&p); }, in.span());
  for (std::size_t k = 0; k < in.size(); ++k)
    ASSERT_EQ(via_span[k], reinterpret_cast<std::uintptr_t>(&in[k]));
  // And the values are right.
  const auto out = pool.map([](const Particle& p) { return summarise(p); }, in);
  for (std::size_t k = 0; k < in.size(); ++k) ASSERT_EQ(out[k], summarise(src[k]));
}

TEST(MapInputs, VectorInputIsCopiedIntoTheSegment) {
  Pool pool(2);
  const auto src = make_particles(100);
  const auto addresses =
      pool.map([](const Particle& p) { return reinterpret_cast<std::uintptr_t>(&p); }, src);
  // The workers read a copy (the vector's heap memory is not shared), laid out contiguously.
  for (std::size_t k = 0; k < src.size(); ++k) {
    EXPECT_NE(addresses[k], reinterpret_cast<std::uintptr_t>(&src[k]));
    if (k > 0) {
      EXPECT_EQ(addresses[k] - addresses[k - 1], sizeof(Particle));
    }
  }
}

TEST(MapInputs, MapResultCanBeTheNextInput) {
  Pool pool(3);
  const auto a = pool.map([](std::int64_t i) { return i + 1; }, forkpool::range(1000));
  const auto b = pool.map([](std::int64_t x) { return x * 2; }, a);
  for (std::size_t k = 0; k < b.size(); ++k)
    ASSERT_EQ(b[k], 2 * (static_cast<std::int64_t>(k) + 1));
}

// ---------------------------------------------------------------------------------------------
// map_reduce

struct MinMax {
  double lo, hi;
};

MinMax merge(MinMax a, MinMax b) { return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)}; }

double wave(std::int64_t i) { return std::sin(static_cast<double>(i) * 0.001) * 1000.0 + i % 13; }

TEST(MapReduce, Int64SumAgainstSequentialFold) {
  Pool pool(4);
  for (const Schedule& s : kAllSchedules) {
    SCOPED_TRACE(s.name());
    const auto f = [](std::int64_t x) { return x * x; };
    std::int64_t expected = 0;
    for (std::int64_t x = 1; x <= 1000000; ++x) expected += f(x);
    EXPECT_EQ(expected, 333333833333500000);
    EXPECT_EQ(pool.map_reduce(f, forkpool::range(1, 1000001), std::int64_t{0}, std::plus<>{}, s),
              expected);
    EXPECT_EQ(pool.map_reduce(f, forkpool::range(1, 5001), std::int64_t{0}, std::plus<>{}, s),
              41679167500);
  }
}

TEST(MapReduce, StructMinMaxAgainstSequentialFold) {
  Pool pool(3);
  const double inf = std::numeric_limits<double>::infinity();
  MinMax expected{inf, -inf};
  for (std::int64_t i = -1000; i < 200000; ++i) expected = merge(expected, {wave(i), wave(i)});
  for (const Schedule& s : kAllSchedules) {
    SCOPED_TRACE(s.name());
    const MinMax got = pool.map_reduce(
        [](std::int64_t i) {
          const double v = wave(i);
          return MinMax{v, v};
        },
        forkpool::range(-1000, 200000), MinMax{inf, -inf},
        [](MinMax a, MinMax b) { return merge(a, b); }, s);
    EXPECT_EQ(got.lo, expected.lo);
    EXPECT_EQ(got.hi, expected.hi);
    const double lo = pool.map_reduce(
        wave, forkpool::range(-1000, 200000), inf,
        [](double a, double b) { return std::min(a, b); }, s);
    EXPECT_EQ(lo, expected.lo);
  }
}

TEST(MapReduce, OverASpanAndAVector) {
  Pool pool(3);
  const auto particles = make_particles(20011);
  std::int64_t expected = 5;
  for (const Particle& p : particles) expected += p.id + p.tag;
  const auto f = [](const Particle& p) { return std::int64_t{p.id} + p.tag; };
  EXPECT_EQ(pool.map_reduce(f, particles, std::int64_t{5}, std::plus<>{}), expected);
  const std::span<const Particle> sp(particles);
  EXPECT_EQ(pool.map_reduce(f, sp, std::int64_t{5}, std::plus<>{}, Schedule::dynamic(3)), expected);
  std::int64_t tail = 0;
  for (const Particle& p : sp.subspan(100)) tail += p.id + p.tag;
  EXPECT_EQ(pool.map_reduce(f, sp.subspan(100), std::int64_t{0}, std::plus<>{}), tail);
  // Empty input: init comes back.
  EXPECT_EQ(pool.map_reduce(f, sp.subspan(0, 0), std::int64_t{42}, std::plus<>{}), 42);
}

TEST(MapReduce, EmptyRangeGivesInit) {
  Pool pool(2);
  EXPECT_EQ(pool.map_reduce([](std::int64_t x) { return x; }, forkpool::range(7, 7),
                            std::int64_t{-3}, std::plus<>{}),
            -3);
}

// ---------------------------------------------------------------------------------------------
// Callables

std::int64_t square(std::int64_t x) { return x * x; }

TEST(MapCallables, FunctionPointer) {
  Pool pool(2);
  const auto out = pool.map(square, forkpool::range(1, 5001));
  EXPECT_EQ(std::accumulate(out.begin(), out.end(), std::int64_t{0}), 41679167500);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[4999], 25000000);
}

TEST(MapCallables, LargeClosureOutsideTheInlineBuffer) {
  // A capture larger than the control block's inline closure buffer (512 bytes).
  Pool pool(3);
  std::array<std::int64_t, 200> table{};
  for (std::size_t k = 0; k < table.size(); ++k) table[k] = static_cast<std::int64_t>(k * k + 1);
  const auto out =
      pool.map([table](std::int64_t i) { return table[static_cast<std::size_t>(i) % 200]; },
               forkpool::range(100000));
  for (std::size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], table[k % 200]);
}

struct alignas(128) OverAligned {
  std::int64_t v[4];
};

TEST(MapCallables, OverAlignedClosure) {
  Pool pool(2);
  const OverAligned o{{10, 20, 30, 40}};
  const auto f = [o](std::int64_t i) { return o.v[i % 4] + i; };
  static_assert(alignof(decltype(f)) == 128);
  const auto out = pool.map(f, forkpool::range(1000));
  for (std::int64_t k = 0; k < 1000; ++k)
    ASSERT_EQ(out[static_cast<std::size_t>(k)], o.v[k % 4] + k);
}

TEST(MapCallables, SmallResultsWrittenByManyWorkersSideBySide) {
  // One-byte results written by different processes into neighbouring bytes.
  Pool pool(4);
  const auto out = pool.map([](std::int64_t i) { return static_cast<std::uint8_t>(i % 251); },
                            forkpool::range(1000003), Schedule::dynamic(1));
  for (std::size_t k = 0; k < out.size(); ++k) ASSERT_EQ(out[k], k % 251) << "item " << k;
  const auto flags = pool.map([](std::int64_t i) { return i % 3 == 0; }, forkpool::range(100001),
                              Schedule::dynamic(3));
  for (std::size_t k = 0; k < flags.size(); ++k) ASSERT_EQ(flags[k], k % 3 == 0);
}

// ---------------------------------------------------------------------------------------------
// A big map with default options.

TEST(MapBig, HundredMillionSquares) {
  Pool pool;  // cpu_count() workers, default segment and schedule
  EXPECT_EQ(pool.size(), forkpool::cpu_count());
  const std::int64_t n = 100000000;
  const auto out = pool.map([](std::int64_t x) { return x * x; }, forkpool::range(n));
  ASSERT_EQ(out.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[1], 1);
  EXPECT_EQ(out[12345678], std::int64_t{12345678} * 12345678);
  EXPECT_EQ(out[static_cast<std::size_t>(n - 1)], (n - 1) * (n - 1));
  std::uint64_t sum = 0;
  for (std::int64_t v : out) sum += static_cast<std::uint64_t>(v);
  EXPECT_EQ(sum, 662921401752298880ull);
}

// ---------------------------------------------------------------------------------------------
// Pools: several, one after another, options, identity.

TEST(Pools, TwoPoolsUsedAlternately) {
  Pool a(2), b(3);
  const auto pa = a.pids(), pb = b.pids();
  std::set<pid_t> all(pa.begin(), pa.end());
  all.insert(pb.begin(), pb.end());
  EXPECT_EQ(all.size(), 5u);
  auto wa = a.shared_array<pid_t>(1000), wb = b.shared_array<pid_t>(1000);
  for (int round = 0; round < 10; ++round) {
    SCOPED_TRACE(round);
    const auto ra = a.map(
        [w = wa.data(), round](std::int64_t i) {
          w[i] = forkpool::current_process().pid;
          return i + round;
        },
        forkpool::range(1000));
    const auto rb = b.map(
        [w = wb.data(), round](std::int64_t i) {
          w[i] = forkpool::current_process().pid;
          return i * round;
        },
        forkpool::range(1000));
    for (std::int64_t k = 0; k < 1000; ++k) {
      ASSERT_EQ(ra[static_cast<std::size_t>(k)], k + round);
      ASSERT_EQ(rb[static_cast<std::size_t>(k)], k * round);
      ASSERT_NE(std::find(pa.begin(), pa.end(), wa[static_cast<std::size_t>(k)]), pa.end());
      ASSERT_NE(std::find(pb.begin(), pb.end(), wb[static_cast<std::size_t>(k)]), pb.end());
    }
  }
}

TEST(Pools, OneAfterAnother) {
  for (int round = 0; round < 5; ++round) {
    Pool pool(2 + round % 3);
    const std::int64_t total =
        pool.map_reduce([round](std::int64_t x) { return x * round; }, forkpool::range(1, 5001),
                        std::int64_t{0}, std::plus<>{});
    EXPECT_EQ(total, 12502500 * round);
    const auto squares = pool.map(square, forkpool::range(1, 11));
    EXPECT_EQ(squares.to_vector(),
              (std::vector<std::int64_t>{1, 4, 9, 16, 25, 36, 49, 64, 81, 100}));
  }
}

TEST(Pools, OptionsScheduleIsTheDefault) {
  Pool pool(Options{.processes = 3, .schedule = Schedule::dynamic(4)});
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool.options().processes, 3u);
  EXPECT_EQ(pool.options().schedule, Schedule::dynamic(4));
  const std::int64_t n = 2000;
  Tally tally(pool, n);
  pool.for_each(forkpool::range(n),
                [c = tally.c(), w = tally.w(), st = tally.stride](std::int64_t i) {
                  record(c, w, st, i);
                  forkpool_test::spin_for_us(5);
                });
  ASSERT_EQ(tally.faults(3), "");
  // dynamic(4) hands out aligned chunks of 4: the worker can only change at a multiple of 4.
  for (std::size_t k = 1; k < tally.who.size(); ++k)
    if (k % 4 != 0) {
      ASSERT_EQ(tally.who[k], tally.who[k - 1]) << "item " << k;
    }
}

TEST(Pools, OptionsStaticBlocksIsTheDefault) {
  Pool pool(Options{.processes = 3, .schedule = Schedule::static_blocks()});
  const std::int64_t n = 1000;  // blocks 334, 333, 333
  Tally tally(pool, n);
  pool.for_each(forkpool::range(n), [c = tally.c(), w = tally.w(),
                                     st = tally.stride](std::int64_t i) { record(c, w, st, i); });
  ASSERT_EQ(tally.faults(3), "");
  for (std::int64_t k = 0; k < n; ++k)
    ASSERT_EQ(tally.who[static_cast<std::size_t>(k)], k < 334 ? 0 : k < 667 ? 1 : 2) << k;
}

TEST(Pools, CallsFromSeveralThreadsAreSerialised) {
  Pool pool(3);
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&pool, &wrong, t] {
      for (int round = 0; round < 25; ++round) {
        const auto out =
            pool.map([t](std::int64_t i) { return i * 10 + t; }, forkpool::range(5000 + t));
        for (std::size_t k = 0; k < out.size(); ++k)
          if (out[k] != static_cast<std::int64_t>(k) * 10 + t) {
            wrong.fetch_add(1);
            break;
          }
        const auto sum = pool.map_reduce([](std::int64_t i) { return i; }, forkpool::range(1000),
                                         std::int64_t{0}, std::plus<>{});
        if (sum != 499500) wrong.fetch_add(1);
      }
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Pools, SharedArraysMadeAndFreedOnSeveralThreads) {
  // Shared arrays (and map results) are allocated and freed outside of any map, by whichever
  // thread makes or drops them: the segment's allocator must stay consistent.
  Pool pool(1);
  std::atomic<int> errors{0}, overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&pool, &errors, &overlaps, t] {
      for (int round = 0; round < 20000; ++round) {
        try {
          const std::size_t n = 16 + static_cast<std::size_t>(round * 7 + t * 13) % 500;
          auto a = pool.shared_array<std::int32_t>(n);
          const std::int32_t mark = t * 1000000 + round;
          std::fill(a.begin(), a.end(), mark);
          auto b = pool.shared_array<char>(1 + static_cast<std::size_t>(round % 64));
          std::fill(b.begin(), b.end(), 'x');
          if (std::any_of(a.begin(), a.end(), [mark](std::int32_t v) { return v != mark; }))
            overlaps.fetch_add(1);
        } catch (...) {
          errors.fetch_add(1);
        }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_TRUE(pool.map([](std::int64_t i) { return i; }, forkpool::range(10)).size() == 10);
}

TEST(Pools, DefaultOptions) {
  Pool pool;
  EXPECT_EQ(pool.size(), forkpool::cpu_count());
  EXPECT_EQ(pool.options().schedule, Schedule::work_stealing());
  EXPECT_EQ(pool.options().processes, forkpool::cpu_count());
  EXPECT_GE(forkpool::cpu_count(), 1u);
}

TEST(Pools, SizeAndPids) {
  for (unsigned P : {1u, 2u, 5u}) {
    Pool pool(P);
    EXPECT_EQ(pool.size(), P);
    const auto pids = pool.pids();
    ASSERT_EQ(pids.size(), P);
    EXPECT_EQ(std::set<pid_t>(pids.begin(), pids.end()).size(), P);
    for (pid_t pid : pids) {
      EXPECT_GT(pid, 0);
      EXPECT_NE(pid, getpid());
      const auto fields = forkpool_test::stat_fields(pid);
      ASSERT_GT(fields.size(), 1u);
      EXPECT_EQ(std::stol(fields[1]), getpid()) << "worker " << pid << " is not our child";
    }
  }
}

struct PidIndex {
  pid_t pid;
  int index;
};

TEST(Pools, CurrentProcess) {
  const auto me = forkpool::current_process();
  EXPECT_EQ(me.index, -1);
  EXPECT_EQ(me.pid, getpid());
  Pool pool(3);
  EXPECT_EQ(forkpool::current_process().index, -1);
  // Inside a worker: its own pid, and the index under which pids() lists it.
  const auto seen = pool.map(
      [](std::int64_t) {
        const auto p = forkpool::current_process();
        return PidIndex{p.pid, p.index};
      },
      forkpool::range(3000), Schedule::dynamic(1));
  const auto pids = pool.pids();
  for (const auto& [pid, index] : seen) {
    ASSERT_GE(index, 0);
    ASSERT_LT(index, 3);
    ASSERT_EQ(pid, pids[static_cast<std::size_t>(index)]);
  }
}

TEST(Pools, RangeHelpers) {
  const auto r = forkpool::range(10);
  EXPECT_EQ(r.first, 0);
  EXPECT_EQ(r.last, 10);
  const auto s = forkpool::range(-5, 20);
  EXPECT_EQ(s.first, -5);
  EXPECT_EQ(s.last, 20);
  Pool pool(2);
  const auto out = pool.map([](std::int64_t i) { return i; }, forkpool::range(-5, 20));
  ASSERT_EQ(out.size(), 25u);
  for (std::int64_t k = 0; k < 25; ++k) EXPECT_EQ(out[static_cast<std::size_t>(k)], k - 5);
  // A range at the very bottom of int64.
  const std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  const auto low = pool.map([](std::int64_t i) { return i; }, forkpool::range(lo, lo + 3));
  EXPECT_EQ(low.to_vector(), (std::vector<std::int64_t>{lo, lo + 1, lo + 2}));
  const std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  const auto high = pool.map([](std::int64_t i) { return i; }, forkpool::range(hi - 3, hi));
  EXPECT_EQ(high.to_vector(), (std::vector<std::int64_t>{hi - 3, hi - 2, hi - 1}));
}

// Pages of [p, p + bytes) resident in memory, by mincore(): whole pages inside the range.
std::size_t resident_pages(const void* p, std::size_t bytes) {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const std::uintptr_t lo = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
  const std::uintptr_t hi = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
  std::vector<unsigned char> v((hi - lo) / page);
  if (mincore(reinterpret_cast<void*>(lo), hi - lo, v.data()) != 0) return 0;
  return static_cast<std::size_t>(
      std::count_if(v.begin(), v.end(), [](unsigned char c) { return c & 1; }));
}

// The segment keeps the last large block freed (the spare), pages and all, and hands it to the
// next map of a similar size; the spare it replaces gives its pages back.
TEST(MapMemory, RepeatedLargeMapsReuseTheSameBlock) {
  Pool pool(2);
  const auto f = [](std::int64_t i) { return i * 3; };
  const std::int64_t n = 1 << 20;  // 8 MiB of results: a large block
  const std::size_t bytes = sizeof(std::int64_t) * static_cast<std::size_t>(n);
  const void* first_address = nullptr;
  {
    const auto first = pool.map(f, forkpool::range(n));
    first_address = first.data();
  }
  const std::size_t pages = resident_pages(first_address, bytes);
  EXPECT_GT(pages, 0u);
  EXPECT_EQ(resident_pages(first_address, bytes), pages) << "the spare keeps its pages";
  {
    const auto second = pool.map(f, forkpool::range(n - 1000));  // a similar size
    EXPECT_EQ(static_cast<const void*>(second.data()), first_address);
    for (std::int64_t k = 0; k < n - 1000; k += 4099)
      ASSERT_EQ(second[static_cast<std::size_t>(k)], 3 * k);
  }
  // A different large block freed becomes the spare; the old one's pages are given back.
  { const auto other = pool.map(f, forkpool::range(n / 4)); }
  EXPECT_EQ(resident_pages(first_address, bytes), 0u);
}

TEST(MapMemory, TheSpareGivesWayWhenSpaceIsShort) {
  // 8 MiB of segment: a freed 3 MB block kept as the spare must not stand in the way of 6 MB.
  Pool pool(Options{.processes = 2, .segment_bytes = std::size_t{8} << 20});
  const auto f = [](std::int64_t i) { return i; };
  { const auto held = pool.map(f, forkpool::range(375000)); }
  const void* big_address = nullptr;
  {
    const auto big = pool.map(f, forkpool::range(750000));
    EXPECT_EQ(big[749999], 749999);
    big_address = big.data();
  }
  // The 6 MB block is now the spare; a small request leaves it alone, a similar one reuses it.
  const auto small = pool.map(f, forkpool::range(10));
  EXPECT_EQ(small[9], 9);
  EXPECT_NE(static_cast<const void*>(small.data()), big_address);
  const auto similar = pool.map(f, forkpool::range(500000));
  EXPECT_EQ(static_cast<const void*>(similar.data()), big_address);
  EXPECT_EQ(similar[499999], 499999);
}

}  // namespace
