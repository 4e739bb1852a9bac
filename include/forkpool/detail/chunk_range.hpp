// ChunkRange: one worker's remaining range of chunk units [front, back), in one 64-bit word.
//
// The owner takes chunks from the front; thieves split a part off the back (steal-half, Hendler
// & Shavit, "Non-blocking steal-half work queues", PODC 2002). Both sides update the range with a
// single compare-and-swap on the packed word (front in the low 32 bits, back in the high 32), as
// LLVM libomp's `static_steal` schedule does with its packed (count, upper bound) pair. A range is
// described by its value alone, so:
//  - there is no lock and no multi-word state: a process killed between any two instructions
//    leaves every range well formed, and the others carry on (lock-free, not wait-free: a CAS
//    fails only because another CAS succeeded);
//  - ABA is harmless: units leave ranges and are never put back, so a word that returns to an
//    earlier value describes the same units, still unclaimed;
//  - only the owner makes an empty range non-empty again (reset after a successful steal), and a
//    thief's CAS against the old value then fails, as it must.
//
// Memory order: relaxed, except that a successful take or steal is a release, only so that the
// announce made before it (see NoAnnounce) cannot be reordered after it. The word carries all of
// the state it protects (which units are unclaimed); no other memory is published through it. The
// job the units index into is published before the ranges are used (the generation counter,
// release/acquire), and results reach the parent through each worker's commit and finished words,
// not through this word. Each CAS on one word is totally ordered by that word's modification order,
// which is all that exclusive ownership of a unit needs.
#pragma once

#include <atomic>
#include <cstdint>

namespace forkpool::detail {

struct UnitSpan {
  std::uint32_t first, last;  // [first, last)
  bool empty() const noexcept { return first >= last; }
  std::uint32_t size() const noexcept { return empty() ? 0 : last - first; }
};

enum class Steal : std::uint8_t { empty, success, retry };

// Called with the span an operation is about to take, just before its compare-and-swap: the pool
// records it there, so that the units a worker took are known even if it dies right after.
// record() is called instead with a span just taken by a fetch_add (ChunkCounter's constant
// chunks), which cannot be announced before it.
struct NoAnnounce {
  template <class Span>
  void operator()(Span) const noexcept {}
  template <class Span>
  void record(Span) const noexcept {}
};

struct StealResult {
  Steal outcome;
  UnitSpan span;
};

class alignas(64) ChunkRange {
 public:
  static constexpr std::uint64_t kMaxUnits = 0xFFFFFFFFu;

  // Sets the range. Only for the owner while no thief can hold a stale non-empty view that would
  // still match, i.e. before the job is published or while the range is empty.
  void reset(UnitSpan span) noexcept { word_.store(pack(span), std::memory_order_relaxed); }

  std::uint32_t remaining() const noexcept { return units().size(); }
  UnitSpan units() const noexcept { return unpack(word_.load(std::memory_order_relaxed)); }

  // Owner: takes size_for(remaining) units (1 <= size <= remaining) from the front.
  template <class SizeFor, class Announce = NoAnnounce>
  [[nodiscard]] UnitSpan take_front(SizeFor size_for, Announce announce = {}) noexcept {
    std::uint64_t seen = word_.load(std::memory_order_relaxed);
    for (;;) {
      const UnitSpan r = unpack(seen);
      if (r.empty()) return {0, 0};
      const auto n = static_cast<std::uint32_t>(size_for(std::uint64_t{r.size()}));
      const UnitSpan taken{r.first, r.first + n};
      announce(taken);
      if (word_.compare_exchange_weak(seen, pack({taken.last, r.last}), std::memory_order_release,
                                      std::memory_order_relaxed))
        return taken;
    }
  }

  // Thief: one attempt to split amount_for(remaining) units (1 <= amount <= remaining) off the
  // back. `retry` means another worker changed the range first; the caller decides whether to
  // come back to this victim.
  template <class AmountFor, class Announce = NoAnnounce>
  [[nodiscard]] StealResult steal_back(AmountFor amount_for, Announce announce = {}) noexcept {
    std::uint64_t seen = word_.load(std::memory_order_relaxed);
    const UnitSpan r = unpack(seen);
    if (r.empty()) return {Steal::empty, {0, 0}};
    const auto n = static_cast<std::uint32_t>(amount_for(std::uint64_t{r.size()}));
    const UnitSpan stolen{r.last - n, r.last};
    announce(stolen);
    if (word_.compare_exchange_strong(seen, pack({r.first, stolen.first}),
                                      std::memory_order_release, std::memory_order_relaxed))
      return {Steal::success, stolen};
    return {Steal::retry, {0, 0}};
  }

 private:
  static std::uint64_t pack(UnitSpan s) noexcept {
    return std::uint64_t{s.first} | (std::uint64_t{s.last} << 32);
  }
  static UnitSpan unpack(std::uint64_t w) noexcept {
    return {static_cast<std::uint32_t>(w), static_cast<std::uint32_t>(w >> 32)};
  }

  std::atomic<std::uint64_t> word_{0};
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
                "ChunkRange needs a lock-free 64-bit CAS: a lock would not work across processes");
};

}  // namespace forkpool::detail
