// Map results that are not trivially copyable (forkpool/result_codec.hpp): how the workers write
// them into the segment as bytes without allocating there, and how the parent reads them back.
//
// Such a map runs in rounds, each one job with the usual recovery of dead workers:
//  1. The first round runs every item. Before it, the parent reserves in the segment one block:
//     a cursor per worker slot, N StoredResult and one arena per worker slot, together half of
//     the segment's available bytes. That is address space, not memory (the segment is
//     MAP_NORESERVE; pages are committed when first touched), and the block is the one the
//     segment keeps as its spare once freed, so the next map of the same pool reuses it and its
//     pages, which every process has mapped already (segment.hpp). A worker bump-allocates each
//     result from its slot's arena: it encodes the bytes at the cursor, advances the cursor,
//     then writes the item's StoredResult {where, size}. A result that does not fit is not
//     truncated: its StoredResult says {nullptr, bytes needed}, and the worker goes on with its
//     next items.
//  2. The parent decodes every stored result into the std::vector<R> that map returns (this is
//     the copy a trivially copyable result does not cost), then frees the round's blocks.
//  3. The results that did not fit run again: the parent now knows each one's size, so it
//     reserves exactly that much per item, in batches of at most half the available bytes, and job
//     item j of such a round encodes into its own place, reserved[j]. f runs twice for these
//     items. A result larger than on the earlier run is an error (f must give results of the
//     same size each time); a batch of one item that cannot be reserved is SegmentFull.
//
// Workers never call the segment's allocator (its mutex would stay locked by a worker killed
// inside it), and nothing they write is a lock. A worker can die between any two of its writes:
//  - The scheduler commits each piece of items with a release store after running them
//    (lib/scheduler.cpp), so a committed item's bytes, cursor and StoredResult were all written
//    before its commit. The items a dead worker had not committed are run again (lib/recovery.hpp),
//    and each re-run rewrites the item's StoredResult: the last write wins. A half-written
//    StoredResult or bytes without one are thus only ever those of an item that is run again, or
//    of a map that throws BrokenPool.
//  - A replacement worker in the same slot continues the arena from the cursor, which covers the
//    bytes of every item its predecessor committed: bytes past it, which the dead worker may have
//    written, are overwritten, and no surviving StoredResult refers to them.
//  - Nobody reads an arena, a cursor or a StoredResult while a worker may write it: the parent
//    reads them after the job, ordered after each live worker's writes by its `finished` store
//    (seq_cst) and the parent's acquire load of it, and after each dead one's by waitpid; a
//    replacement is forked after its predecessor was reaped. The cursor is atomic because another
//    process reads it later, and relaxed because those orderings, not the cursor, synchronise.
#pragma once

#include <forkpool/detail/closures.hpp>
#include <forkpool/detail/segment.hpp>
#include <forkpool/result_codec.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace forkpool::detail {

// Where a worker wrote one item's encoded result: `size` bytes at `data`. data == nullptr: the
// result did not fit where the worker could write it, and needs `size` bytes.
struct StoredResult {
  std::byte* data;
  std::size_t size;
};

// How far one worker slot has filled its arena, alone on its cache line.
struct alignas(64) ArenaCursor {
  std::atomic<std::size_t> used{0};
  // How far the slot's worker has prefaulted the arena. A replacement worker that inherits it
  // only takes page faults for the pages its predecessor mapped, which are cheap (minor) ones.
  std::size_t prefaulted = 0;
};

// Where the workers write one round's results (see the top of this file). Job item j's
// StoredResult is stored[j - job_first()].
struct ResultPlaces {
  StoredResult* stored;
  std::int64_t first;  // the map's first index: item k (an offset from it) is index first + k
  // The first round: its jobs run indices [first, first + N); worker w's arena is
  // [arenas + w * capacity, arenas + (w + 1) * capacity).
  std::byte* arenas;
  std::size_t capacity;
  ArenaCursor* cursors;
  // A later round (items != nullptr): its job runs [0, K); job item j is item items[j] and
  // encodes into reserved[j].data, which holds reserved[j].size bytes.
  const std::int64_t* items;
  const StoredResult* reserved;

  std::int64_t job_first() const { return items != nullptr ? 0 : first; }
};

// A worker maps this much of its arena ahead of its cursor at a time: one system call instead of
// a page fault per page (segment.hpp).
inline constexpr std::size_t kArenaPrefaultBytes = std::size_t{1} << 20;

// Where one worker writes its results.
class ResultWriter {
 public:
  ResultWriter(const ResultPlaces& places, unsigned worker) noexcept
      : p_(places), worker_(worker) {}

  // The item (offset from the map's first index) that job item j runs, and its index.
  std::int64_t item(std::int64_t j) const noexcept {
    return p_.items != nullptr ? p_.items[j] : j - p_.first;
  }
  std::int64_t index(std::int64_t j) const noexcept { return p_.first + item(j); }

  void prefault_stored(std::int64_t lo, std::int64_t hi) const noexcept {
    prefault_in_worker(slot(lo), sizeof(StoredResult) * static_cast<std::size_t>(hi - lo), true);
  }

  // Encodes job item j's result, then publishes where it went (see the top of this file).
  template <class R>
  void write(std::int64_t j, const R& r) {
    const std::size_t size = ResultCodec<R>::size(r);
    std::byte* const at = place(j, size);
    if (at != nullptr) {
      ResultCodec<R>::encode(r, at);
      if (p_.items == nullptr)
        cursor().store(cursor().load(std::memory_order_relaxed) + size, std::memory_order_relaxed);
    }
    *slot(j) = {at, size};
  }

 private:
  StoredResult* slot(std::int64_t j) const noexcept {
    return p_.stored + static_cast<std::size_t>(j - p_.job_first());
  }
  std::atomic<std::size_t>& cursor() const noexcept { return p_.cursors[worker_].used; }

  // Where job item j's `size` bytes go; nullptr if they do not fit.
  std::byte* place(std::int64_t j, std::size_t size) noexcept {
    if (p_.items != nullptr) {
      const StoredResult& reserved = p_.reserved[j];
      return size <= reserved.size ? reserved.data : nullptr;
    }
    const std::size_t used = cursor().load(std::memory_order_relaxed);
    if (size > p_.capacity - used) return nullptr;
    std::byte* const arena = p_.arenas + std::size_t{worker_} * p_.capacity;
    std::size_t& prefaulted = p_.cursors[worker_].prefaulted;
    if (used + size > prefaulted) {
      prefaulted = used + std::min(std::max(size, kArenaPrefaultBytes), p_.capacity - used);
      prefault_in_worker(arena + used, prefaulted - used, true);
    }
    return arena + used;
  }

  const ResultPlaces& p_;
  const unsigned worker_;
};

// The items of a map over a Range: item k is the index first + k.
struct RangeItems {
  std::int64_t first;
  std::int64_t operator()(std::int64_t k) const noexcept { return first + k; }
  void prefault(std::int64_t, std::int64_t) const noexcept {}
};

// The items of a map over a contiguous input (in the segment): item k is in[k].
template <class T>
struct SpanItems {
  const T* in;
  const T& operator()(std::int64_t k) const noexcept { return in[k]; }
  void prefault(std::int64_t lo, std::int64_t hi) const noexcept {
    prefault_in_worker(in + lo, sizeof(T) * static_cast<std::size_t>(hi - lo), false);
  }
};

template <class F, class Items, class R>
struct EncodedMap {
  F f;
  Items items;
  ResultPlaces places;

  void run(std::int64_t lo, std::int64_t hi, unsigned worker, unsigned) const noexcept {
    F g = f;
    const Items source = items;
    ResultWriter writer(places, worker);
    writer.prefault_stored(lo, hi);
    if (places.items == nullptr) source.prefault(writer.item(lo), writer.item(hi));
    for_each_item(
        lo, hi, [&](std::int64_t j) { writer.write<R>(j, std::invoke(g, source(writer.item(j)))); },
        [&writer](std::int64_t j) { return writer.index(j); });
  }
};

// A result that did not fit: its item, and the bytes it needs.
struct PendingResult {
  std::int64_t item;
  std::size_t size;
};

// The segment blocks of one round, held by the parent from before its job until its results are
// decoded, and freed by the destructor.
class ResultRound {
 public:
  // The first round of a map of `count` items from index `first`, on `workers` worker slots.
  ResultRound(std::shared_ptr<Segment> segment, std::int64_t first, std::size_t count,
              unsigned workers);
  // A later round: the results at the back of `pending`, as many as half the segment's free bytes
  // hold (at least one), which it removes from `pending`.
  ResultRound(std::shared_ptr<Segment> segment, std::int64_t first,
              std::vector<PendingResult>& pending);

  const ResultPlaces& places() const noexcept { return places_; }
  // The job items of a later round: [0, jobs()).
  std::int64_t jobs() const noexcept { return static_cast<std::int64_t>(count_); }

  // After the round's job, for each job item in order: stored(item, bytes) for a result the
  // workers stored, missing(item) for one that did not fit (the first round) or grew (a later
  // round: forkpool::Error). Returns the ones that did not fit.
  template <class Stored, class Missing>
  std::vector<PendingResult> collect(Stored stored, Missing missing) {
    prefault_for_reading();
    std::vector<PendingResult> pending;
    for (std::size_t j = 0; j < count_; ++j) {
      const StoredResult s = places_.stored[j];
      const std::int64_t item =
          places_.items != nullptr ? places_.items[j] : static_cast<std::int64_t>(j);
      if (s.data != nullptr) {
        stored(item, std::span<const std::byte>(s.data, s.size));
      } else {
        if (places_.items != nullptr) throw_result_grew(j, s.size);
        missing(item);
        pending.push_back({item, s.size});
      }
    }
    return pending;
  }

 private:
  // The round's segment blocks, freed when it ends (or when its constructor throws).
  struct Blocks {
    std::shared_ptr<Segment> segment;
    std::vector<std::pair<void*, std::size_t>> held;
    explicit Blocks(std::shared_ptr<Segment> s) : segment(std::move(s)) {}
    Blocks(const Blocks&) = delete;
    Blocks& operator=(const Blocks&) = delete;
    ~Blocks();
    void* allocate(std::size_t bytes, std::size_t align, const char* what);
  };

  void prefault_for_reading() noexcept;
  [[noreturn]] void throw_result_grew(std::size_t j, std::size_t size) const;

  Blocks blocks_;
  ResultPlaces places_{};
  std::size_t count_ = 0;
  unsigned workers_ = 0;
};

}  // namespace forkpool::detail
