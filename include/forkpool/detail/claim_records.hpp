// What a worker writes into its slot (WorkerSlot in lib/control.hpp) for the parent to find the
// items it lost if it dies (lib/recovery.hpp): its claim records and its commit word. Here rather
// than in lib/ because the loop over constant chunks (constant_chunks.hpp) writes them, compiled
// with each map's closure.
#pragma once

#include <forkpool/detail/chunk_range.hpp>

#include <atomic>
#include <cstdint>

namespace forkpool::detail {

// A claim record, in one of two layouts.
//
// The schedules that claim with a compare-and-swap: `first`, `last` and `base` hold the chunk
// [first, last) (absolute indices) that the worker is about to claim, and its commit count when it
// made the claim. The worker writes them before the CAS, which is a release, so a claim that took
// effect is always recorded; a recorded claim may still have failed (see recovery.hpp).
//
// Constant chunks (a fetch_add, claims.hpp): the worker's n-th chunk of the job (n = 1, 2, ...)
// is recorded just after its claim took effect, in claims[n % 2]: `sum` and `sum_squares` add up
// c + 1 and (c + 1)^2 (mod 2^64) over the first units c of the worker's n chunks, and `recorded`,
// stored last (release), is n << 32 | the first unit of chunk n. The larger `recorded` of the two
// is a whole record whenever the worker died, and the sums are what finds a chunk claimed by a
// worker that died before recording it. `base` is the slot's commit count when the job started
// (the parent's): its chunks before the n-th are all whole and committed, so chunk n started at
// base + (n - 1) chunk items.
struct ClaimRecord {
  std::atomic<std::int64_t> first{0};
  std::atomic<std::int64_t> last{0};
  std::atomic<std::uint64_t> base{0};
  std::atomic<std::uint64_t> recorded{0};
  std::atomic<std::uint64_t> sum{0};
  std::atomic<std::uint64_t> sum_squares{0};
};

// The commit word: bits 0-62 count the items a slot has finished in the current map; bit 63
// says which of its two map_reduce partials is current.
inline constexpr std::uint64_t kCommitSlotBit = std::uint64_t{1} << 63;
inline constexpr std::uint64_t commit_count(std::uint64_t commit) {
  return commit & ~kCommitSlotBit;
}
inline constexpr unsigned commit_slot(std::uint64_t commit) {
  return static_cast<unsigned>(commit >> 63);
}

// What a worker has committed in its slot, kept by its job's loop in a local and stored after
// each piece.
struct Commits {
  std::uint64_t count;
  unsigned current;

  std::uint64_t word() const { return count | (current != 0 ? kCommitSlotBit : 0); }
};

// Records the constant chunks a worker claimed with a fetch_add, just after each claim, in the
// layout ClaimRecord describes. It is on the path of every claim, one per item with dynamic(1),
// so it is three stores and two loads of the worker's own record, with no flag to flip.
class ConstantChunkWriter {
 public:
  explicit ConstantChunkWriter(ClaimRecord* claims) : claims_(claims) {}

  // Records the worker's next chunk, whose first unit is `first`. The sums are carried from the
  // previous record (the parent zeroes both before the job), not in registers, which the item's
  // code needs more.
  void record(std::uint32_t first) {
    const ClaimRecord& previous = claims_[chunks_ % 2];
    const std::uint64_t first_plus_one = std::uint64_t{first} + 1;
    ++chunks_;
    ClaimRecord& r = claims_[chunks_ % 2];
    r.sum.store(previous.sum.load(std::memory_order_relaxed) + first_plus_one,
                std::memory_order_relaxed);
    r.sum_squares.store(
        previous.sum_squares.load(std::memory_order_relaxed) + first_plus_one * first_plus_one,
        std::memory_order_relaxed);
    r.recorded.store(chunks_ << 32 | first, std::memory_order_release);
  }

  std::uint64_t chunks() const { return chunks_; }

 private:
  ClaimRecord* claims_;
  std::uint64_t chunks_ = 0;
};

}  // namespace forkpool::detail
