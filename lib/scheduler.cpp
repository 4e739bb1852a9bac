// Runs a job in a worker: claims chunks with the lock-free operations of the job's schedule
// (include/forkpool/detail/claims.hpp, where the scheduling algorithms are described) and runs
// them through the job's ChunkFn.
//
// A worker runs each chunk in pieces of about a millisecond (next_piece() in chunking.hpp). After
// each piece it commits it (WorkerSlot::commit, with the piece's map_reduce partial) and checks
// the stop flag (relaxed: a late view only runs one more piece), so a map stops about a
// millisecond after the items running when it was stopped, and a dead worker loses at most the
// rest of its chunk. Every claim is announced in the worker's slot before its CAS (control.hpp),
// which with the commits lets the parent find what a dead worker lost (recovery.hpp).
//
// Memory order. The job descriptor and the schedule's initial state are plain or relaxed writes
// made by the parent before it bumps the generation counter (release); a worker reads them after
// seeing the new generation (acquire). A claim's CAS is a release (see claims.hpp), so the
// announce before it cannot be reordered after it: a claim that took effect was announced. A
// piece's results and partial are published by the commit store (release). Everything a worker
// wrote in a job reaches the parent through its slot's `finished` word: a seq_cst store the parent
// reads with acquire (or, for a dead worker, through its exit, which the parent learns from
// waitpid).
#include "scheduler.hpp"

#include "worker.hpp"

#include <forkpool/detail/claims.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace forkpool::detail {
namespace {

using Clock = std::chrono::steady_clock;

// A running worker checks this often that its parent is alive (an idle one: worker.cpp), after a
// timed piece or every kUntimedPerParentCheck chunks shorter than a piece (each under ~1 ms).
constexpr auto kParentCheck = std::chrono::milliseconds(100);
constexpr std::uint64_t kUntimedPerParentCheck = 128;

// The worker's view of one job, with index arithmetic and its slot's bookkeeping in one place.
class JobRunner {
 public:
  JobRunner(Control& control, WorkerSlot& slot, unsigned worker, pid_t parent)
      : c_(control),
        job_(control.job),
        slot_(slot),
        worker_(worker),
        parent_(parent),
        committed_(commit_count(slot.commit.load(std::memory_order_relaxed))),
        current_(commit_slot(slot.commit.load(std::memory_order_relaxed))),
        parent_checked_(Clock::now()) {}

  bool stopped() const { return c_.stop.load(std::memory_order_relaxed) != kRunning; }

  // Records the chunk of item offsets b as this worker's claim, before the CAS that claims it
  // (a release, so these stores cannot move after it).
  void announce(Block b) {
    slot_.claim_base.store(committed_, std::memory_order_relaxed);
    slot_.claim_first.store(job_.first + static_cast<std::int64_t>(b.first),
                            std::memory_order_relaxed);
    slot_.claim_last.store(job_.first + static_cast<std::int64_t>(b.last),
                           std::memory_order_relaxed);
  }
  Block items_of(UnitSpan s) const {
    return {std::uint64_t{s.first} * job_.unit,
            std::min(job_.count, std::uint64_t{s.last} * job_.unit)};
  }

  // Runs the chunk of item offsets [lo, hi), piece by piece. A chunk shorter than a piece needs
  // no timing, so small chunks (dynamic(1)) cost no clock reads.
  void run_items(std::uint64_t lo, std::uint64_t hi) {
    while (lo < hi && !stopped()) {
      if (hi - lo < piece_) {
        run_piece(lo, hi);
        if (++untimed_ % kUntimedPerParentCheck == 0) check_parent(Clock::now());
        return;
      }
      const Clock::time_point start = Clock::now();
      run_piece(lo, lo + piece_);
      const Clock::time_point end = Clock::now();
      lo += piece_;
      piece_ = next_piece(
          piece_, static_cast<std::uint64_t>(
                      std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count()));
      check_parent(end);
    }
  }

  // Runs items [lo, hi) and commits them.
  void run_piece(std::uint64_t lo, std::uint64_t hi) {
    const std::int64_t first = job_.first + static_cast<std::int64_t>(lo);
    job_.run(job_.closure, first, first + static_cast<std::int64_t>(hi - lo), worker_, current_);
    current_ ^= 1;
    committed_ += hi - lo;
    slot_.commit.store(committed_ | (current_ ? kCommitSlotBit : 0), std::memory_order_release);
  }

  void static_blocks() {
    const Block b = static_block(job_.count, c_.workers, worker_);
    run_items(b.first, b.last);
  }

  void dynamic() {
    const auto announce = [this](Block b) { this->announce(b); };
    while (!stopped()) {
      const Block b = claim_dynamic(c_.next, job_.count, job_.chunk, announce);
      if (b.empty()) return;
      run_items(b.first, b.last);
    }
  }

  void guided() {
    const auto announce = [this](Block b) { this->announce(b); };
    while (!stopped()) {
      const Block b = claim_guided(c_.next, job_.count, c_.workers, job_.chunk, announce);
      if (b.empty()) return;
      run_items(b.first, b.last);
    }
  }

  void work_stealing(ChunkRange* ranges) {
    const auto announce = [this](UnitSpan s) { this->announce(items_of(s)); };
    Stealer stealer(ranges, c_.workers, worker_, job_.chunk, announce);
    while (!stopped()) {
      const UnitSpan s = stealer.next();
      if (s.empty()) return;
      const Block b = items_of(s);
      run_items(b.first, b.last);
    }
  }

 private:
  // PR_SET_PDEATHSIG does not cover a pool made on a thread other than the main one.
  void check_parent(Clock::time_point now) {
    if (now - parent_checked_ < kParentCheck) return;
    parent_checked_ = now;
    if (getppid() != parent_) exit_worker(0);
  }

  Control& c_;
  const Job& job_;
  WorkerSlot& slot_;
  unsigned worker_;
  pid_t parent_;
  std::uint64_t committed_;
  unsigned current_;
  std::uint64_t piece_ = 1;
  std::uint64_t untimed_ = 0;
  Clock::time_point parent_checked_;
};

}  // namespace

Job make_job(const JobCallable& callable, const void* closure, std::int64_t first,
             std::uint64_t count, Schedule schedule, unsigned workers) {
  Job job{callable.run, closure, first, count, schedule.kind(), schedule.parameter(), 1};
  if (schedule.kind() == Schedule::Kind::work_stealing) {
    job.unit = std::max<std::uint64_t>(1, ceil_div(count, ChunkRange::kMaxUnits));
    const std::uint64_t units = ceil_div(count, job.unit);
    job.chunk = job.chunk == 0 ? auto_grain(units, workers)
                               : std::max<std::uint64_t>(1, ceil_div(job.chunk, job.unit));
  }
  return job;
}

void prepare_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots) {
  control.next.store(0, std::memory_order_relaxed);
  const Job& job = control.job;
  for (unsigned w = 0; w < control.workers; ++w) {
    const Block b = job.kind == Schedule::Kind::static_blocks
                        ? static_block(job.count, control.workers, w)
                        : Block{0, 0};
    WorkerSlot& s = slots[w];
    s.claim_base.store(commit_count(s.commit.load(std::memory_order_relaxed)),
                       std::memory_order_relaxed);
    s.claim_first.store(job.first + static_cast<std::int64_t>(b.first), std::memory_order_relaxed);
    s.claim_last.store(job.first + static_cast<std::int64_t>(b.last), std::memory_order_relaxed);
  }
  if (job.kind != Schedule::Kind::work_stealing) return;
  const std::uint64_t units = ceil_div(job.count, job.unit);
  for (unsigned w = 0; w < control.workers; ++w) {
    const Block b = static_block(units, control.workers, w);
    ranges[w].reset({static_cast<std::uint32_t>(b.first), static_cast<std::uint32_t>(b.last)});
  }
}

void run_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots, unsigned worker,
                  pid_t parent) {
  JobRunner runner(control, slots[worker], worker, parent);
  switch (control.job.kind) {
    case Schedule::Kind::static_blocks:
      return runner.static_blocks();
    case Schedule::Kind::dynamic:
      return runner.dynamic();
    case Schedule::Kind::guided:
      return runner.guided();
    case Schedule::Kind::work_stealing:
      return runner.work_stealing(ranges);
  }
}

}  // namespace forkpool::detail
