// The scheduler: how the workers of a pool share out one map, with no lock anywhere. These are
// the claim operations each schedule's workers run (detail::Claimer in claimer.hpp picks them for
// a schedule); they touch nothing but the shared atomics, so the thread-based stress tests
// (tests/test_chunk_range_stress.cpp, under TSan) run exactly the code the worker processes run,
// and the simulator (lib/simulator.cpp) runs it too. lib/scheduler.cpp drives them for a job.
//
// A map is the index range [first, first + count), cut into at most 2^32 - 1 units (one item
// each unless the map is larger). Every schedule hands out half-open chunks of units; each chunk
// is claimed by exactly one worker, once. The chunk sizes are the pure rules of chunking.hpp.
//
//  static_blocks,  Nothing shared: worker w runs block w of P near-equal blocks, or chunks
//  static_chunked  w, w + P, w + 2P, ... of c units (static_block(), static_chunk()).
//  self-scheduling dynamic, python, fixed_size (constant chunks): one shared ChunkCounter whose
//                  word counts the chunks handed out; a claim is one fetch_add, which never
//                  fails, so dynamic(1) costs one cache line transfer per item, as OpenMP's
//                  schedule(dynamic, 1) does. guided (GSS), trapezoid (TSS), factoring (FAC2),
//                  adaptive_factoring (AF): the counter's word holds the next unit and the
//                  number of chunks claimed so far (TSS and FAC2 size a chunk by its index). A
//                  claim is one CAS of the word, sized by the rule from (index, units left) and,
//                  for AF, the workers' published estimates of their items' mean and variance
//                  (Banicescu & Liu 2000).
//  work stealing   work_stealing, adaptive_stealing, automatic: each worker owns a ChunkRange,
//                  initialised to its static block. It takes chunks from the front
//                  (work_stealing: own_take(), 1/8 of what is left, at least the grain;
//                  adaptive_stealing and automatic: only the piece it is about to run, about a
//                  millisecond of work at the rate it measured, so the range is cut only when a
//                  thief comes for it: rayon's thief splitting, oneTBB's auto partitioner; near
//                  the end of the range, at most own_take() with a grain of about 20 us) and,
//                  when its range is empty, steals the back half of a victim's (steal-half,
//                  Hendler & Shavit, PODC 2002), moves it into its own range, and goes on from
//                  there; its own range is then stealable in turn (Stealer). Victims: the last
//                  victim that paid off first (sticky), then every other worker from a random
//                  start (as in taskflow's executor and rayon). A worker stops when one pass over
//                  all the others finds every range empty and no CAS was lost to contention.
//                  Units only leave ranges, and a stolen range is invisible only while it moves
//                  from the victim's word to the thief's, where the thief itself runs it; so a
//                  worker that stops early can only leave work to a worker that is still running.
//                  A uniform map costs about 8 ln(N / (P * grain)) CASes per worker and no steal.
//
// Every CAS claim announces the span it is about to take just before its CAS (NoAnnounce in
// chunk_range.hpp): the pool records it, which is how it finds the items a dead worker lost. A
// fetch_add claim cannot be announced before it (its span is what it returns); it is recorded
// right after, and the pool finds a chunk whose worker died in between from what the records of
// all the workers lack (recovery.hpp).
//
// Memory order: a claim's CAS is a release on success, only so that the announce made before it
// cannot be reordered after it (a worker killed right after a claim has announced it); every
// other access, the fetch_add included, is relaxed. Claims hand out indices and nothing else is
// published through them (see chunk_range.hpp); the job they index into is published by the pool's
// generation counter (release/acquire) before any claim, and results travel back through each
// worker's commit and finished words (release/acquire), both in lib/.
#pragma once

#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace forkpool::detail {

// The shared counter of the self-scheduling schedules, in one 64-bit word. Constant chunks
// (claim_constant): the number of chunks handed out, chunk k being units [k c, (k + 1) c).
// Otherwise (claim): the next unclaimed unit in the low 32 bits, the number of chunks claimed so
// far in the high 32 (the chunk index that TSS and FAC2 need; it saturates, which no rule
// notices: both have reached their smallest chunk long before 2^32 chunks); one compare-and-swap
// claims a chunk and counts it. A job uses one of the two.
class ChunkCounter {
 public:
  static constexpr std::uint32_t kMaxIndex = 0xFFFFFFFFu;

  void reset() noexcept { word_.store(0, std::memory_order_relaxed); }
  // The first unit no claim has taken: with claim(), and with claim_constant() of `chunk`.
  std::uint32_t next_unit() const noexcept {
    return static_cast<std::uint32_t>(word_.load(std::memory_order_relaxed));
  }
  std::uint32_t next_unit(std::uint32_t units, std::uint64_t chunk) const noexcept {
    const std::uint64_t handed_out = word_.load(std::memory_order_relaxed);
    return handed_out >= ceil_div(units, chunk) ? units
                                                : static_cast<std::uint32_t>(handed_out * chunk);
  }

  // Claims the next chunk of `chunk` units: returns its index k, units [k chunk, (k + 1) chunk)
  // (the last one shorter); none are left once k >= ceil(units / chunk). A worker stops at its
  // first empty claim, so the word never passes the number of chunks plus the number of workers.
  [[nodiscard]] std::uint64_t claim_index() noexcept {
    return word_.fetch_add(1, std::memory_order_relaxed);
  }

  // claim_index() as the span of units it claims, passed to record(); empty, and nothing
  // recorded, when none are left.
  template <class Record = NoAnnounce>
  [[nodiscard]] UnitSpan claim_constant(std::uint32_t units, std::uint64_t chunk,
                                        Record record = {}) noexcept {
    const std::uint64_t first = claim_index() * chunk;
    if (first >= units) return {units, units};
    const UnitSpan taken{static_cast<std::uint32_t>(first),
                         static_cast<std::uint32_t>(std::min<std::uint64_t>(first + chunk, units))};
    record.record(taken);
    return taken;
  }

  // Claims the next size_for(index, R) of the R units left of `units` (1 <= size <= R); empty
  // when none are left. A compare-and-swap rather than a fetch_add, so that the chunk can be
  // announced before it is taken (see NoAnnounce).
  //
  // `guess` is a value the word had (0 at the job's start; the caller passes back what the last
  // claim returned in it), tried without reading the word first: a load then a compare-and-swap
  // moves the cache line between workers twice (shared, then exclusive), a compare-and-swap alone
  // once, and when the guess is stale the failed one returns the fresh value with the line, so the
  // retry usually succeeds at once. The word only grows, so a guess that says "none left" is true.
  template <class SizeFor, class Announce = NoAnnounce>
  [[nodiscard]] UnitSpan claim(std::uint32_t units, SizeFor size_for, Announce announce,
                               std::uint64_t& guess) noexcept {
    std::uint64_t seen = guess;
    for (;;) {
      const auto next = static_cast<std::uint32_t>(seen);
      const auto index = static_cast<std::uint32_t>(seen >> 32);
      if (next >= units) return {units, units};
      const auto n = static_cast<std::uint32_t>(size_for(std::uint64_t{index}, units - next));
      const UnitSpan taken{next, next + n};
      announce(taken);
      const std::uint64_t after = taken.last | std::uint64_t{index == kMaxIndex ? index : index + 1}
                                                   << 32;
      if (word_.compare_exchange_weak(seen, after, std::memory_order_release,
                                      std::memory_order_relaxed)) {
        guess = after;
        return taken;
      }
    }
  }
  template <class SizeFor, class Announce = NoAnnounce>
  [[nodiscard]] UnitSpan claim(std::uint32_t units, SizeFor size_for,
                               Announce announce = {}) noexcept {
    std::uint64_t guess = word_.load(std::memory_order_relaxed);
    return claim(units, size_for, announce, guess);
  }

 private:
  std::atomic<std::uint64_t> word_{0};
};

// What one worker measured of its items, published for the others (relaxed: an estimate a little
// out of date only changes a chunk size). adaptive_factoring: the mean and variance of an item's
// run time; automatic: the smallest part of this worker's range a thief may take (0: not measured
// yet, and the thief takes at least its own).
struct alignas(64) SharedItemTime {
  std::atomic<double> mean{0};
  std::atomic<double> variance{0};
  std::atomic<std::uint64_t> steal_grain{0};
  static_assert(std::atomic<double>::is_always_lock_free);
};

// One worker's side of work stealing over the P workers' ranges.
template <class Announce = NoAnnounce>
class Stealer {
 public:
  // With `victim_grains`, a steal from worker v takes at least victim_grains[v].steal_grain
  // units; while v has measured nothing (it has not started: a late wake-up), at least the
  // thief's own, so that a thief does not halve a sleeping worker's range down to single units;
  // `grain` when neither is set.
  Stealer(ChunkRange* ranges, unsigned workers, unsigned self, std::uint64_t grain,
          Announce announce = {}, const SharedItemTime* victim_grains = nullptr) noexcept
      : announce_(announce),
        victim_grains_(victim_grains),
        ranges_(ranges),
        workers_(workers),
        self_(self),
        grain_(grain),
        sticky_(self),
        rng_(0x9E3779B97F4A7C15ull * (self + 1)) {}

  // The next chunk of units for this worker, take(R) of the R units left in its own range, from
  // the front, after stealing into it if it is empty; empty once every range is empty.
  // work_stealing takes own_take(R, grain).
  template <class Take>
  [[nodiscard]] UnitSpan next(Take take) noexcept {
    for (;;) {
      const UnitSpan mine = ranges_[self_].take_front(take, announce_);
      if (!mine.empty() || !steal()) return mine;
    }
  }
  [[nodiscard]] UnitSpan next() noexcept {
    return next([g = grain_](std::uint64_t r) { return own_take(r, g); });
  }

  std::uint64_t steal_attempts() const noexcept { return steal_attempts_; }
  std::uint64_t steals() const noexcept { return steals_; }

 private:
  // Moves part of another worker's range into this worker's (empty) range. One or more passes
  // over the other workers; false once a pass finds them all empty without contention.
  bool steal() noexcept {
    for (;;) {
      bool contended = false;
      rng_ ^= rng_ << 13;
      rng_ ^= rng_ >> 7;
      rng_ ^= rng_ << 17;
      const auto start = static_cast<unsigned>(rng_ % workers_);
      for (unsigned k = 0; k <= workers_; ++k) {
        const unsigned v = k == 0 ? sticky_ : (start + k) % workers_;
        if (v == self_) continue;
        const std::uint64_t grain = grain_of(v);
        const StealResult r = ranges_[v].steal_back(
            [grain](std::uint64_t left) { return steal_amount(left, grain); }, announce_);
        steal_attempts_ += r.outcome != Steal::empty;
        if (r.outcome == Steal::success) {
          ++steals_;
          ranges_[self_].reset(r.span);
          sticky_ = v;
          return true;
        }
        contended |= r.outcome == Steal::retry;
      }
      if (!contended) return false;
    }
  }

  std::uint64_t grain_of(unsigned victim) const noexcept {
    if (victim_grains_ == nullptr) return grain_;
    for (const unsigned w : {victim, self_})
      if (const std::uint64_t g = victim_grains_[w].steal_grain.load(std::memory_order_relaxed))
        return g;
    return grain_;
  }

  Announce announce_;
  const SharedItemTime* victim_grains_;
  ChunkRange* ranges_;
  unsigned workers_;
  unsigned self_;
  std::uint64_t grain_;
  unsigned sticky_;
  std::uint64_t rng_;
  std::uint64_t steal_attempts_ = 0;  // compare-and-swaps on a victim's range
  std::uint64_t steals_ = 0;          // the ones that took units
};

}  // namespace forkpool::detail
