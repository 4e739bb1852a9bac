// A worker's loop over constant chunks (dynamic, fixed_size and python: one fetch_add a claim,
// ChunkCounter::claim_index), compiled with each map's closure so that the user's function is
// inlined into it, as an OpenMP loop body is.
//
// Why not a call per chunk, as the other schedules make (lib/scheduler.cpp): dynamic(1) claims
// one item at a time, and with two or more workers every claim moves the counter's cache line
// from one worker to the next. Whatever a worker does between two claims (the claim's record, the
// item, its commit) adds to the time of each claim, and on the 2-core machine of our benchmarks
// a call per item, its arguments and the loop state reloaded around it made dynamic(1) cost 1.5x
// to 1.75x OpenMP's schedule(dynamic, 1) on seed_1e6. The loop's rare paths are out of line, in the
// job's runner: a chunk long enough to be run in timed pieces, and the check that the parent is
// alive.
#pragma once

#include <forkpool/detail/chunking.hpp>
#include <forkpool/detail/claim_records.hpp>
#include <forkpool/detail/claims.hpp>
#include <forkpool/detail/item_frame.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace forkpool::detail {

// A worker checks that its parent is alive every this many chunks shorter than a piece.
inline constexpr std::uint64_t kUntimedPerParentCheck = 128;

// One worker's job over constant chunks, as its loop sees it: set up by the job's runner
// (lib/scheduler.cpp), whose functions run the rare paths.
struct ConstantChunkJob {
  ChunkCounter* counter;
  std::uint32_t units;  // of the job
  std::uint64_t chunk;  // units a chunk
  std::uint64_t unit;   // items a unit
  std::uint64_t count;  // items of the job
  std::int64_t first;   // the job's first index
  unsigned worker;
  const std::atomic<std::uint32_t>* stop;  // Control::stop: the loop ends once it is not 0
  std::atomic<std::uint64_t>* commit;      // the worker slot's commit word
  ClaimRecord* claims;                     // and its two claim records
  std::uint64_t allowed;                   // chunks the worker may claim (max_tasks_per_child)
  std::uint64_t piece;  // a chunk of this many items or more is run in timed pieces
  // Runs the job's items [lo, hi) (offsets) in timed pieces, which may change `piece`; returns
  // the commits after them.
  Commits (*run_pieces)(ConstantChunkJob& job, std::uint64_t lo, std::uint64_t hi, Commits c);
  // Exits the worker if its parent has died.
  void (*check_parent)(ConstantChunkJob& job);
  void* runner;  // for those two
};

// What the loop did: the chunks it claimed, whether it stopped at an empty claim (the job has
// none left), and the worker's commits.
struct ConstantChunksRun {
  std::uint64_t chunks;
  bool exhausted;
  Commits commits;
};

// Claims and runs chunks until none are left, the job is stopped or job.allowed are claimed.
// Each claim is recorded just after it (ConstantChunkWriter), each chunk runs in an ItemFrame
// and is committed after it, as lib/scheduler.cpp runs a piece. Everything the loop needs is
// copied into locals first, and a chunk's items are computed from its index with one
// multiplication: with two or more workers a claim waits for all the work since the previous
// one, loads and multiplications included. kOneItemChunks: the job's chunk and unit are both 1.
template <class Closure, bool kOneItemChunks>
ConstantChunksRun constant_chunk_loop(const void* closure, ConstantChunkJob& job,
                                      Commits commits) noexcept {
  const Closure c = *static_cast<const Closure*>(closure);
  ChunkCounter& counter = *job.counter;
  const std::atomic<std::uint32_t>& stop = *job.stop;
  std::atomic<std::uint64_t>& commit = *job.commit;
  const std::uint64_t chunk = kOneItemChunks ? 1 : job.chunk;
  const std::uint64_t chunks = ceil_div(job.units, chunk);
  const std::uint64_t chunk_items = kOneItemChunks ? 1 : chunk * job.unit;
  const std::uint64_t count = job.count;
  const std::uint64_t allowed = job.allowed;
  const std::int64_t job_first = job.first;
  const unsigned worker = job.worker;
  std::uint64_t piece = job.piece;
  ConstantChunkWriter writer(job.claims);
  while (writer.chunks() != allowed && stop.load(std::memory_order_relaxed) == 0) {
    const std::uint64_t k = counter.claim_index();
    if (k >= chunks) return {writer.chunks(), true, commits};
    writer.record(static_cast<std::uint32_t>(k * chunk));
    const std::uint64_t lo = k * chunk_items;
    const std::uint64_t hi = kOneItemChunks ? lo + 1 : std::min(count, lo + chunk_items);
    if (hi - lo >= piece) {
      commits = job.run_pieces(job, lo, hi, commits);
      piece = job.piece;
      continue;
    }
    const std::int64_t first = job_first + static_cast<std::int64_t>(lo);
    {
      const ItemFrame frame(first);
      c.run(first, first + static_cast<std::int64_t>(hi - lo), worker, commits.current);
    }
    commits.current ^= 1;
    commits.count += hi - lo;
    commit.store(commits.word(), std::memory_order_release);
    if (writer.chunks() % kUntimedPerParentCheck == 0) job.check_parent(job);
  }
  return {writer.chunks(), false, commits};
}

// dynamic(1) over a map of at most 2^32 - 1 items: a chunk is one item, the one its index names,
// so the loop computes nothing from the index; this is the claim OpenMP's dynamic,1 is measured
// against.
template <class Closure>
ConstantChunksRun run_constant_chunks(const void* closure, ConstantChunkJob& job,
                                      Commits commits) noexcept {
  return job.chunk == 1 && job.unit == 1
             ? constant_chunk_loop<Closure, true>(closure, job, commits)
             : constant_chunk_loop<Closure, false>(closure, job, commits);
}

}  // namespace forkpool::detail
