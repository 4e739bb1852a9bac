// Runs a job in a worker: claims chunks with the lock-free operations of the job's schedule
// (include/forkpool/detail/claims.hpp, where the scheduling algorithms are described) and runs
// them through the job's ChunkFn.
//
// A worker runs each chunk in up to 16 pieces of at least 1024 items (piece_size()) and checks the
// cancel flag before each (relaxed: a late view only runs one more piece), so an exception in f
// stops the map within a sixteenth of a large chunk per worker, whatever the schedule.
//
// Memory order. The job descriptor and the schedule's initial state are plain or relaxed writes
// made by the parent before it bumps the generation counter (release); a worker reads them after
// seeing the new generation (acquire). Claims are relaxed (see claims.hpp). What the workers write
// (results, partials, the error slot) reaches the parent through the completion counter: each
// worker's fetch_add is acq_rel, so the parent's acquire load that sees P has seen every worker's
// writes.
#include "scheduler.hpp"

#include <forkpool/detail/claims.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace forkpool::detail {
namespace {

// The worker's view of one job, with index arithmetic in one place.
class JobRunner {
 public:
  JobRunner(Control& control, unsigned worker) : c_(control), job_(control.job), worker_(worker) {}

  bool cancelled() const { return c_.cancelled.load(std::memory_order_relaxed) != 0; }

  // Runs the chunk of item offsets [lo, hi) (0-based within the job), in pieces.
  void run_items(std::uint64_t lo, std::uint64_t hi) const {
    const std::uint64_t piece = piece_size(hi - lo);
    for (; lo < hi && !cancelled(); lo += piece) {
      const std::uint64_t end = std::min(hi, lo + piece);
      job_.run(job_.closure, job_.first + static_cast<std::int64_t>(lo),
               job_.first + static_cast<std::int64_t>(end), worker_);
    }
  }
  void run_units(UnitSpan s) const {
    run_items(std::uint64_t{s.first} * job_.unit,
              std::min(job_.count, std::uint64_t{s.last} * job_.unit));
  }

  void static_blocks() const {
    const Block b = static_block(job_.count, c_.workers, worker_);
    run_items(b.first, b.last);
  }

  void dynamic() const {
    while (!cancelled()) {
      const Block b = claim_dynamic(c_.next, job_.count, job_.chunk);
      if (b.empty()) return;
      run_items(b.first, b.last);
    }
  }

  void guided() const {
    while (!cancelled()) {
      const Block b = claim_guided(c_.next, job_.count, c_.workers, job_.chunk);
      if (b.empty()) return;
      run_items(b.first, b.last);
    }
  }

  void work_stealing(ChunkRange* ranges) const {
    Stealer stealer(ranges, c_.workers, worker_, job_.chunk);
    while (!cancelled()) {
      const UnitSpan s = stealer.next();
      if (s.empty()) return;
      run_units(s);
    }
  }

 private:
  Control& c_;
  const Job& job_;
  unsigned worker_;
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

void prepare_schedule(Control& control, ChunkRange* ranges) {
  control.next.store(0, std::memory_order_relaxed);
  const Job& job = control.job;
  if (job.kind != Schedule::Kind::work_stealing) return;
  const std::uint64_t units = ceil_div(job.count, job.unit);
  for (unsigned w = 0; w < control.workers; ++w) {
    const Block b = static_block(units, control.workers, w);
    ranges[w].reset({static_cast<std::uint32_t>(b.first), static_cast<std::uint32_t>(b.last)});
  }
}

void run_schedule(Control& control, ChunkRange* ranges, unsigned worker) {
  const JobRunner runner(control, worker);
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
