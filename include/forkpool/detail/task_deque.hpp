// TaskDeque: a bounded work-stealing deque (Chase and Lev, "Dynamic Circular Work-Stealing
// Deque", SPAA 2005), with the memory orders of Le, Pop, Cohen and Zappa Nardelli, "Correct and
// Efficient Work-Stealing for Weak Memory Models", PPoPP 2013, in the bounded form of taskflow's
// BoundedWSQ: a power-of-two ring that never grows, so it fits in the fixed shared segment and
// never allocates. One owner pushes and pops at the bottom (LIFO, the newest task: its data is
// warm in the owner's cache); any number of thieves take from the top (FIFO, the oldest task:
// in divide-and-conquer the biggest piece of work left, so one steal moves a lot of work).
//
// The owner and the thieves are different processes of a pool (the deque and its ring live in
// the segment) or, in the stress tests, threads of one process: the code is the same.
//
// Memory orders. Le et al. use relaxed accesses plus two seq_cst fences: one in pop between the
// store of bottom and the load of top, one in steal between the load of top and the load of
// bottom. Those fences are what makes pop and steal agree on who gets the last task (a Dekker
// pattern: each writes its own index, then reads the other's). Here the accesses the fences
// order are seq_cst operations instead: GCC's ThreadSanitizer does not model
// atomic_thread_fence (see claims.hpp, which made the same change), and on x86-64 a seq_cst
// store is the same locked instruction as the fence it replaces. Every order is justified at its
// operation below.
#pragma once

#include <forkpool/detail/chunk_range.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace forkpool::detail {

// A steal's outcome (the three of ChunkRange's steals) and, on success, the item.
template <class T>
struct [[nodiscard]] Stolen {
  Steal outcome;
  T item;
};

// T is what the deque holds: a trivially copyable word (a pointer into the segment).
template <class T>
class TaskDeque {
  static_assert(std::is_trivially_copyable_v<T> && std::atomic<T>::is_always_lock_free);

 public:
  // `ring` holds `capacity` slots (a power of two, at least 2), in memory every user can see.
  TaskDeque(std::atomic<T>* ring, std::uint64_t capacity) : ring_(ring), mask_(capacity - 1) {}

  std::uint64_t capacity() const noexcept { return mask_ + 1; }

  // Between jobs, with no owner or thief running.
  void reset() noexcept {
    top_.store(0, std::memory_order_relaxed);
    bottom_.store(0, std::memory_order_relaxed);
  }

  // Owner only. False when the ring is full: the caller runs the task itself.
  bool try_push(T item) noexcept {
    // Only the owner writes bottom.
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    // Acquire: pairs with the thieves' CAS on top, so the slot a thief has vacated is free to
    // overwrite (the thief read it before its CAS).
    const std::int64_t t = top_.load(std::memory_order_acquire);
    if (b - t >= static_cast<std::int64_t>(capacity())) return false;
    // Relaxed: published by the release store of bottom below.
    ring_[static_cast<std::uint64_t>(b) & mask_].store(item, std::memory_order_relaxed);
    // Release would do for the deque (Le et al.: a release fence, then a relaxed store): a
    // thief that sees the new bottom sees the item, and everything the owner wrote into the task
    // before pushing it. Seq_cst for the pool's idle workers (lib/tasks.cpp): a worker that
    // pushes then checks for sleeping ones, which announce their sleep then look at bottom (a
    // Dekker pattern), so either the pusher sees the sleeper or the sleeper sees the task. On
    // x86-64 it is one locked exchange on the owner's own cache line.
    bottom_.store(b + 1, std::memory_order_seq_cst);
    return true;
  }

  // Owner only. The newest item, or false when empty (or a thief took the last one).
  bool try_pop(T& item) noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    // Seq_cst store then seq_cst load of top (Le et al.: relaxed store, seq_cst fence, relaxed
    // load): a thief reading bottom afterwards sees it lowered, or this load sees the thief's
    // raised top; never both miss, so the last item is not taken twice.
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {  // empty
      bottom_.store(b + 1, std::memory_order_relaxed);
      return false;
    }
    // Relaxed: the owner wrote this slot itself.
    item = ring_[static_cast<std::uint64_t>(b) & mask_].load(std::memory_order_relaxed);
    if (t < b) return true;  // more than one item: no thief can reach this one
    // The last item: race the thieves for it through top. Seq_cst as in Le et al.; on failure
    // relaxed (a thief won, and nothing it wrote is needed).
    const bool won = top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                                  std::memory_order_relaxed);
    // Relaxed: only the owner reads bottom without having read top after it.
    bottom_.store(b + 1, std::memory_order_relaxed);
    return won;
  }

  // Any thread or process. The oldest item (success), empty, or retry when another thief or
  // the owner won the race for it (the deque may still hold items).
  Stolen<T> steal() noexcept {
    // Seq_cst load of top, then seq_cst load of bottom (Le et al.: acquire load of top, seq_cst
    // fence, acquire load of bottom): the other half of pop's Dekker pattern. Loading bottom
    // with seq_cst also acquires the owner's release store of it, so the item read below is
    // the one the owner pushed, with its task's contents.
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return {Steal::empty, T{}};
    // Relaxed, and possibly stale: if the owner has since popped it and pushed over the slot,
    // top has moved and the CAS below fails, so a stale value is never returned.
    const T item = ring_[static_cast<std::uint64_t>(t) & mask_].load(std::memory_order_relaxed);
    // Seq_cst as in Le et al. (it orders against pop's CAS on the last item); relaxed on failure.
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return {Steal::retry, T{}};
    return {Steal::success, item};
  }

  // Whether the deque held no item at some moment during the call (seq_cst, as in steal: an
  // idle worker's last look before it sleeps; see try_push).
  bool empty() const noexcept {
    return top_.load(std::memory_order_seq_cst) >= bottom_.load(std::memory_order_seq_cst);
  }

 private:
  // Owner-written and thief-written indices on separate cache lines.
  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<T>* ring_;
  std::uint64_t mask_;
};

// Whether n is a valid TaskDeque capacity.
constexpr bool valid_deque_capacity(std::uint64_t n) { return n >= 2 && (n & (n - 1)) == 0; }

}  // namespace forkpool::detail
