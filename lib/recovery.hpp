// Finding the items a dead worker lost, so that they can be run again.
//
// A worker can die at any instruction. What it leaves behind in the segment, all of it readable
// by the parent once the other workers have finished the job:
//  - its slot's claim record: the chunk it announced just before the CAS that claims it, and its
//    commit count at that moment (WorkerSlot in control.hpp). If the CAS took effect, the items
//    of the chunk that its commits do not cover are lost: [claim_first + committed - claim_base,
//    claim_last). If the CAS failed (another worker took the chunk, or it died before the CAS),
//    the same arithmetic names items that are not lost: a false candidate.
//  - constant chunks (dynamic, fixed_size, python) are claimed by a fetch_add and recorded just
//    after it: a recorded chunk is the worker's for sure, but a worker can die between the two.
//    Every chunk below the counter was handed out, and the records say how many each worker
//    recorded and add up c + 1 and (c + 1)^2 over their first units c; the chunks no record
//    holds are the difference: one is its sum, two are the roots of a quadratic (their sum and
//    their sum of squares), both lost for sure. Three or more workers dying in that instant at
//    once leave only a span that holds their chunks: a candidate (for map, run again whole).
//  - its ChunkRange (work stealing): units it owned and nobody took, because every other worker
//    had stopped. They are lost for sure.
//  - the shared counter (self-scheduling): items nobody claimed, when every worker died. Lost
//    for sure.
//  - static_blocks and static_chunked: the worker's own chunks, in order, past its commit count.
//    Lost for sure. They are the rest of the chunk it was running and then one strided span, the
//    worker's later chunks, run again as one static_chunked job with a chunk stride, not as one
//    job per chunk.
// No other item can be lost: an item leaves the shared state only through a claim, and a claim
// is announced before it takes effect.
//
// For map and for_each, running a false candidate again writes the same results (or repeats the
// side effects of f, which a retry implies anyway), so every candidate is run again. A map_reduce
// must count each item exactly once. Each worker's commit count is exact (a piece counts in the
// count and in the partial together, or not at all), so the parent knows how many items are
// missing: the count of the map minus the sum of the commits. The lost items are the candidates
// lost for sure plus the one set of disjoint other candidates whose sizes add up to the rest; false
// candidates are rare (a worker has to die between an announce and a failed CAS), and if two sets
// fit, the map fails rather than guess. Whatever happens, a map_reduce returns only when the
// commits add up to the map's count.
#pragma once

#include "control.hpp"

#include <forkpool/detail/chunking.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace forkpool::detail {

// Items [first, last) of a map, lost or possibly lost when worker `worker` died.
// With a stride s > 1, only some of them: the chunks of `chunk` items from `first`, every s-th
// (the 0th, the s-th, ...): the rest of a dead static_chunked worker's chunks.
struct LostSpan {
  std::int64_t first;
  std::int64_t last;
  unsigned worker;
  bool certain;  // lost for sure, not only possibly
  std::uint64_t chunk = 0;
  std::uint64_t stride = 1;

  std::uint64_t size() const {
    const auto n = static_cast<std::uint64_t>(last - first);
    if (stride <= 1) return n;
    const std::uint64_t slots = ceil_div(n, chunk);
    const std::uint64_t items = ceil_div(slots, stride) * chunk;
    // The last chunk of the span is short, and one of these when stride divides slots - 1.
    return (slots - 1) % stride == 0 ? items - (slots * chunk - n) : items;
  }
};

// What a worker slot holds after the job, read by the parent.
struct SlotState {
  std::int64_t claim_first;
  std::int64_t claim_last;
  std::uint64_t claim_base;
  std::uint64_t committed;
  UnitSpan range;  // the units left in its ChunkRange (work stealing)
  // Constant chunks: the chunks recorded, and the sums of c + 1 and (c + 1)^2 over their first
  // units c (ClaimRecord); claim_base is then where the last one started in the commits.
  std::uint64_t chunks = 0;
  std::uint64_t sum = 0;
  std::uint64_t sum_squares = 0;
};

SlotState read_slot(const WorkerSlot& slot, const ChunkRange& range, const Job& job);

// The candidates for the items the dead workers lost in `job`, in which the shared counter had
// handed out the items below offset `next`. `slots` holds every worker's, dead or alive.
// Candidates lie inside the job and do not overlap the unclaimed rest.
std::vector<LostSpan> lost_candidates(const Job& job, std::uint64_t next,
                                      std::span<const SlotState> slots,
                                      std::span<const unsigned> dead);

// The candidates lost for sure, plus the one set of pairwise disjoint others whose sizes add up
// with them to `missing`; nullopt when none or several do.
std::optional<std::vector<LostSpan>> exact_loss(std::span<const LostSpan> candidates,
                                                std::uint64_t missing);

}  // namespace forkpool::detail
