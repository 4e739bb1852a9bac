// The claim records of a worker slot (ClaimRecord in include/forkpool/detail/claim_records.hpp),
// which the parent reads back after a worker died (read_slot in recovery.hpp): the parent's reset
// before each job, and the writer of the schedules that claim with a compare-and-swap (constant
// chunks have theirs, ConstantChunkWriter, beside ClaimRecord).
#pragma once

#include "control.hpp"

#include <forkpool/detail/chunking.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace forkpool::detail {

// Parent, between jobs: empties both claim records of a slot for a job that starts at index
// `first`, with the slot's commit count as their base.
inline void reset_claims(WorkerSlot& slot, std::int64_t first) {
  const std::uint64_t base = commit_count(slot.commit.load(std::memory_order_relaxed));
  for (ClaimRecord& r : slot.claims) {
    r.first.store(first, std::memory_order_relaxed);
    r.last.store(first, std::memory_order_relaxed);
    r.base.store(base, std::memory_order_relaxed);
    r.recorded.store(0, std::memory_order_relaxed);
    r.sum.store(0, std::memory_order_relaxed);
    r.sum_squares.store(0, std::memory_order_relaxed);
  }
}

// Writes the chunks a worker is about to claim with a CAS into its slot's records (WorkerSlot),
// before the CAS (a release, so these stores cannot move after it). Each write fills the record
// that is not current and then makes it current, so a worker that dies mid-write leaves the
// previous record whole.
class ClaimWriter {
 public:
  ClaimWriter(WorkerSlot& slot, const Job& job)
      : slot_(&slot),
        first_(job.first),
        unit_(job.unit),
        count_(job.count),
        current_(slot.current_claim.load(std::memory_order_relaxed)) {}

  static Block items_of(std::uint64_t unit, std::uint64_t count, UnitSpan s) {
    return {std::uint64_t{s.first} * unit, std::min(count, std::uint64_t{s.last} * unit)};
  }

  void announce(UnitSpan s, std::uint64_t committed) {
    const Block b = items_of(unit_, count_, s);
    current_ ^= 1;
    ClaimRecord& r = slot_->claims[current_];
    r.first.store(first_ + static_cast<std::int64_t>(b.first), std::memory_order_relaxed);
    r.last.store(first_ + static_cast<std::int64_t>(b.last), std::memory_order_relaxed);
    r.base.store(committed, std::memory_order_relaxed);
    slot_->current_claim.store(current_, std::memory_order_release);
  }

 private:
  WorkerSlot* slot_;
  std::int64_t first_;
  std::uint64_t unit_;
  std::uint64_t count_;
  unsigned current_;
};

}  // namespace forkpool::detail
