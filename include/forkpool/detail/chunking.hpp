// The chunk-size rules, as pure functions of (items or units remaining, P, parameters), so that
// they can be tested on their own and reused by anything that simulates a schedule.
// Every function returns a size in [1, remaining] when remaining >= 1.
// The tuning constants can be overridden when forkpool itself is built, e.g.
// -DCMAKE_CXX_FLAGS=-DFORKPOOL_OWN_TAKE_DIVISOR=16 (the library and its users must agree).
#pragma once

#include <algorithm>
#include <cmath>
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

// Worker w's k-th chunk under static_chunked(chunk): chunk k * P + w of the map's chunks of
// `chunk`; empty past the end. With a `stride` s > 1, only every s-th chunk of the map is dealt
// out (chunk (k * P + w) * s): the rest of a dead worker's chunks, run again (recovery.hpp).
constexpr Block static_chunk(std::uint64_t count, std::uint64_t chunk, std::uint64_t workers,
                             std::uint64_t w, std::uint64_t k, std::uint64_t stride = 1) {
  const std::uint64_t lane = ceil_div(ceil_div(count, chunk), stride);  // chunks dealt out
  const std::uint64_t j = k * workers + w;
  if (k >= lane || j >= lane) return {count, count};
  const std::uint64_t i = j * stride;
  return {i * chunk, std::min(count, i * chunk + chunk)};
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

// ---- Self-scheduling rules: the size of the next chunk claimed from the shared counter, given
// `index`, the number of chunks claimed before it, and `remaining`, the units left (>= 1).

// GSS: ceil(R / P), at least min_chunk, at most R.
constexpr std::uint64_t guided_chunk(std::uint64_t remaining, std::uint64_t workers,
                                     std::uint64_t min_chunk) {
  return std::min(remaining, std::max(min_chunk, ceil_div(remaining, workers)));
}

// TSS's constants for a map of `count` units: chunk sizes fall from `first` by `step` a chunk,
// never below `last`.
struct TrapezoidRule {
  std::uint64_t first, last, step;
};

// first = 0 means the paper's N / (2P). last is at most first.
constexpr TrapezoidRule trapezoid_rule(std::uint64_t count, std::uint64_t workers,
                                       std::uint64_t first, std::uint64_t last) {
  const std::uint64_t f = std::max<std::uint64_t>(1, first != 0 ? first : count / (2 * workers));
  const std::uint64_t l = std::min(std::max<std::uint64_t>(1, last), f);
  const std::uint64_t chunks = ceil_div(2 * count, f + l);  // n = ceil(2N / (F + L))
  return {f, l, chunks > 1 ? (f - l) / (chunks - 1) : 0};
}

// TSS: chunk `index` is first - index * step, at least last, at most R.
constexpr std::uint64_t trapezoid_chunk(const TrapezoidRule& rule, std::uint64_t index,
                                        std::uint64_t remaining) {
  const std::uint64_t fall_room = rule.first - rule.last;
  const std::uint64_t size = rule.step != 0 && index <= fall_room / rule.step
                                 ? rule.first - index * rule.step
                                 : (rule.step == 0 ? rule.first : rule.last);
  return std::min(remaining, std::max(rule.last, size));
}

// FAC2: chunk `index` belongs to batch k = index / P, whose chunks are ceil(N / (2^(k+1) P)).
constexpr std::uint64_t factoring_chunk(std::uint64_t count, std::uint64_t workers,
                                        std::uint64_t index, std::uint64_t remaining) {
  const std::uint64_t batch = index / workers;
  // ceil(ceil(N / P) / 2^(k+1)) == ceil(N / (P 2^(k+1))), without the overflow of P 2^(k+1).
  const std::uint64_t size =
      batch >= 63 ? 1 : ceil_div(ceil_div(count, workers), std::uint64_t{1} << (batch + 1));
  return std::min(remaining, std::max<std::uint64_t>(1, size));
}

// mFSC: floor(0.55 + T ln 2 / ln T), T = ceil(N / P); 1 when T <= 1.
inline std::uint64_t fixed_size_chunk(std::uint64_t count, std::uint64_t workers) {
  const std::uint64_t t = ceil_div(count, workers);
  if (t <= 1) return 1;
  const double td = static_cast<double>(t);
  return std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(std::floor(0.55 + td * std::log(2.0) / std::log(td))));
}

// Python's Pool.map: divmod(N, 4P), plus one if there is a remainder; at least 1.
constexpr std::uint64_t python_chunksize(std::uint64_t count, std::uint64_t workers) {
  return std::max<std::uint64_t>(1, ceil_div(count, 4 * workers));
}

// ---- Adaptive factoring

// A worker's estimate of its items' run time, in nanoseconds per item (mean 0: not measured).
struct ItemTime {
  double mean = 0;
  double variance = 0;
};

// What a worker has measured: per chunk k, its items n_k and time t_k. The mean is sum t / sum n.
// Each chunk's mean time per item t_k / n_k is a sample whose variance is sigma^2 / n_k, so
// sigma^2 is estimated as the mean over chunks of n_k (t_k / n_k - mu)^2
// = (sum t_k^2 / n_k - mu sum t_k) / chunks.
struct ItemTimer {
  std::uint64_t chunks = 0;
  double items = 0, nanoseconds = 0, squares = 0;

  void record(std::uint64_t n, std::uint64_t ns) {
    if (n == 0) return;
    const double t = static_cast<double>(ns);
    ++chunks;
    items += static_cast<double>(n);
    nanoseconds += t;
    squares += t * t / static_cast<double>(n);
  }
  ItemTime estimate() const {
    if (chunks == 0 || items == 0) return {};
    const double mean = std::max(nanoseconds / items, 1e-3);  // a 0 ns reading is not "unmeasured"
    return {mean, std::max(0.0, (squares - mean * nanoseconds) / static_cast<double>(chunks))};
  }
};

// AF measures this many chunks of a worker before it trusts its estimate; until then the worker
// claims probe chunks of ceil(N / (kAfProbeDivisor P)).
inline constexpr std::uint64_t kAfSamples = 2;
inline constexpr std::uint64_t kAfProbeDivisor = 64;

constexpr std::uint64_t af_probe_chunk(std::uint64_t count, std::uint64_t workers,
                                       std::uint64_t remaining) {
  return std::min(remaining, ceil_div(count, kAfProbeDivisor * workers));
}

// The sums over the measured workers j that AF needs: D = sum_j sigma_j^2 / mu_j and
// 1 / T = sum_j 1 / mu_j.
struct AfSums {
  double d = 0, speed = 0;
  std::uint64_t measured = 0;
  void add(ItemTime t) {
    if (t.mean <= 0) return;  // not measured yet
    d += t.variance / t.mean;
    speed += 1 / t.mean;
    ++measured;
  }
  // The sums over all `workers`, the ones not measured yet taken to be like the average measured
  // one. Without this, a worker that sees only its own estimate would claim everything left.
  AfSums over(std::uint64_t workers) const {
    if (measured == 0 || measured >= workers) return *this;
    const double scale = static_cast<double>(workers) / static_cast<double>(measured);
    return {d * scale, speed * scale, workers};
  }
};

// AF (Banicescu & Liu 2000): C_i = (D + 2TR - sqrt(D^2 + 4DTR)) / (2 mu_i), where `self` is
// worker i's own (measured) estimate and `sums` include it. At least 1, at most R.
inline std::uint64_t af_chunk(AfSums sums, ItemTime self, std::uint64_t remaining) {
  const double d = sums.d, t = 1 / sums.speed, r = static_cast<double>(remaining);
  const double c = (d + 2 * t * r - std::sqrt(d * d + 4 * d * t * r)) / (2 * self.mean);
  if (!(c >= 1)) return 1;  // also NaN
  return c >= r ? remaining : static_cast<std::uint64_t>(std::ceil(c));
}

// ---- Work stealing rules

// adaptive_stealing and automatic: the grain a worker sets once it has measured `items` items in
// `nanoseconds`: the items of about kPacedGrainNanoseconds, at least 1. Near the end of its range
// a paced worker claims pieces no smaller than this (paced_take), and automatic() also lets a
// thief take no less of its range.
inline constexpr std::uint64_t kPacedGrainNanoseconds = 20000;
constexpr std::uint64_t paced_grain(std::uint64_t items, std::uint64_t nanoseconds) {
  if (nanoseconds == 0) return std::max<std::uint64_t>(1, items);
  const double g = static_cast<double>(items) * static_cast<double>(kPacedGrainNanoseconds) /
                   static_cast<double>(nanoseconds);
  return g < 1 ? 1 : g > 1e18 ? std::uint64_t{1} << 60 : static_cast<std::uint64_t>(g);
}

// The grain work_stealing(0) uses for `count` units over `workers` workers.
constexpr std::uint64_t auto_grain(std::uint64_t count, std::uint64_t workers) {
  return std::max<std::uint64_t>(1, count / (workers * kAutoGrainsPerWorker));
}

// What an owner takes from the front of its own range of `remaining` units.
constexpr std::uint64_t own_take(std::uint64_t remaining, std::uint64_t grain) {
  return std::min(remaining, std::max(grain, ceil_div(remaining, kOwnTakeDivisor)));
}

// What a paced worker (adaptive_stealing, automatic) takes from the front of its own range of
// `remaining` units: its next piece (next_piece), but never more than own_take(remaining, grain).
// A piece, once claimed, cannot be stolen; without that bound the last piece of a range is up to
// a millisecond of work that no idle worker can share, and a map of a millisecond or less runs
// unbalanced.
constexpr std::uint64_t paced_take(std::uint64_t remaining, std::uint64_t piece,
                                   std::uint64_t grain) {
  return std::min(piece, own_take(remaining, grain));
}

// What a thief takes from the back of a victim's range of `remaining` units: the back half,
// rounded down, or everything when halving would leave a piece under the grain. (Not
// `remaining < 2 * grain`: that wraps for a grain of 2^63 or more, and a steal of 0 units would
// spin.)
constexpr std::uint64_t steal_amount(std::uint64_t remaining, std::uint64_t grain) {
  return remaining / 2 < grain ? remaining : remaining / 2;
}

}  // namespace forkpool::detail
