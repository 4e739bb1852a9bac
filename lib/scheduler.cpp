// The scheduler: how the workers of a pool share out one map, with no lock anywhere.
//
// A map is the index range [first, first + count). Every schedule hands out half-open chunks of
// it; each chunk is run by exactly one worker, once, through the job's ChunkFn.
//
//  static_blocks  Worker w runs block w of P near-equal contiguous blocks (static_block()).
//  dynamic(c)     Self-scheduling: one shared counter, fetch_add(c) per chunk.
//  guided(m)      GSS (Polychronopoulos & Kuck, IEEE Trans. Computers 1987): a CAS loop on the
//                 shared counter takes max(m, ceil(R / P)) of the R items left.
//  work_stealing  Each worker owns a ChunkRange, initialised to its static block (in units).
//                 It takes chunks from the front (own_take(): 1/8 of what is left, at least the
//                 grain) and, when its range is empty, steals the back half of a victim's
//                 (steal-half, Hendler & Shavit, PODC 2002), moves it into its own range, and
//                 goes on from there; its own range is then stealable in turn. Victims: the last
//                 victim that paid off first (sticky), then every other worker from a random
//                 start (as in taskflow's executor and rayon). A worker stops when one pass over
//                 all the others finds every range empty and no CAS was lost to contention. Ranges
//                 only shrink, and a stolen range is invisible only while it moves from the
//                 victim's word to the thief's, where the thief itself runs it; so a worker that
//                 stops early can only leave work to a worker that is still running.
//                 The split is on demand: a range is cut only when a thief comes for it, so a
//                 uniform map costs about 8 ln(N / (P * grain)) CASes per worker and no steal.
//
// A worker runs each chunk in up to 16 pieces of at least 1024 items (piece_size()) and checks the
// cancel flag before each (relaxed: a late view only runs one more piece), so an exception in f
// stops the map within a sixteenth of a large chunk per worker, whatever the schedule.
//
// Memory order. The job descriptor and the schedule's initial state are plain or relaxed writes
// made by the parent before it bumps the generation counter (release); a worker reads them after
// seeing the new generation (acquire). Claims on the shared counter and on the ChunkRanges are
// relaxed read-modify-writes: they hand out indices, and nothing else is published through them
// (see chunk_range.hpp). What the workers write (results, partials, the error slot) reaches the
// parent through the completion counter: each worker's fetch_add is acq_rel, so the parent's
// acquire load that sees P has seen every worker's writes.
#include "scheduler.hpp"

#include <forkpool/detail/chunking.hpp>

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
    // count < 2^62 and chunk <= count, so the counter cannot wrap even after P overshoots.
    const std::uint64_t chunk = std::min(job_.chunk, job_.count);
    while (!cancelled()) {
      const std::uint64_t lo = c_.next.fetch_add(chunk, std::memory_order_relaxed);
      if (lo >= job_.count) return;
      run_items(lo, std::min(job_.count, lo + chunk));
    }
  }

  void guided() const {
    std::uint64_t lo = c_.next.load(std::memory_order_relaxed);
    while (!cancelled() && lo < job_.count) {
      const std::uint64_t n = guided_chunk(job_.count - lo, c_.workers, job_.chunk);
      if (c_.next.compare_exchange_weak(lo, lo + n, std::memory_order_relaxed)) {
        run_items(lo, lo + n);
        lo = c_.next.load(std::memory_order_relaxed);
      }
    }
  }

  void work_stealing(ChunkRange* ranges) const {
    ChunkRange& own = ranges[worker_];
    const std::uint64_t grain = job_.chunk;
    const unsigned workers = c_.workers;
    std::uint64_t rng = 0x9E3779B97F4A7C15ull * (worker_ + 1);
    unsigned sticky = worker_;
    while (!cancelled()) {
      const UnitSpan mine = own.take_front([grain](std::uint64_t r) { return own_take(r, grain); });
      if (!mine.empty()) {
        run_units(mine);
        continue;
      }
      if (workers == 1 || !steal_into(own, ranges, grain, sticky, rng)) return;
    }
  }

 private:
  // One or more passes over the other workers; false once a pass finds them all empty.
  bool steal_into(ChunkRange& own, ChunkRange* ranges, std::uint64_t grain, unsigned& sticky,
                  std::uint64_t& rng) const {
    const unsigned workers = c_.workers;
    const auto amount = [grain](std::uint64_t r) { return steal_amount(r, grain); };
    for (;;) {
      bool contended = false;
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      const unsigned start = static_cast<unsigned>(rng % workers);
      for (unsigned k = 0; k <= workers; ++k) {
        const unsigned v = k == 0 ? sticky : (start + k) % workers;
        if (v == worker_) continue;
        const StealResult r = ranges[v].steal_back(amount);
        if (r.outcome == Steal::success) {
          own.reset(r.span);
          sticky = v;
          return true;
        }
        contended |= r.outcome == Steal::retry;
      }
      if (!contended || cancelled()) return false;
    }
  }

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
