// The chunk-size rules (detail/chunking.hpp) as pure functions, checked against the published
// sequences of their papers; the Schedule factories; detail::Claimer (claimer.hpp) with the
// workers taking turns in one thread; and the single-threaded semantics of detail::ChunkRange
// (take_front / steal_back and their exact spans).
#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>
#include <forkpool/detail/claimer.hpp>
#include <forkpool/detail/claims.hpp>
#include <forkpool/schedule.hpp>

#include "test_util.hpp"  // how GoogleTest prints a Schedule, the same in every file

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using forkpool::Schedule;
using forkpool::detail::af_chunk;
using forkpool::detail::af_probe_chunk;
using forkpool::detail::AfSums;
using forkpool::detail::auto_grain;
using forkpool::detail::Block;
using forkpool::detail::ceil_div;
using forkpool::detail::ChunkCounter;
using forkpool::detail::ChunkRange;
using forkpool::detail::Claimer;
using forkpool::detail::ClaimRule;
using forkpool::detail::factoring_chunk;
using forkpool::detail::fixed_size_chunk;
using forkpool::detail::guided_chunk;
using forkpool::detail::ItemTime;
using forkpool::detail::ItemTimer;
using forkpool::detail::kAfSamples;
using forkpool::detail::kPacedGrainNanoseconds;
using forkpool::detail::kPieceGrowth;
using forkpool::detail::kPieceNanoseconds;
using forkpool::detail::make_claim_rule;
using forkpool::detail::next_piece;
using forkpool::detail::own_take;
using forkpool::detail::paced_grain;
using forkpool::detail::paced_take;
using forkpool::detail::python_chunksize;
using forkpool::detail::reset_schedule_state;
using forkpool::detail::ScheduleState;
using forkpool::detail::SharedItemTime;
using forkpool::detail::static_block;
using forkpool::detail::static_chunk;
using forkpool::detail::Steal;
using forkpool::detail::steal_amount;
using forkpool::detail::trapezoid_chunk;
using forkpool::detail::trapezoid_rule;
using forkpool::detail::TrapezoidRule;
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
// own_take, paced_take, steal_amount, auto_grain

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

TEST(Chunking, PacedTakeIsTheNextPieceButNeverMoreThanOwnTake) {
  for (std::uint64_t remaining = 1; remaining <= 3000; ++remaining)
    for (std::uint64_t piece : {1, 4, 64, 1000, 1 << 20})
      for (std::uint64_t grain : {1, 7, 500, 100000}) {
        const std::uint64_t t = paced_take(remaining, piece, grain);
        ASSERT_GE(t, 1u) << remaining << " " << piece << " " << grain;
        ASSERT_EQ(t, std::min(piece, own_take(remaining, grain)))
            << remaining << " " << piece << " " << grain;
      }
  EXPECT_EQ(paced_take(1000000, 4096, 100), 4096u);  // far from the end: the piece
  EXPECT_EQ(paced_take(8000, 4096, 100), 1000u);     // near it: 1/8 of what is left
  EXPECT_EQ(paced_take(400, 4096, 100), 100u);       // at the end: the grain
  EXPECT_EQ(paced_take(60, 4096, 100), 60u);         // or what is left
  EXPECT_EQ(paced_take(60, 16, 100), 16u);           // never more than the piece
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
// trapezoid_rule / trapezoid_chunk: TSS (Tzen & Ni 1993)

// The chunks a self-scheduling rule hands out, in claim order, until `count` units are gone:
// size_for(index, remaining) as ChunkCounter::claim calls it. Stops (and fails) on a size outside
// [1, remaining].
template <class SizeFor>
std::vector<std::uint64_t> counter_sequence(std::uint64_t count, SizeFor size_for) {
  std::vector<std::uint64_t> chunks;
  for (std::uint64_t r = count, index = 0; r > 0; ++index) {
    const std::uint64_t c = size_for(index, r);
    EXPECT_GE(c, 1u) << "chunk " << index;
    EXPECT_LE(c, r) << "chunk " << index;
    if (c == 0 || c > r) break;
    chunks.push_back(c);
    r -= c;
  }
  return chunks;
}

std::vector<std::uint64_t> tss_sequence(std::uint64_t n, std::uint64_t p, std::uint64_t first,
                                        std::uint64_t last) {
  const TrapezoidRule rule = trapezoid_rule(n, p, first, last);
  return counter_sequence(
      n, [&rule](std::uint64_t i, std::uint64_t r) { return trapezoid_chunk(rule, i, r); });
}

TEST(Chunking, TrapezoidPublishedSequence) {
  // Tzen & Ni's example: N = 1000, P = 4. F = N / 2P = 125, L = 1, n = ceil(2N / (F + L)) =
  // ceil(2000 / 126) = 16 chunks, step D = floor((F - L) / (n - 1)) = floor(124 / 15) = 8.
  const TrapezoidRule rule = trapezoid_rule(1000, 4, 0, 1);
  EXPECT_EQ(rule.first, 125u);
  EXPECT_EQ(rule.last, 1u);
  EXPECT_EQ(rule.step, 8u);
  // The raw sizes fall from 125 by 8 for the n = 16 chunks (125, 117, ..., 5), then stay at L.
  for (std::uint64_t k = 0; k < 16; ++k)
    EXPECT_EQ(trapezoid_chunk(rule, k, 1000000), 125 - 8 * k) << "chunk " << k;
  EXPECT_EQ(trapezoid_chunk(rule, 16, 1000000), 1u);
  EXPECT_EQ(trapezoid_chunk(rule, 1000, 1000000), 1u);
  // Claimed from 1000 items: 125 + 117 + ... + 37 = 972, and the last chunk is cut to the 28 left.
  const std::vector<std::uint64_t> expected{125, 117, 109, 101, 93, 85, 77, 69, 61, 53, 45, 37, 28};
  EXPECT_EQ(tss_sequence(1000, 4, 0, 1), expected);
  // first = 0 is the paper's N / 2P: the same as asking for 125 explicitly.
  EXPECT_EQ(tss_sequence(1000, 4, 125, 1), expected);
}

TEST(Chunking, TrapezoidExplicitFirstAndLast) {
  // F = 100, L = 10 over 1000: n = ceil(2000 / 110) = 19, D = floor(90 / 18) = 5.
  const TrapezoidRule rule = trapezoid_rule(1000, 4, 100, 10);
  EXPECT_EQ(rule.first, 100u);
  EXPECT_EQ(rule.last, 10u);
  EXPECT_EQ(rule.step, 5u);
  EXPECT_EQ(trapezoid_chunk(rule, 18, 1000000), 10u);  // the 19th chunk is L
  EXPECT_EQ(trapezoid_chunk(rule, 19, 1000000), 10u);  // and none is ever below it
  // 100 + 95 + ... + 25 is exactly 1000: 16 chunks.
  std::vector<std::uint64_t> expected;
  for (std::uint64_t c = 100; c >= 25; c -= 5) expected.push_back(c);
  EXPECT_EQ(tss_sequence(1000, 4, 100, 10), expected);
  // first == last: constant chunks.
  EXPECT_EQ(tss_sequence(100, 4, 10, 10), std::vector<std::uint64_t>(10, 10));
  // A step that rounds down to 0 (F - L < n - 1) keeps F: TSS degenerates to dynamic(F).
  const TrapezoidRule flat = trapezoid_rule(1000, 4, 10, 1);
  EXPECT_EQ(flat.step, 0u);
  EXPECT_EQ(tss_sequence(1000, 4, 10, 1), std::vector<std::uint64_t>(100, 10));
  // A first chunk larger than the map takes it all at once.
  EXPECT_EQ(tss_sequence(1000, 4, 5000, 1), std::vector<std::uint64_t>{1000});
}

TEST(Chunking, TrapezoidDefaultsOnSmallMaps) {
  // N / 2P rounds down to 0 for N < 2P: the first chunk is 1, and so is every chunk.
  const TrapezoidRule tiny = trapezoid_rule(3, 4, 0, 1);
  EXPECT_EQ(tiny.first, 1u);
  EXPECT_EQ(tiny.last, 1u);
  EXPECT_EQ(tss_sequence(3, 4, 0, 1), (std::vector<std::uint64_t>{1, 1, 1}));
  // A last above the automatic first is lowered to it ("last is at most first").
  const TrapezoidRule clamped = trapezoid_rule(100, 4, 0, 50);
  EXPECT_EQ(clamped.first, 12u);
  EXPECT_EQ(clamped.last, 12u);
  EXPECT_EQ(clamped.step, 0u);
  EXPECT_EQ(tss_sequence(100, 4, 0, 50),
            (std::vector<std::uint64_t>{12, 12, 12, 12, 12, 12, 12, 12, 4}));
}

TEST(Chunking, TrapezoidSequencesCoverTheMapAndNeverGrow) {
  for (std::uint64_t n : {1, 2, 7, 100, 1000, 4097, 100003})
    for (std::uint64_t p : {1, 2, 3, 4, 16})
      for (std::uint64_t first : {0, 1, 10, 64, 1000})
        for (std::uint64_t last : {1, 2, 10}) {
          if (first != 0 && first < last) continue;  // rejected by Schedule::trapezoid
          SCOPED_TRACE("N " + std::to_string(n) + ", P " + std::to_string(p) + ", first " +
                       std::to_string(first) + ", last " + std::to_string(last));
          const TrapezoidRule rule = trapezoid_rule(n, p, first, last);
          const auto seq = tss_sequence(n, p, first, last);
          std::uint64_t sum = 0;
          for (std::size_t k = 0; k < seq.size(); ++k) {
            sum += seq[k];
            if (k + 1 < seq.size()) {
              EXPECT_GE(seq[k], rule.last) << "chunk " << k;  // only the last may be cut below L
              EXPECT_LE(seq[k], rule.first) << "chunk " << k;
              if (k > 0) {
                EXPECT_LE(seq[k], seq[k - 1]) << "chunk " << k;
              }
            }
          }
          EXPECT_EQ(sum, n);
        }
}

// ---------------------------------------------------------------------------------------------
// factoring_chunk: FAC2 (Hummel, Schonberg & Flynn 1992)

TEST(Chunking, FactoringPublishedSequence) {
  // N = 1000, P = 4: batch k has P chunks of ceil(N / (2^(k+1) P)) = ceil(1000 / 2^(k+3)):
  // 125, 63, 32, 16, 8, 4, 2 (then 1). 4 x (125 + 63 + 32 + 16 + 8 + 4 + 2) = 1000 exactly.
  const std::uint64_t batches[] = {125, 63, 32, 16, 8, 4, 2, 1, 1};
  for (std::uint64_t index = 0; index < 4 * std::size(batches); ++index)
    EXPECT_EQ(factoring_chunk(1000, 4, index, 1000000), batches[index / 4]) << "chunk " << index;
  std::vector<std::uint64_t> expected;
  for (std::size_t k = 0; k < 7; ++k) expected.insert(expected.end(), 4, batches[k]);
  EXPECT_EQ(counter_sequence(1000, [](std::uint64_t i,
                                      std::uint64_t r) { return factoring_chunk(1000, 4, i, r); }),
            expected);
  // Cut to what remains.
  EXPECT_EQ(factoring_chunk(1000, 4, 0, 7), 7u);
  // N = 100, P = 2: 25, 25, 13, 13, 7, 7, 4, 4, then 2 of the 2 left.
  EXPECT_EQ(counter_sequence(100, [](std::uint64_t i,
                                     std::uint64_t r) { return factoring_chunk(100, 2, i, r); }),
            (std::vector<std::uint64_t>{25, 25, 13, 13, 7, 7, 4, 4, 2}));
}

TEST(Chunking, FactoringMatchesTheClosedFormAtEveryBatch) {
  for (std::uint64_t n : {std::uint64_t{1}, std::uint64_t{999}, std::uint64_t{1000003},
                          std::uint64_t{0xFFFFFFFF}, (std::uint64_t{1} << 62) - 1})
    for (std::uint64_t p : {1, 2, 3, 4, 7, 64, 1000})
      for (std::uint64_t batch = 0; batch < 70; ++batch) {
        // ceil(N / (2^(k+1) P)), computed where 2^(k+1) P does not overflow; 1 past that.
        std::uint64_t expected = 1;
        if (batch + 1 < 64 && p <= (UINT64_MAX >> (batch + 1)))
          expected = std::max<std::uint64_t>(1, ceil_div(n, p << (batch + 1)));
        for (std::uint64_t index : {batch * p, batch * p + p - 1})
          ASSERT_EQ(factoring_chunk(n, p, index, UINT64_MAX), expected)
              << "N " << n << ", P " << p << ", chunk " << index;
      }
}

// ---------------------------------------------------------------------------------------------
// fixed_size_chunk (mFSC) and python_chunksize

TEST(Chunking, FixedSizePublishedValues) {
  // floor(0.55 + T ln 2 / ln T), T = ceil(N / P).
  // N = 100000, P = 2: T = 50000, 50000 x 0.693147 / 10.819778 = 3203.149; + 0.55 -> 3203.
  EXPECT_EQ(fixed_size_chunk(100000, 2), 3203u);
  // T = 250: 250 x 0.693147 / 5.521461 = 31.384 -> 31.
  EXPECT_EQ(fixed_size_chunk(1000, 4), 31u);
  // T = 25: 25 x 0.693147 / 3.218876 = 5.383 -> 5.
  EXPECT_EQ(fixed_size_chunk(100, 4), 5u);
  // T = 125000: 7383.
  EXPECT_EQ(fixed_size_chunk(1000000, 8), 7383u);
  // T = 2: 2 ln 2 / ln 2 = 2; T = 3: 1.893 + 0.55 -> 2; T = ceil(10 / 3) = 4: 2.
  EXPECT_EQ(fixed_size_chunk(4, 2), 2u);
  EXPECT_EQ(fixed_size_chunk(6, 2), 2u);
  EXPECT_EQ(fixed_size_chunk(10, 3), 2u);
  // T <= 1: 1 (ln 1 = 0 would divide by zero).
  EXPECT_EQ(fixed_size_chunk(1, 4), 1u);
  EXPECT_EQ(fixed_size_chunk(4, 4), 1u);
  EXPECT_EQ(fixed_size_chunk(0, 4), 1u);
  // Against the formula directly, over many maps.
  for (std::uint64_t n = 2; n < 100000; n = n * 3 + 1)
    for (std::uint64_t p : {1, 2, 3, 8}) {
      const double t = static_cast<double>(ceil_div(n, p));
      const auto expected =
          t <= 1 ? 1
                 : static_cast<std::uint64_t>(std::floor(0.55 + t * std::log(2.0) / std::log(t)));
      EXPECT_EQ(fixed_size_chunk(n, p), std::max<std::uint64_t>(1, expected)) << n << " " << p;
    }
}

TEST(Chunking, PythonChunksizeIsPythonsDivmodRule) {
  // multiprocessing.Pool.map: chunksize, extra = divmod(len(iterable), len(pool) * 4);
  // if extra: chunksize += 1.
  EXPECT_EQ(python_chunksize(10, 2), 2u);  // divmod(10, 8) = (1, 2)
  EXPECT_EQ(python_chunksize(8, 2), 1u);   // divmod(8, 8) = (1, 0)
  EXPECT_EQ(python_chunksize(100000, 2), 12500u);
  EXPECT_EQ(python_chunksize(100001, 2), 12501u);
  EXPECT_EQ(python_chunksize(3, 4), 1u);  // (0, 3) -> 1
  EXPECT_EQ(python_chunksize(0, 4), 1u);  // Python says 0; a chunk is at least 1 here
  for (std::uint64_t n = 1; n < 3000; n += 7)
    for (std::uint64_t p : {1, 2, 3, 5, 16}) {
      std::uint64_t chunksize = n / (p * 4);
      if (n % (p * 4) != 0) ++chunksize;
      ASSERT_EQ(python_chunksize(n, p), chunksize) << n << " " << p;
      // About 4P chunks: never more, and 4P - something only when N is not a multiple.
      EXPECT_LE(ceil_div(n, python_chunksize(n, p)), 4 * p);
    }
}

// ---------------------------------------------------------------------------------------------
// Adaptive factoring (Banicescu & Liu 2000)

AfSums sums_of(std::initializer_list<ItemTime> times) {
  AfSums s;
  for (const ItemTime& t : times) s.add(t);
  return s;
}

TEST(Chunking, AfChunkWithoutVarianceSplitsTheRestByRate) {
  // Two workers, mu = 1, sigma^2 = 0: D = 0, T = (1 + 1)^-1 = 1/2, C = 2 T R / 2 mu = R / 2.
  const ItemTime one{1, 0};
  EXPECT_EQ(af_chunk(sums_of({one, one}), one, 1000), 500u);
  EXPECT_EQ(af_chunk(sums_of({one, one}), one, 1001), 501u);  // 500.5, rounded up
  // Four equal workers: R / 4.
  EXPECT_EQ(af_chunk(sums_of({one, one, one, one}), one, 1000), 250u);
  EXPECT_EQ(af_chunk(sums_of({one, one, one, one}), one, 999), 250u);  // 249.75
  // Equal rates other than 1: only the ratios matter.
  const ItemTime slow{128, 0};
  EXPECT_EQ(af_chunk(sums_of({slow, slow}), slow, 1000), 500u);
  // mu = 1, 2 and 2: T = (1 + 1/2 + 1/2)^-1 = 1/2; the fast worker takes R/2, each slow one
  // R/4, so that all three take the same time (500 x 1 = 250 x 2).
  const ItemTime fast{1, 0}, two{2, 0};
  EXPECT_EQ(af_chunk(sums_of({fast, two, two}), fast, 1000), 500u);
  EXPECT_EQ(af_chunk(sums_of({fast, two, two}), two, 1000), 250u);
  // Workers not measured yet (mean 0) do not count.
  EXPECT_EQ(af_chunk(sums_of({one, ItemTime{}}), one, 1000), 1000u);
}

TEST(Chunking, AfChunkWithVarianceIsSmaller) {
  // mu = 1, sigma^2 = 1 on both: D = 2, T = 1/2.
  // C = (D + 2TR - sqrt(D^2 + 4DTR)) / 2 mu = (2 + 1000 - sqrt(4 + 4000)) / 2 = 469.36 -> 470.
  const ItemTime noisy{1, 1};
  const AfSums sums = sums_of({noisy, noisy});
  EXPECT_DOUBLE_EQ(sums.d, 2.0);
  EXPECT_DOUBLE_EQ(sums.speed, 2.0);
  EXPECT_EQ(af_chunk(sums, noisy, 1000), 470u);
  EXPECT_LT(af_chunk(sums, noisy, 1000), af_chunk(sums_of({{1, 0}, {1, 0}}), {1, 0}, 1000));
  // The more variance, the smaller the chunk.
  std::uint64_t previous = 1000;
  for (double v : {0.0, 0.5, 2.0, 10.0, 100.0, 10000.0}) {
    const ItemTime t{1, v};
    const std::uint64_t c = af_chunk(sums_of({t, t}), t, 1000);
    EXPECT_LE(c, previous) << "variance " << v;
    previous = c;
  }
  EXPECT_LT(previous, 50u);
}

TEST(Chunking, AfSumsOverAllWorkersCountTheUnmeasuredAsAverageOnes) {
  // One worker of 4 measured (mu = 1, no variance): the other three are taken to be like it, so
  // T = 1/4 and C = R / 4, not R.
  const AfSums one = sums_of({{1, 0}});
  const AfSums all = one.over(4);
  EXPECT_DOUBLE_EQ(all.speed, 4.0);
  EXPECT_DOUBLE_EQ(all.d, 0.0);
  EXPECT_EQ(all.measured, 4u);
  EXPECT_EQ(af_chunk(all, {1, 0}, 1000), 250u);
  // Two of 4 measured: D and 1/T doubled. D = 1/1 + 4/2 = 3, 1/T = 1 + 1/2 = 3/2.
  const AfSums four = sums_of({{1, 1}, {2, 4}}).over(4);
  EXPECT_DOUBLE_EQ(four.d, 6.0);
  EXPECT_DOUBLE_EQ(four.speed, 3.0);
  // Every worker measured, or none: unchanged.
  EXPECT_DOUBLE_EQ(sums_of({{1, 0}, {2, 0}}).over(2).speed, 1.5);
  EXPECT_EQ(AfSums{}.over(4).speed, 0.0);
  EXPECT_EQ(AfSums{}.over(4).measured, 0u);
}

TEST(Chunking, AfChunkIsAlwaysInOneToRemaining) {
  const ItemTime times[] = {{1e-3, 0}, {1, 0}, {1, 1e12}, {1e9, 0}, {1e9, 1e18}, {7, 3}};
  for (const ItemTime& a : times)
    for (const ItemTime& b : times)
      for (std::uint64_t r :
           {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{1000}, std::uint64_t{0xFFFFFFFF}}) {
        const std::uint64_t c = af_chunk(sums_of({a, b}), a, r);
        EXPECT_GE(c, 1u);
        EXPECT_LE(c, r);
      }
  // No measured worker at all: T is infinite and C is NaN; the rule falls back to 1.
  EXPECT_EQ(af_chunk(AfSums{}, ItemTime{1, 0}, 1000), 1u);
}

TEST(Chunking, AfProbeChunk) {
  // ceil(N / 64P) until a worker has measured kAfSamples chunks.
  EXPECT_EQ(kAfSamples, 2u);
  EXPECT_EQ(af_probe_chunk(10000, 2, 10000), 79u);  // ceil(10000 / 128)
  EXPECT_EQ(af_probe_chunk(10000, 2, 50), 50u);     // at most what remains
  EXPECT_EQ(af_probe_chunk(1, 4, 1), 1u);
  EXPECT_EQ(af_probe_chunk(256, 4, 256), 1u);
  EXPECT_EQ(af_probe_chunk(257, 4, 257), 2u);
}

TEST(Chunking, ItemTimerEstimatesMeanAndVarianceOfMadeUpChunks) {
  ItemTimer timer;
  EXPECT_EQ(timer.estimate().mean, 0.0);  // nothing measured
  EXPECT_EQ(timer.estimate().variance, 0.0);
  timer.record(0, 12345);  // an empty chunk is not a sample
  EXPECT_EQ(timer.chunks, 0u);
  EXPECT_EQ(timer.estimate().mean, 0.0);
  // Two chunks of 10 items, 100 ns and 300 ns: mu = 400 / 20 = 20 ns per item. The per-chunk
  // means are 10 and 30; sigma^2 = mean over chunks of n_k (t_k / n_k - mu)^2
  // = (10 x 100 + 10 x 100) / 2 = 1000.
  timer.record(10, 100);
  timer.record(10, 300);
  EXPECT_EQ(timer.chunks, 2u);
  EXPECT_DOUBLE_EQ(timer.estimate().mean, 20.0);
  EXPECT_DOUBLE_EQ(timer.estimate().variance, 1000.0);
  // Chunks of different sizes: 4 items in 40 ns (10 each), 16 items in 480 ns (30 each):
  // mu = 520 / 20 = 26; sigma^2 = (4 x 16^2 + 16 x 4^2) / 2 = (1024 + 256) / 2 = 640.
  ItemTimer mixed;
  mixed.record(4, 40);
  mixed.record(16, 480);
  EXPECT_DOUBLE_EQ(mixed.estimate().mean, 26.0);
  EXPECT_DOUBLE_EQ(mixed.estimate().variance, 640.0);
  // Equal rates: no variance.
  ItemTimer steady;
  for (std::uint64_t n : {1, 5, 100, 7}) steady.record(n, n * 250);
  EXPECT_DOUBLE_EQ(steady.estimate().mean, 250.0);
  EXPECT_NEAR(steady.estimate().variance, 0.0, 1e-6);
  // A 0 ns reading is measured, not "unmeasured": the mean is tiny but positive.
  ItemTimer instant;
  instant.record(1000, 0);
  EXPECT_GT(instant.estimate().mean, 0.0);
  EXPECT_EQ(instant.estimate().variance, 0.0);
}

// ---------------------------------------------------------------------------------------------
// paced_grain, static_chunk

TEST(Chunking, PacedGrainIsTheItemsOfTwentyMicroseconds) {
  EXPECT_EQ(kPacedGrainNanoseconds, 20000u);
  EXPECT_EQ(paced_grain(1000, 1000000), 20u);  // 1 us an item: 20 items
  EXPECT_EQ(paced_grain(1000, 20000), 1000u);  // 20 ns an item
  EXPECT_EQ(paced_grain(3, 30000), 2u);        // 10 us an item: 2
  EXPECT_EQ(paced_grain(1, 1000000000), 1u);   // slow items: never 0
  EXPECT_EQ(paced_grain(5, 0), 5u);            // nothing measured yet: what was run
  EXPECT_EQ(paced_grain(0, 0), 1u);
  EXPECT_EQ(paced_grain(UINT64_MAX, 1), std::uint64_t{1} << 60);  // no overflow
}

TEST(Chunking, StaticChunkDealsChunksRoundRobin) {
  // 10 items in chunks of 3 over 2 workers: [0,3) [3,6) [6,9) [9,10); worker 0 runs chunks 0 and
  // 2, worker 1 chunks 1 and 3.
  const auto expect_block = [](Block b, std::uint64_t first, std::uint64_t last) {
    EXPECT_EQ(b.first, first);
    EXPECT_EQ(b.last, last);
  };
  expect_block(static_chunk(10, 3, 2, 0, 0), 0, 3);
  expect_block(static_chunk(10, 3, 2, 0, 1), 6, 9);
  EXPECT_TRUE(static_chunk(10, 3, 2, 0, 2).empty());
  expect_block(static_chunk(10, 3, 2, 1, 0), 3, 6);
  expect_block(static_chunk(10, 3, 2, 1, 1), 9, 10);
  EXPECT_TRUE(static_chunk(10, 3, 2, 1, 2).empty());
  EXPECT_TRUE(static_chunk(10, 3, 2, 1, 1000).empty());
  // More workers than chunks: the last ones have none.
  EXPECT_TRUE(static_chunk(10, 3, 8, 5, 0).empty());
  // Every chunk index i goes to worker i % P as that worker's (i / P)-th chunk, and the chunks
  // tile the map.
  for (std::uint64_t n : {0, 1, 2, 9, 10, 11, 1000})
    for (std::uint64_t chunk : {1, 3, 7, 64, 5000})
      for (std::uint64_t p : {1, 2, 3, 8}) {
        SCOPED_TRACE("N " + std::to_string(n) + ", chunk " + std::to_string(chunk) + ", P " +
                     std::to_string(p));
        std::vector<int> seen(n, 0);
        for (std::uint64_t w = 0; w < p; ++w)
          for (std::uint64_t k = 0;; ++k) {
            const Block b = static_chunk(n, chunk, p, w, k);
            if (b.empty()) break;
            const std::uint64_t i = k * p + w;
            ASSERT_EQ(b.first, i * chunk);
            ASSERT_EQ(b.last, std::min(n, i * chunk + chunk));
            for (std::uint64_t x = b.first; x < b.last; ++x) ++seen[x];
          }
        for (std::uint64_t x = 0; x < n; ++x) ASSERT_EQ(seen[x], 1) << "item " << x;
      }
}

// ---------------------------------------------------------------------------------------------
// Schedule: names, parameters and argument checks of every kind

TEST(Chunking, ScheduleNamesAndParametersOfEveryKind) {
  struct Expected {
    Schedule schedule;
    Schedule::Kind kind;
    std::size_t parameter, second_parameter;
    const char* name;
  };
  using K = Schedule::Kind;
  const Expected all[] = {
      {Schedule::static_blocks(), K::static_blocks, 0, 0, "static_blocks"},
      {Schedule::static_chunked(3), K::static_chunked, 3, 0, "static_chunked(3)"},
      {Schedule::dynamic(64), K::dynamic, 64, 0, "dynamic(64)"},
      {Schedule::guided(), K::guided, 1, 0, "guided(1)"},
      {Schedule::guided(5), K::guided, 5, 0, "guided(5)"},
      {Schedule::trapezoid(), K::trapezoid, 0, 1, "trapezoid(auto, 1)"},
      {Schedule::trapezoid(0, 7), K::trapezoid, 0, 7, "trapezoid(auto, 7)"},
      {Schedule::trapezoid(50, 5), K::trapezoid, 50, 5, "trapezoid(50, 5)"},
      {Schedule::trapezoid(5, 5), K::trapezoid, 5, 5, "trapezoid(5, 5)"},
      {Schedule::factoring(), K::factoring, 0, 0, "factoring"},
      {Schedule::fixed_size(), K::fixed_size, 0, 0, "fixed_size"},
      {Schedule::adaptive_factoring(), K::adaptive_factoring, 0, 0, "adaptive_factoring"},
      {Schedule::work_stealing(), K::work_stealing, 0, 0, "work_stealing(auto)"},
      {Schedule::work_stealing(3), K::work_stealing, 3, 0, "work_stealing(3)"},
      {Schedule::adaptive_stealing(), K::adaptive_stealing, 0, 0, "adaptive_stealing"},
      {Schedule::python(), K::python, 0, 0, "python(auto)"},
      {Schedule::python(5), K::python, 5, 0, "python(5)"},
      {Schedule::automatic(), K::automatic, 0, 0, "automatic"},
  };
  for (const Expected& e : all) {
    SCOPED_TRACE(e.name);
    EXPECT_EQ(e.schedule.kind(), e.kind);
    EXPECT_EQ(e.schedule.parameter(), e.parameter);
    EXPECT_EQ(e.schedule.second_parameter(), e.second_parameter);
    EXPECT_EQ(e.schedule.name(), e.name);
  }
  // Two schedules are equal when kind and both parameters are.
  EXPECT_EQ(Schedule::python(0), Schedule::python());
  EXPECT_EQ(Schedule::trapezoid(0, 1), Schedule::trapezoid());
  EXPECT_NE(Schedule::trapezoid(50, 5), Schedule::trapezoid(50, 6));
  EXPECT_NE(Schedule::trapezoid(50, 5), Schedule::trapezoid(51, 5));
  EXPECT_NE(Schedule::python(5), Schedule::dynamic(5));
  EXPECT_NE(Schedule::static_chunked(5), Schedule::dynamic(5));
  EXPECT_NE(Schedule::factoring(), Schedule::fixed_size());
  EXPECT_NE(Schedule::adaptive_stealing(), Schedule::automatic());
}

TEST(Chunking, EveryKindIsInTheListThePoolTestsRun) {
  // Adding a Schedule::Kind without adding it to kEverySchedule would leave it out of every pool
  // test (map, recovery, errors, statistics).
  const auto last = static_cast<int>(Schedule::Kind::automatic);
  for (int k = 0; k <= last; ++k) {
    const auto kind = static_cast<Schedule::Kind>(k);
    EXPECT_TRUE(std::any_of(std::begin(forkpool_test::kEverySchedule),
                            std::end(forkpool_test::kEverySchedule),
                            [kind](const Schedule& s) { return s.kind() == kind; }))
        << "kind " << k << " is not in kEverySchedule";
  }
  // Their test names are distinct.
  std::set<std::string> names;
  for (const Schedule& s : forkpool_test::kEverySchedule)
    EXPECT_TRUE(names.insert(forkpool_test::schedule_test_name(s)).second) << s.name();
}

// The message of the std::invalid_argument that `make` throws; empty (and a failure) if none.
template <class Make>
std::string invalid_argument_message(Make make) {
  try {
    make();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::invalid_argument";
  return "";
}

TEST(Chunking, InvalidScheduleArgumentsThrowNamingTheArgument) {
  std::string what = invalid_argument_message([] { return Schedule::static_chunked(0); });
  EXPECT_CONTAINS(what, "static_chunked");
  EXPECT_CONTAINS(what, "chunk");
  what = invalid_argument_message([] { return Schedule::dynamic(0); });
  EXPECT_CONTAINS(what, "dynamic");
  EXPECT_CONTAINS(what, "chunk");
  what = invalid_argument_message([] { return Schedule::guided(0); });
  EXPECT_CONTAINS(what, "guided");
  EXPECT_CONTAINS(what, "min_chunk");
  // trapezoid: first below last, with both values in the message.
  what = invalid_argument_message([] { return Schedule::trapezoid(5, 10); });
  EXPECT_CONTAINS(what, "trapezoid");
  EXPECT_CONTAINS(what, "first = 5");
  EXPECT_CONTAINS(what, "last = 10");
  // trapezoid: last = 0, whatever first is.
  for (std::size_t first : {0, 1, 100}) {
    what = invalid_argument_message([first] { return Schedule::trapezoid(first, 0); });
    EXPECT_CONTAINS(what, "trapezoid");
    EXPECT_CONTAINS(what, "last");
  }
  // The boundaries that are valid.
  EXPECT_NO_THROW(Schedule::static_chunked(1));
  EXPECT_NO_THROW(Schedule::trapezoid(0, 1000));  // automatic first: last is lowered to it
  EXPECT_NO_THROW(Schedule::trapezoid(10, 10));
  EXPECT_NO_THROW(Schedule::python(0));
  EXPECT_NO_THROW(Schedule::work_stealing(0));
}

// ---------------------------------------------------------------------------------------------
// Claimer: one worker's side of every schedule (claimer.hpp), P claimers of one job taking
// turns in this thread, as the workers of a pool would if they ran one claim at a time.

class ClaimerRig {
 public:
  struct Claim {
    unsigned worker;
    UnitSpan span;
  };

  ClaimerRig(Schedule s, std::uint32_t units, unsigned workers)
      : rule_(make_claim_rule(s, units, workers, 1)), ranges_(workers), times_(workers) {
    const ScheduleState state{&counter_, ranges_.data(), times_.data()};
    reset_schedule_state(rule_, state);
    for (unsigned w = 0; w < workers; ++w)
      claimers_.push_back(std::make_unique<Claimer<>>(rule_, state, w));
  }

  Claimer<>& operator[](unsigned w) { return *claimers_[w]; }
  const SharedItemTime& time(unsigned w) const { return times_[w]; }

  // One claim of worker w; records that it cost cost_per_unit(w) ns a unit, if the schedule
  // measures.
  UnitSpan claim(unsigned w, std::uint64_t ns_per_unit = 100) {
    const UnitSpan s = claimers_[w]->next();
    if (!s.empty() && claimers_[w]->measured())
      claimers_[w]->record(s.size(), s.size() * ns_per_unit);
    return s;
  }

  // Every claim, the workers taking turns (a worker that finds nothing stops), worker w's units
  // costing ns_per_unit(w).
  template <class Cost>
  std::vector<Claim> round_robin(Cost ns_per_unit) {
    std::vector<Claim> out;
    std::vector<bool> done(claimers_.size(), false);
    for (bool any = true; any;) {
      any = false;
      for (unsigned w = 0; w < claimers_.size(); ++w) {
        if (done[w]) continue;
        const UnitSpan s = claim(w, ns_per_unit(w));
        if (s.empty()) {
          done[w] = true;
          continue;
        }
        any = true;
        out.push_back({w, s});
        if (out.size() > 2 * std::uint64_t{rule_.units} + 100) {
          ADD_FAILURE() << "more claims than units";
          return out;
        }
      }
    }
    return out;
  }
  std::vector<Claim> round_robin() {
    return round_robin([](unsigned) { return std::uint64_t{100}; });
  }

 private:
  ClaimRule rule_;
  ChunkCounter counter_;
  std::vector<ChunkRange> ranges_;
  std::vector<SharedItemTime> times_;
  std::vector<std::unique_ptr<Claimer<>>> claimers_;
};

std::vector<std::uint64_t> sizes(const std::vector<ClaimerRig::Claim>& claims) {
  std::vector<std::uint64_t> out;
  for (const auto& c : claims) out.push_back(c.span.size());
  return out;
}

// Empty if the claims cover [0, units) exactly once.
std::string tiling_faults(const std::vector<ClaimerRig::Claim>& claims, std::uint32_t units) {
  std::vector<int> seen(units, 0);
  for (const auto& c : claims)
    for (std::uint32_t u = c.span.first; u < c.span.last && u < units; ++u) ++seen[u];
  for (std::uint32_t u = 0; u < units; ++u)
    if (seen[u] != 1)
      return "unit " + std::to_string(u) + " claimed " + std::to_string(seen[u]) + "x";
  return "";
}

TEST(Claimer, CounterSchedulesHandOutThePublishedSequenceInClaimOrder) {
  struct Case {
    Schedule schedule;
    std::uint32_t units;
    unsigned workers;
    std::vector<std::uint64_t> expected;
  };
  std::vector<std::uint64_t> fac2;
  for (std::uint64_t c : {125, 63, 32, 16, 8, 4, 2}) fac2.insert(fac2.end(), 4, c);
  std::vector<std::uint64_t> mfsc(31, 3203);  // 31 x 3203 = 99293
  mfsc.push_back(707);
  std::vector<std::uint64_t> dyn(14, 7);
  dyn.push_back(2);
  const Case cases[] = {
      {Schedule::guided(), 100, 4, {25, 19, 14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1}},
      {Schedule::trapezoid(), 1000, 4, {125, 117, 109, 101, 93, 85, 77, 69, 61, 53, 45, 37, 28}},
      {Schedule::trapezoid(100, 10),
       1000,
       4,
       {100, 95, 90, 85, 80, 75, 70, 65, 60, 55, 50, 45, 40, 35, 30, 25}},
      {Schedule::factoring(), 1000, 4, fac2},
      {Schedule::fixed_size(), 100000, 2, mfsc},
      {Schedule::python(), 1000, 2, std::vector<std::uint64_t>(8, 125)},
      {Schedule::python(5), 12, 3, {5, 5, 2}},
      {Schedule::dynamic(7), 100, 3, dyn},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.schedule.name());
    ClaimerRig rig(c.schedule, c.units, c.workers);
    const auto claims = rig.round_robin();
    EXPECT_EQ(sizes(claims), c.expected);
    // In order from unit 0, each worker in turn.
    std::uint32_t next = 0;
    for (std::size_t k = 0; k < claims.size(); ++k) {
      EXPECT_EQ(claims[k].span.first, next) << "claim " << k;
      EXPECT_EQ(claims[k].worker, k % c.workers) << "claim " << k;
      next = claims[k].span.last;
    }
    // At least one compare-and-swap a chunk (exactly one on x86, where a weak CAS never fails
    // spuriously); nothing stolen.
    std::uint64_t chunks = 0;
    for (unsigned w = 0; w < c.workers; ++w) {
      const auto counts = rig[w].counts();
      EXPECT_GE(counts.operations, counts.chunks) << "worker " << w;
      EXPECT_EQ(counts.steal_attempts, 0u);
      EXPECT_EQ(counts.steals, 0u);
      chunks += counts.chunks;
    }
    EXPECT_EQ(chunks, c.expected.size());
  }
}

TEST(Claimer, StaticSchedulesClaimTheirOwnChunksWithoutSharedOperations) {
  ClaimerRig blocks(Schedule::static_blocks(), 10, 4);
  for (unsigned w = 0; w < 4; ++w) {
    const UnitSpan s = blocks.claim(w);
    EXPECT_EQ(s.first, static_block(10, 4, w).first);
    EXPECT_EQ(s.last, static_block(10, 4, w).last);
    EXPECT_TRUE(blocks.claim(w).empty());  // one block, once
    EXPECT_EQ(blocks[w].counts().chunks, 1u);
    EXPECT_EQ(blocks[w].counts().operations, 0u);
  }
  // static_chunked(3) over 10 units and 2 workers: worker 0 [0,3) [6,9), worker 1 [3,6) [9,10).
  ClaimerRig chunked(Schedule::static_chunked(3), 10, 2);
  const auto claims = chunked.round_robin();
  ASSERT_EQ(claims.size(), 4u);
  const std::uint32_t expected[][3] = {{0, 0, 3}, {1, 3, 6}, {0, 6, 9}, {1, 9, 10}};
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(claims[k].worker, expected[k][0]);
    EXPECT_EQ(claims[k].span.first, expected[k][1]);
    EXPECT_EQ(claims[k].span.last, expected[k][2]);
  }
  EXPECT_EQ(chunked[0].counts().operations + chunked[1].counts().operations, 0u);
  // An empty block (more workers than units) is no chunk.
  ClaimerRig few(Schedule::static_blocks(), 2, 4);
  EXPECT_TRUE(few.claim(3).empty());
  EXPECT_EQ(few[3].counts().chunks, 0u);
}

TEST(Claimer, WorkStealingTakesAnEighthOfItsOwnRangeThenStealsTheBackHalfOfAnother) {
  // work_stealing(1) over 64 units and 2 workers: blocks [0, 32) and [32, 64).
  ClaimerRig rig(Schedule::work_stealing(1), 64, 2);
  const UnitSpan first = rig.claim(0);  // own_take(32, 1) = 4
  EXPECT_EQ(first.first, 0u);
  EXPECT_EQ(first.last, 4u);
  // Worker 1 drains its own block, 1/8 of what is left at a time, from the front.
  std::uint32_t next = 32;
  while (next < 64) {
    const UnitSpan s = rig.claim(1);
    ASSERT_EQ(s.first, next);
    ASSERT_EQ(s.size(), own_take(64 - next, 1));
    next = s.last;
  }
  EXPECT_EQ(rig[1].counts().steals, 0u);
  // Then it steals the back half of worker 0's [4, 32): [18, 32), and runs it from the front.
  const UnitSpan stolen = rig.claim(1);
  EXPECT_EQ(rig[1].counts().steals, 1u);
  EXPECT_EQ(stolen.first, 18u);
  EXPECT_EQ(stolen.last, 18u + own_take(14, 1));
  // Worker 0 carries on with its own front, [4, 18).
  const UnitSpan own = rig.claim(0);
  EXPECT_EQ(own.first, 4u);
  EXPECT_EQ(own.last, 4u + own_take(14, 1));
  // Without contention: a CAS per chunk (or more: a weak CAS may fail spuriously) and one per
  // steal attempt; every attempt succeeded.
  for (unsigned w = 0; w < 2; ++w) {
    const auto c = rig[w].counts();
    EXPECT_GE(c.operations, c.chunks + c.steal_attempts) << "worker " << w;
    EXPECT_EQ(c.steal_attempts, c.steals) << "worker " << w;
  }
}

TEST(Claimer, AdaptiveFactoringProbesThenSizesChunksByTheMeasuredRates) {
  // Three workers whose units cost 32, 64 and 64 ns: T = (1/32 + 1/64 + 1/64)^-1 = 16, and
  // without variance C_i = 2 T R / 2 mu_i: R/2 for worker 0, R/4 for the others.
  ClaimerRig rig(Schedule::adaptive_factoring(), 9600, 3);
  const std::uint64_t cost[] = {32, 64, 64};
  // Two probe chunks each of ceil(9600 / 64P) = 50 units, while the estimates are made.
  for (int round = 0; round < 2; ++round)
    for (unsigned w = 0; w < 3; ++w) EXPECT_EQ(rig.claim(w, cost[w]).size(), 50u);
  for (unsigned w = 0; w < 3; ++w) {
    EXPECT_EQ(rig.time(w).mean.load(), static_cast<double>(cost[w])) << "worker " << w;
    EXPECT_EQ(rig.time(w).variance.load(), 0.0) << "worker " << w;
  }
  // R = 9300: worker 0 takes 4650; R = 4650: worker 1 takes 1162.5 -> 1163; R = 3487: worker 2
  // takes 871.75 -> 872.
  EXPECT_EQ(rig.claim(0, cost[0]).size(), 4650u);
  EXPECT_EQ(rig.claim(1, cost[1]).size(), 1163u);
  EXPECT_EQ(rig.claim(2, cost[2]).size(), 872u);
  // Equal rates over two workers: R/2.
  ClaimerRig even(Schedule::adaptive_factoring(), 10000, 2);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(even.claim(static_cast<unsigned>(k % 2), 128).size(), 79u);
  EXPECT_EQ(even.claim(0, 128).size(), 4842u);  // (10000 - 316) / 2
  EXPECT_EQ(even.claim(1, 128).size(), 2421u);
}

// A worker that has measured its probes before the others have measured anything (they started
// late: woken later, or descheduled) must still leave them their share: about R / P at most, what
// AF gives P workers of equal rates. The AF formula over the measured workers alone has one
// worker of rate mu, T = mu, and without variance C = R: the first worker to finish its probes
// claimed the whole rest of the map and the others ran nothing (seen in the pool as
// Balancing/EveryWorkerTakesPart.WithEnoughWork/adaptive_factoring_P3 and _P4), until AfSums::over
// counted the workers not measured yet as average ones.
TEST(Claimer, AdaptiveFactoringLeavesWorkersThatHaveNotMeasuredYetTheirShare) {
  for (unsigned p : {2u, 4u, 8u}) {
    SCOPED_TRACE("P " + std::to_string(p));
    ClaimerRig rig(Schedule::adaptive_factoring(), 10000, p);
    const std::uint64_t probe = ceil_div(10000, 64 * p);
    EXPECT_EQ(rig.claim(0).size(), probe);
    EXPECT_EQ(rig.claim(0).size(), probe);
    const std::uint64_t rest = 10000 - 2 * probe;
    const std::uint64_t third = rig.claim(0).size();
    EXPECT_LE(third, ceil_div(rest, p)) << "worker 0 took " << third << " of the " << rest
                                        << " units left, with " << p - 1 << " workers yet to start";
  }
}

// automatic(): "from the rate it sets the grain, the smallest part a thief may take from it"
// (schedule.hpp): the victim's grain, from the rate of the victim's items, bounds what a thief
// takes. Worker 0's units cost 100 us (a grain of 1 unit); worker 1's cost 1 ns (a grain of
// 20000 units). When worker 1 has run its own block and steals from worker 0's [1, 500), it may
// take the back half, [250, 500), and worker 0 keeps [1, 250). Sizing the steal by the thief's
// own grain instead takes all of it: the slow worker is left with nothing, and has to steal its
// own units back.
TEST(Claimer, AutomaticStealsByTheVictimsGrainNotTheThiefs) {
  ClaimerRig rig(Schedule::automatic(), 1000, 2);
  const UnitSpan first = rig.claim(0, 100000);
  EXPECT_EQ(first.first, 0u);
  EXPECT_EQ(first.last, 1u);
  UnitSpan s{};
  int claims = 0;
  do {
    s = rig.claim(1, 1);
  } while (!s.empty() && s.first >= 500 && ++claims < 1000);
  ASSERT_FALSE(s.empty());
  ASSERT_LT(s.first, 500u) << "worker 1 never stole";
  EXPECT_EQ(rig[1].counts().steals, 1u);
  EXPECT_GE(s.first, 250u) << "worker 1 took [" << s.first << ", " << s.last
                           << ") of worker 0's [1, 500)";
  const UnitSpan own = rig.claim(0, 100000);
  EXPECT_EQ(own.first, 1u) << "worker 0 has nothing left of its own block";
  EXPECT_EQ(rig[0].counts().steals, 0u);
}

// A worker that has measured nothing has not started (a late wake-up): a thief sizes its steal
// from it by its own grain. Worker 1's units cost 1 ns (a grain of 20000 units), so once its own
// block [8, 16) is run it takes all of worker 0's [0, 8) in one steal, not 4, 2, 1 and 1 units
// in four, as a tiny map did when the thief fell back to a grain of one unit.
TEST(Claimer, AutomaticTakesAllOfAnUnstartedWorkersRangeUnderTheThiefsGrain) {
  ClaimerRig rig(Schedule::automatic(), 16, 2);
  std::vector<UnitSpan> claims;
  for (UnitSpan s = rig.claim(1, 1); !s.empty(); s = rig.claim(1, 1)) claims.push_back(s);
  ASSERT_FALSE(claims.empty());
  EXPECT_EQ(rig[1].counts().steals, 1u);
  std::uint32_t stolen = 0;
  for (const UnitSpan s : claims) stolen += s.last <= 8 ? s.size() : 0;
  EXPECT_EQ(stolen, 8u) << "worker 1 ran " << stolen << " of worker 0's 8 units";
  EXPECT_TRUE(rig.claim(0, 1).empty()) << "worker 0 found units left in its range";
}

TEST(Claimer, PacedSchedulesClaimOnlyTheNextPieceAtTheMeasuredRate) {
  for (Schedule s : {Schedule::adaptive_stealing(), Schedule::automatic()}) {
    SCOPED_TRACE(s.name());
    ClaimerRig rig(s, 1000000, 1);
    EXPECT_TRUE(rig[0].paced());
    EXPECT_TRUE(rig[0].measured());
    // One unit first; fast units grow the piece kPieceGrowth times a claim.
    EXPECT_EQ(rig.claim(0, 1000).size(), 1u);
    EXPECT_EQ(rig.claim(0, 1000).size(), kPieceGrowth);
    EXPECT_EQ(rig.claim(0, 1000).size(), kPieceGrowth * kPieceGrowth);
    // Units of kPieceNanoseconds / 10: the next piece is 10 units.
    EXPECT_EQ(rig.claim(0, kPieceNanoseconds / 10).size(),
              kPieceGrowth * kPieceGrowth * kPieceGrowth);
    EXPECT_EQ(rig.claim(0, kPieceNanoseconds / 10).size(), 10u);
  }
  // The others neither pace nor (but adaptive factoring) measure.
  for (const Schedule& s : forkpool_test::kEverySchedule) {
    ClaimerRig rig(s, 100, 2);
    const bool paced =
        s.kind() == Schedule::Kind::adaptive_stealing || s.kind() == Schedule::Kind::automatic;
    EXPECT_EQ(rig[0].paced(), paced) << s.name();
    EXPECT_EQ(rig[0].measured(), paced || s.kind() == Schedule::Kind::adaptive_factoring)
        << s.name();
  }
}

// A paced worker's claimed piece cannot be stolen, so near the end of its range it claims at most
// 1/8 of what is left (never under the grain, its items of kPacedGrainNanoseconds): an idle worker
// finds most of the tail still in the range, to steal. Seen in the pool: a map of 0.25 ms over two
// workers ran as unbalanced as static_blocks, the last piece of each block taking the whole rest.
TEST(Claimer, PacedSchedulesLeaveTheTailOfTheirRangeToSteal) {
  for (Schedule s : {Schedule::adaptive_stealing(), Schedule::automatic()}) {
    SCOPED_TRACE(s.name());
    // Units of 1 ns: the grain is 20000 units, and a piece of a millisecond would be 10^6.
    const std::uint32_t units = 400000;
    ClaimerRig rig(s, units, 1);
    std::uint64_t next = 0, piece = 1, claims = 0;
    for (UnitSpan c = rig.claim(0, 1); !c.empty(); c = rig.claim(0, 1), ++claims) {
      ASSERT_EQ(c.first, next);
      const std::uint64_t left = units - next;
      const std::uint64_t grain = next == 0 ? 1 : 20000;  // nothing measured yet: 1
      EXPECT_EQ(c.size(), paced_take(left, piece, grain)) << "at unit " << next;
      EXPECT_LE(c.size(), std::max(grain, ceil_div(left, 8))) << "at unit " << next;
      piece = next_piece(c.size(), c.size());
      next = c.last;
    }
    EXPECT_EQ(next, units);
    // 1 + 4 + ... + 4^7 = 21845 units grow the piece; the other 378155 go about 1/8 at a time
    // down to 8 grains, then a grain at a time.
    EXPECT_LE(claims, 40u);
  }
}

TEST(Claimer, EveryScheduleClaimsEveryUnitOnceTakingTurns) {
  for (const Schedule& s : forkpool_test::kEverySchedule)
    for (unsigned p : {1u, 2u, 3u, 7u})
      for (std::uint32_t units : {0u, 1u, 5u, 1000u, 4099u}) {
        SCOPED_TRACE(s.name() + ", P " + std::to_string(p) + ", units " + std::to_string(units));
        ClaimerRig rig(s, units, p);
        // Worker w's units seem to cost w + 1 times as much: the adaptive rules see unequal rates.
        const auto claims =
            rig.round_robin([](unsigned w) { return std::uint64_t{100} * (w + 1); });
        ASSERT_EQ(tiling_faults(claims, units), "");
        std::uint64_t chunks = 0;
        for (unsigned w = 0; w < p; ++w) {
          const auto c = rig[w].counts();
          chunks += c.chunks;
          EXPECT_LE(c.steals, c.steal_attempts);
          if (forkpool_test::static_schedule(s)) {
            EXPECT_EQ(c.operations, 0u);
          } else if (forkpool_test::counter_schedule(s)) {
            EXPECT_GE(c.operations, c.chunks);
          } else {
            EXPECT_GE(c.operations, c.chunks + c.steal_attempts);
          }
        }
        EXPECT_EQ(chunks, claims.size());
      }
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
