// The chunk-size rules (detail/chunking.hpp) as pure functions, and the single-threaded
// semantics of detail::ChunkRange (take_front / steal_back and their exact spans).
#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>
#include <forkpool/schedule.hpp>

#include "test_util.hpp"  // how GoogleTest prints a Schedule, the same in every file

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using forkpool::Schedule;
using forkpool::detail::auto_grain;
using forkpool::detail::Block;
using forkpool::detail::ceil_div;
using forkpool::detail::ChunkRange;
using forkpool::detail::guided_chunk;
using forkpool::detail::kPieceGrowth;
using forkpool::detail::kPieceNanoseconds;
using forkpool::detail::next_piece;
using forkpool::detail::own_take;
using forkpool::detail::static_block;
using forkpool::detail::Steal;
using forkpool::detail::steal_amount;
using forkpool::detail::UnitSpan;

// ---------------------------------------------------------------------------------------------
// ceil_div

TEST(Chunking, CeilDiv) {
  EXPECT_EQ(ceil_div(0, 1), 0u);
  EXPECT_EQ(ceil_div(0, 7), 0u);
  EXPECT_EQ(ceil_div(1, 7), 1u);
  EXPECT_EQ(ceil_div(7, 7), 1u);
  EXPECT_EQ(ceil_div(8, 7), 2u);
  EXPECT_EQ(ceil_div(100, 4), 25u);
  EXPECT_EQ(ceil_div(UINT64_MAX, 1), UINT64_MAX);
  EXPECT_EQ(ceil_div(UINT64_MAX, 2), std::uint64_t{1} << 63);
  for (std::uint64_t a = 0; a < 200; ++a)
    for (std::uint64_t b = 1; b < 20; ++b) EXPECT_EQ(ceil_div(a, b), (a + b - 1) / b);
}

// ---------------------------------------------------------------------------------------------
// static_block

// The blocks of `count` over `parts` tile [0, count) in order, differ in size by at most one, and
// the first count % parts of them are the longer ones.
void expect_static_tiling(std::uint64_t count, std::uint64_t parts) {
  SCOPED_TRACE("count " + std::to_string(count) + ", parts " + std::to_string(parts));
  std::uint64_t expected_first = 0;
  const std::uint64_t q = count / parts, r = count % parts;
  for (std::uint64_t w = 0; w < parts; ++w) {
    const Block b = static_block(count, parts, w);
    ASSERT_EQ(b.first, expected_first) << "block " << w;
    ASSERT_LE(b.first, b.last) << "block " << w;
    ASSERT_EQ(b.last - b.first, q + (w < r ? 1 : 0)) << "block " << w;
    expected_first = b.last;
  }
  ASSERT_EQ(expected_first, count);
}

TEST(Chunking, StaticBlockTilesTheRangeExactly) {
  for (std::uint64_t count = 0; count <= 300; ++count)
    for (std::uint64_t parts = 1; parts <= 70; ++parts) expect_static_tiling(count, parts);
  for (std::uint64_t count : {std::uint64_t{1000003}, std::uint64_t{100000000},
                              std::uint64_t{0xFFFFFFFF}, (std::uint64_t{1} << 62) - 1})
    for (std::uint64_t parts : {1, 2, 3, 4, 7, 64, 128, 1000}) expect_static_tiling(count, parts);
}

TEST(Chunking, StaticBlockExamples) {
  // 10 over 4: 3, 3, 2, 2.
  EXPECT_EQ(static_block(10, 4, 0).first, 0u);
  EXPECT_EQ(static_block(10, 4, 0).last, 3u);
  EXPECT_EQ(static_block(10, 4, 1).first, 3u);
  EXPECT_EQ(static_block(10, 4, 1).last, 6u);
  EXPECT_EQ(static_block(10, 4, 2).first, 6u);
  EXPECT_EQ(static_block(10, 4, 2).last, 8u);
  EXPECT_EQ(static_block(10, 4, 3).first, 8u);
  EXPECT_EQ(static_block(10, 4, 3).last, 10u);
  // Fewer items than parts: the first `count` blocks get one item, the rest none.
  for (std::uint64_t w = 0; w < 7; ++w) {
    const Block b = static_block(3, 7, w);
    EXPECT_EQ(b.last - b.first, w < 3 ? 1u : 0u) << w;
  }
  // Constant evaluation works (the rules are constexpr).
  static_assert(static_block(100, 3, 2).first == 67 && static_block(100, 3, 2).last == 100);
}

// ---------------------------------------------------------------------------------------------
// guided_chunk: GSS, ceil(R / P), at least min_chunk, at most R.

// The sequence of chunks GSS hands out for N items over P workers, computed from the published
// rule (Polychronopoulos & Kuck 1987) independently of guided_chunk.
std::vector<std::uint64_t> gss_reference(std::uint64_t n, std::uint64_t p,
                                         std::uint64_t min_chunk) {
  std::vector<std::uint64_t> chunks;
  for (std::uint64_t r = n; r > 0;) {
    std::uint64_t c = (r + p - 1) / p;
    if (c < min_chunk) c = min_chunk;
    if (c > r) c = r;
    chunks.push_back(c);
    r -= c;
  }
  return chunks;
}

std::vector<std::uint64_t> gss_sequence(std::uint64_t n, std::uint64_t p, std::uint64_t min_chunk) {
  std::vector<std::uint64_t> chunks;
  for (std::uint64_t r = n; r > 0;) {
    const std::uint64_t c = guided_chunk(r, p, min_chunk);
    EXPECT_GE(c, 1u);
    EXPECT_LE(c, r);
    if (c == 0 || c > r) break;
    chunks.push_back(c);
    r -= c;
  }
  return chunks;
}

TEST(Chunking, GuidedPublishedSequence) {
  const std::vector<std::uint64_t> expected{25, 19, 14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1};
  EXPECT_EQ(gss_sequence(100, 4, 1), expected);
  EXPECT_EQ(gss_reference(100, 4, 1), expected);
}

TEST(Chunking, GuidedMinimumChunk) {
  const std::vector<std::uint64_t> expected{25, 19, 14, 11, 8, 6, 5, 5, 5, 2};
  EXPECT_EQ(gss_sequence(100, 4, 5), expected);
  // A minimum above N gives everything at once.
  EXPECT_EQ(gss_sequence(100, 4, 1000), std::vector<std::uint64_t>{100});
  // One worker takes everything in one chunk.
  EXPECT_EQ(gss_sequence(12345, 1, 1), std::vector<std::uint64_t>{12345});
}

TEST(Chunking, GuidedMatchesTheRuleEverywhere) {
  for (std::uint64_t n : {1, 2, 3, 10, 99, 100, 101, 1000, 65537, 1000003})
    for (std::uint64_t p : {1, 2, 3, 4, 7, 16, 128})
      for (std::uint64_t m : {1, 2, 5, 64, 100000}) {
        SCOPED_TRACE("N " + std::to_string(n) + ", P " + std::to_string(p) + ", min " +
                     std::to_string(m));
        const auto seq = gss_sequence(n, p, m);
        EXPECT_EQ(seq, gss_reference(n, p, m));
        std::uint64_t sum = 0;
        for (std::uint64_t c : seq) sum += c;
        EXPECT_EQ(sum, n);
        // Chunks never grow, except that the last one may be cut to what is left.
        for (std::size_t k = 1; k + 1 < seq.size(); ++k) EXPECT_LE(seq[k], seq[k - 1]);
      }
}

TEST(Chunking, GuidedSingleValues) {
  EXPECT_EQ(guided_chunk(1, 4, 1), 1u);
  EXPECT_EQ(guided_chunk(1, 4, 10), 1u);  // never more than what remains
  EXPECT_EQ(guided_chunk(4, 4, 1), 1u);
  EXPECT_EQ(guided_chunk(5, 4, 1), 2u);
  EXPECT_EQ(guided_chunk(1000000, 2, 1), 500000u);
  EXPECT_EQ(guided_chunk(UINT64_MAX, 1, 1), UINT64_MAX);
}

// ---------------------------------------------------------------------------------------------
// own_take, steal_amount, auto_grain

TEST(Chunking, OwnTakeIsInOneToRemaining) {
  for (std::uint64_t remaining = 1; remaining <= 5000; ++remaining)
    for (std::uint64_t grain : {1, 2, 3, 7, 64, 1000, 100000}) {
      const std::uint64_t t = own_take(remaining, grain);
      ASSERT_GE(t, 1u) << remaining << " " << grain;
      ASSERT_LE(t, remaining) << remaining << " " << grain;
      // At least the grain (or everything), and about 1/8 of the range.
      ASSERT_EQ(t, std::min(remaining, std::max(grain, ceil_div(remaining, 8))));
    }
  EXPECT_EQ(own_take(800, 1), 100u);
  EXPECT_EQ(own_take(801, 1), 101u);
  EXPECT_EQ(own_take(800, 200), 200u);
  EXPECT_EQ(own_take(7, 1), 1u);
  EXPECT_EQ(own_take(0xFFFFFFFF, 1), 536870912u);
}

TEST(Chunking, StealAmountIsInOneToRemaining) {
  for (std::uint64_t remaining = 1; remaining <= 5000; ++remaining)
    for (std::uint64_t grain : {1, 2, 3, 7, 64, 1000, 100000}) {
      const std::uint64_t s = steal_amount(remaining, grain);
      ASSERT_GE(s, 1u) << remaining << " " << grain;
      ASSERT_LE(s, remaining) << remaining << " " << grain;
      if (remaining < 2 * grain)
        ASSERT_EQ(s, remaining);  // halving would leave a piece under the grain: take it all
      else
        ASSERT_EQ(s, remaining / 2);  // the back half, rounded down; both halves >= grain
    }
  EXPECT_EQ(steal_amount(1, 1), 1u);
  EXPECT_EQ(steal_amount(2, 1), 1u);
  EXPECT_EQ(steal_amount(3, 1), 1u);
  EXPECT_EQ(steal_amount(10, 1), 5u);
  EXPECT_EQ(steal_amount(3, 2), 3u);
  EXPECT_EQ(steal_amount(4, 2), 2u);
  // A grain of 2^63 or more: 2 * grain would wrap (found by tests/fuzz_chunking.cpp).
  EXPECT_EQ(steal_amount(1, std::uint64_t{1} << 63), 1u);
  EXPECT_EQ(steal_amount(UINT64_MAX, UINT64_MAX), UINT64_MAX);
}

TEST(Chunking, AutoGrainIsAtLeastOne) {
  for (std::uint64_t count : {0, 1, 2, 255, 256, 511, 512, 1000, 1000003, 100000000})
    for (std::uint64_t workers : {1, 2, 3, 4, 7, 64, 128}) {
      const std::uint64_t g = auto_grain(count, workers);
      EXPECT_GE(g, 1u);
      EXPECT_EQ(g, std::max<std::uint64_t>(1, count / (workers * 256)));
    }
  EXPECT_EQ(auto_grain(0, 1), 1u);
  EXPECT_EQ(auto_grain(1000000, 2), 1953u);
  EXPECT_EQ(auto_grain(0xFFFFFFFF, 1), 0xFFFFFFFFu / 256);
}

TEST(Chunking, PiecesAimAtTheirDurationAndGrowGradually) {
  // Fast items: grow by kPieceGrowth per piece, however fast.
  EXPECT_EQ(next_piece(1, 0), kPieceGrowth);
  EXPECT_EQ(next_piece(1000, 10), 1000 * kPieceGrowth);
  // At the measured rate, aim at kPieceNanoseconds.
  EXPECT_EQ(next_piece(100, kPieceNanoseconds / 2), 200u);
  EXPECT_EQ(next_piece(100, kPieceNanoseconds), 100u);
  EXPECT_EQ(next_piece(100, kPieceNanoseconds * 4), 25u);
  // Slow items: one at a time, never zero.
  EXPECT_EQ(next_piece(1, kPieceNanoseconds * 1000), 1u);
  EXPECT_EQ(next_piece(3, kPieceNanoseconds * 10), 1u);
  // No overflow at the top of the range.
  EXPECT_EQ(next_piece(UINT64_MAX / 2, 1), UINT64_MAX);
  for (std::uint64_t items : {1ull, 7ull, 1000ull, 1ull << 40})
    for (std::uint64_t ns : {0ull, 1ull, 999ull, 1000000ull, 1ull << 50}) {
      const std::uint64_t p = next_piece(items, ns);
      EXPECT_GE(p, 1u);
      EXPECT_LE(p, items * kPieceGrowth);
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule

TEST(Chunking, ScheduleParametersAndNames) {
  EXPECT_EQ(Schedule::static_blocks().kind(), Schedule::Kind::static_blocks);
  EXPECT_EQ(Schedule::static_blocks().parameter(), 0u);
  EXPECT_EQ(Schedule::dynamic(7).kind(), Schedule::Kind::dynamic);
  EXPECT_EQ(Schedule::dynamic(7).parameter(), 7u);
  EXPECT_EQ(Schedule::guided().parameter(), 1u);
  EXPECT_EQ(Schedule::guided(5).parameter(), 5u);
  EXPECT_EQ(Schedule::work_stealing().parameter(), 0u);
  EXPECT_EQ(Schedule::work_stealing(3).parameter(), 3u);
  EXPECT_EQ(Schedule::static_blocks().name(), "static_blocks");
  EXPECT_EQ(Schedule::dynamic(64).name(), "dynamic(64)");
  EXPECT_EQ(Schedule::guided(5).name(), "guided(5)");
  EXPECT_EQ(Schedule::work_stealing().name(), "work_stealing(auto)");
  EXPECT_EQ(Schedule::work_stealing(3).name(), "work_stealing(3)");
  EXPECT_EQ(Schedule::dynamic(4), Schedule::dynamic(4));
  EXPECT_NE(Schedule::dynamic(4), Schedule::dynamic(5));
  EXPECT_NE(Schedule::dynamic(1), Schedule::guided(1));
}

// ---------------------------------------------------------------------------------------------
// ChunkRange, single-threaded

auto take(std::uint64_t n) {
  return [n](std::uint64_t remaining) { return std::min(n, remaining); };
}

TEST(ChunkRange, StartsEmpty) {
  ChunkRange r;
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_TRUE(r.take_front(take(1)).empty());
  const auto s = r.steal_back(take(1));
  EXPECT_EQ(s.outcome, Steal::empty);
  EXPECT_TRUE(s.span.empty());
}

TEST(ChunkRange, TakeFrontGivesExactSpans) {
  ChunkRange r;
  r.reset({3, 10});
  EXPECT_EQ(r.remaining(), 7u);
  UnitSpan s = r.take_front(take(2));
  EXPECT_EQ(s.first, 3u);
  EXPECT_EQ(s.last, 5u);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(r.remaining(), 5u);
  s = r.take_front(take(1));
  EXPECT_EQ(s.first, 5u);
  EXPECT_EQ(s.last, 6u);
  // size_for sees exactly what remains.
  std::uint64_t seen = 0;
  s = r.take_front([&seen](std::uint64_t remaining) {
    seen = remaining;
    return remaining;
  });
  EXPECT_EQ(seen, 4u);
  EXPECT_EQ(s.first, 6u);
  EXPECT_EQ(s.last, 10u);
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_TRUE(r.take_front(take(1)).empty());
  EXPECT_EQ(r.steal_back(take(1)).outcome, Steal::empty);
}

TEST(ChunkRange, StealBackGivesExactSpans) {
  ChunkRange r;
  r.reset({100, 200});
  std::uint64_t seen = 0;
  auto s = r.steal_back([&seen](std::uint64_t remaining) {
    seen = remaining;
    return remaining / 2;
  });
  EXPECT_EQ(seen, 100u);
  ASSERT_EQ(s.outcome, Steal::success);
  EXPECT_EQ(s.span.first, 150u);
  EXPECT_EQ(s.span.last, 200u);
  EXPECT_EQ(r.remaining(), 50u);
  // The owner's front is untouched.
  UnitSpan f = r.take_front(take(10));
  EXPECT_EQ(f.first, 100u);
  EXPECT_EQ(f.last, 110u);
  // Steal everything that is left.
  s = r.steal_back([](std::uint64_t remaining) { return remaining; });
  ASSERT_EQ(s.outcome, Steal::success);
  EXPECT_EQ(s.span.first, 110u);
  EXPECT_EQ(s.span.last, 150u);
  EXPECT_EQ(r.remaining(), 0u);
  s = r.steal_back(take(1));
  EXPECT_EQ(s.outcome, Steal::empty);
  EXPECT_TRUE(r.take_front(take(1)).empty());
}

TEST(ChunkRange, ResetAfterStealMakesTheRangeUsableAgain) {
  ChunkRange victim, thief;
  victim.reset({0, 16});
  const auto s = victim.steal_back([](std::uint64_t r) { return steal_amount(r, 1); });
  ASSERT_EQ(s.outcome, Steal::success);
  EXPECT_EQ(s.span.first, 8u);
  EXPECT_EQ(s.span.last, 16u);
  thief.reset(s.span);
  EXPECT_EQ(thief.remaining(), 8u);
  const UnitSpan t = thief.take_front([](std::uint64_t r) { return own_take(r, 1); });
  EXPECT_EQ(t.first, 8u);
  EXPECT_EQ(t.last, 9u);
  // And the thief's range can be stolen from in turn.
  const auto s2 = thief.steal_back([](std::uint64_t r) { return steal_amount(r, 1); });
  ASSERT_EQ(s2.outcome, Steal::success);
  EXPECT_EQ(s2.span.first, 13u);
  EXPECT_EQ(s2.span.last, 16u);
  EXPECT_EQ(thief.remaining(), 4u);
  EXPECT_EQ(victim.remaining(), 8u);
}

TEST(ChunkRange, StealReportsRetryWhenTheRangeChangesUnderIt) {
  // A change between the thief's load and its CAS (here made from inside amount_for, as another
  // worker would) makes the one attempt fail with `retry`, and takes nothing.
  ChunkRange r;
  r.reset({0, 10});
  UnitSpan taken_by_owner{};
  const auto s = r.steal_back([&](std::uint64_t remaining) {
    taken_by_owner = r.take_front(take(3));
    return remaining / 2;
  });
  EXPECT_EQ(s.outcome, Steal::retry);
  EXPECT_TRUE(s.span.empty());
  EXPECT_EQ(taken_by_owner.first, 0u);
  EXPECT_EQ(taken_by_owner.last, 3u);
  EXPECT_EQ(r.remaining(), 7u);
  // The next attempt sees the new range.
  const auto s2 = r.steal_back([](std::uint64_t remaining) { return remaining / 2; });
  ASSERT_EQ(s2.outcome, Steal::success);
  EXPECT_EQ(s2.span.first, 7u);
  EXPECT_EQ(s2.span.last, 10u);
}

TEST(ChunkRange, TakeFrontRetriesAgainstTheNewRange) {
  // take_front loops until its CAS succeeds, recomputing the size from the range it then sees.
  ChunkRange r;
  r.reset({0, 100});
  int calls = 0;
  std::vector<std::uint64_t> seen;
  const UnitSpan t = r.take_front([&](std::uint64_t remaining) {
    seen.push_back(remaining);
    if (calls++ == 0) {
      const auto s = r.steal_back([](std::uint64_t rem) { return rem / 2; });
      EXPECT_EQ(s.outcome, Steal::success);
    }
    return std::uint64_t{5};
  });
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0], 100u);
  EXPECT_EQ(seen.back(), 50u);
  EXPECT_EQ(t.first, 0u);
  EXPECT_EQ(t.last, 5u);
  EXPECT_EQ(r.remaining(), 45u);
}

TEST(ChunkRange, FullThirtyTwoBitRange) {
  ChunkRange r;
  r.reset({0, 0xFFFFFFFFu});
  EXPECT_EQ(r.remaining(), 0xFFFFFFFFu);
  const auto s = r.steal_back([](std::uint64_t rem) { return rem / 2; });
  ASSERT_EQ(s.outcome, Steal::success);
  EXPECT_EQ(s.span.last, 0xFFFFFFFFu);
  EXPECT_EQ(s.span.size(), 0xFFFFFFFFu / 2);
  const UnitSpan t = r.take_front([](std::uint64_t rem) { return rem; });
  EXPECT_EQ(t.first, 0u);
  EXPECT_EQ(t.last, s.span.first);
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(ChunkRange, IsOnItsOwnCacheLine) {
  static_assert(alignof(ChunkRange) == 64);
  static_assert(sizeof(ChunkRange) == 64);
  ChunkRange ranges[2];
  EXPECT_EQ(
      reinterpret_cast<std::uintptr_t>(&ranges[1]) - reinterpret_cast<std::uintptr_t>(&ranges[0]),
      64u);
}

TEST(ChunkRange, DrainingByOwnTakesCoversTheRangeInOrder) {
  for (std::uint32_t n : {1u, 2u, 7u, 100u, 12345u})
    for (std::uint64_t grain : {1, 3, 64}) {
      ChunkRange r;
      r.reset({5, 5 + n});
      std::uint32_t next = 5;
      for (;;) {
        const UnitSpan t =
            r.take_front([grain](std::uint64_t rem) { return own_take(rem, grain); });
        if (t.empty()) break;
        ASSERT_EQ(t.first, next);
        ASSERT_GT(t.last, t.first);
        next = t.last;
      }
      EXPECT_EQ(next, 5 + n);
    }
}

}  // namespace
