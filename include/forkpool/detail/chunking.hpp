// The chunk-size rules, as pure functions of (items or units remaining, P, parameters), so that
// they can be tested on their own and reused by anything that simulates a schedule.
// Every function returns a size in [1, remaining] when remaining >= 1.
// The tuning constants can be overridden when forkpool itself is built, e.g.
// -DCMAKE_CXX_FLAGS=-DFORKPOOL_OWN_TAKE_DIVISOR=16 (the library and its users must agree).
#pragma once

#include <algorithm>
#include <cstdint>

namespace forkpool::detail {

// Work stealing with an automatic grain aims at this many grains per worker: few enough that the
// per-chunk cost (one CAS and one indirect call, ~20 ns) is invisible, many enough that the last
// grain of a worker is a small part of its share (under 0.5% of it).
#ifndef FORKPOOL_AUTO_GRAINS_PER_WORKER
#define FORKPOOL_AUTO_GRAINS_PER_WORKER 256
#endif
inline constexpr std::uint64_t kAutoGrainsPerWorker = FORKPOOL_AUTO_GRAINS_PER_WORKER;
// A worker takes 1/kOwnTakeDivisor of its own remaining range at a time (never below the grain):
// large chunks while there is much left, small ones near the end where balance is decided.
#ifndef FORKPOOL_OWN_TAKE_DIVISOR
#define FORKPOOL_OWN_TAKE_DIVISOR 8
#endif
inline constexpr std::uint64_t kOwnTakeDivisor = FORKPOOL_OWN_TAKE_DIVISOR;
// A worker runs each chunk it claims in pieces that take about kPieceNanoseconds each, and
// between pieces it commits its progress and checks whether the map was stopped (an exception in
// f, Pool::cancel(), a deadline). So a map stops about a millisecond after the items running
// when it was stopped, whatever the schedule's chunk sizes, a dead worker loses at most a piece's
// work, and fast items still cost one indirect call per million or so, not one per few items.
#ifndef FORKPOOL_PIECE_NANOSECONDS
#define FORKPOOL_PIECE_NANOSECONDS 1000000
#endif
inline constexpr std::uint64_t kPieceNanoseconds = FORKPOOL_PIECE_NANOSECONDS;
// A piece grows at most this many times over the last one, from one item at the start of a job:
// one slow item never has to wait behind a large first piece.
inline constexpr std::uint64_t kPieceGrowth = 4;

constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return a / b + (a % b != 0); }

struct Block {
  std::uint64_t first, last;  // [first, last)
  constexpr bool empty() const { return first >= last; }
};

// Block w of `count` items split into `parts` near-equal contiguous blocks (the first
// count % parts blocks are one longer).
constexpr Block static_block(std::uint64_t count, std::uint64_t parts, std::uint64_t w) {
  const std::uint64_t q = count / parts, r = count % parts;
  const std::uint64_t first = w * q + std::min(w, r);
  return {first, first + q + (w < r ? 1 : 0)};
}

// The next piece, in items, after a piece of `items` items took `nanoseconds`: aims at
// kPieceNanoseconds at the rate just measured, growing at most kPieceGrowth times; at least 1.
constexpr std::uint64_t next_piece(std::uint64_t items, std::uint64_t nanoseconds) {
  const std::uint64_t most = items > UINT64_MAX / kPieceGrowth ? UINT64_MAX : items * kPieceGrowth;
  if (nanoseconds * kPieceGrowth <= kPieceNanoseconds) return most;
  const double aimed = static_cast<double>(items) * static_cast<double>(kPieceNanoseconds) /
                       static_cast<double>(nanoseconds);
  return aimed < 1 ? 1 : std::min(most, static_cast<std::uint64_t>(aimed));
}

// GSS: ceil(R / P), at least min_chunk, at most R.
constexpr std::uint64_t guided_chunk(std::uint64_t remaining, std::uint64_t workers,
                                     std::uint64_t min_chunk) {
  return std::min(remaining, std::max(min_chunk, ceil_div(remaining, workers)));
}

// The grain work_stealing(0) uses for `count` units over `workers` workers.
constexpr std::uint64_t auto_grain(std::uint64_t count, std::uint64_t workers) {
  return std::max<std::uint64_t>(1, count / (workers * kAutoGrainsPerWorker));
}

// What an owner takes from the front of its own range of `remaining` units.
constexpr std::uint64_t own_take(std::uint64_t remaining, std::uint64_t grain) {
  return std::min(remaining, std::max(grain, ceil_div(remaining, kOwnTakeDivisor)));
}

// What a thief takes from the back of a victim's range of `remaining` units: the back half,
// rounded down, or everything when halving would leave a piece under the grain. (Not
// `remaining < 2 * grain`: that wraps for a grain of 2^63 or more, and a steal of 0 units would
// spin.)
constexpr std::uint64_t steal_amount(std::uint64_t remaining, std::uint64_t grain) {
  return remaining / 2 < grain ? remaining : remaining / 2;
}

}  // namespace forkpool::detail
