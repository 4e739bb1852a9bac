// Runs a job in a worker: claims chunks with the job's Claimer (include/forkpool/detail/
// claimer.hpp; the scheduling algorithms are described in claims.hpp) and runs them through the
// job's ClosureCode; constant chunks, untimed, through the loop instantiated with the closure
// (constant_chunks.hpp), which calls back here for its rare paths.
//
// A worker runs each chunk in pieces of about a millisecond (next_piece() in chunking.hpp). After
// each piece it commits it (WorkerSlot::commit, with the piece's map_reduce partial) and checks
// the stop flag (relaxed: a late view only runs one more piece), so a map stops about a
// millisecond after the items running when it was stopped, and a dead worker loses at most the
// rest of its chunk. Every claim is recorded in the worker's slot (ClaimWriter: before its CAS;
// ConstantChunkWriter: just after its fetch_add), which with the commits lets the parent find what
// a dead worker lost (recovery.hpp).
//
// Memory order. The job descriptor and the schedule's initial state are plain or relaxed writes
// made by the parent before it bumps the generation counter (release); a worker reads them after
// seeing the new generation (acquire). A claim's CAS is a release (see claims.hpp), so the
// announce before it cannot be reordered after it: a claim that took effect was announced. A
// claim record's fields are made current by a release store of the slot's current_claim (CAS) or
// of the record's own `recorded` word (fetch_add), which the parent reads with acquire
// (read_slot): it sees a whole record or the one before. A piece's results and partial are
// published by the commit store (release). Everything a worker wrote in a job reaches the parent
// through its slot's `finished` word: a seq_cst store the parent reads with acquire (or, for a dead
// worker, through its exit, which the parent learns from waitpid).
#include "scheduler.hpp"

#include "claim_writers.hpp"
#include "tasks.hpp"
#include "worker.hpp"

#include <forkpool/detail/claimer.hpp>

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

// The Claimer's Announce: the writers of the worker's claims, and the commits a CAS claim records
// as its base.
struct WriterAnnounce {
  ClaimWriter* writer;
  ConstantChunkWriter* constant;
  const Commits* commits;
  void operator()(UnitSpan s) const { writer->announce(s, commits->count); }
  void record(UnitSpan s) const { constant->record(s.first); }
};

// The worker's view of one job, with index arithmetic and its slot's bookkeeping in one place.
class JobRunner {
 public:
  JobRunner(Control& control, WorkerSlot& slot, unsigned worker, pid_t parent, TaskBudget& budget)
      : c_(control),
        job_(control.job),
        slot_(slot),
        worker_(worker),
        parent_(parent),
        budget_(budget),
        parent_checked_(Clock::now()) {}

  bool stopped() const { return c_.stop.load(std::memory_order_relaxed) != kRunning; }

  Block items_of(UnitSpan s) const { return ClaimWriter::items_of(job_.unit, job_.count, s); }

  // Claims and runs chunks until the worker's claimer has none left, the job is stopped or the
  // worker's budget is spent.
  void run(const ScheduleState& state) {
    const Clock::time_point started = c_.statistics ? Clock::now() : Clock::time_point{};
    ClaimCounts counts;
    if (has_constant_chunks(job_.rule.kind) && c_.trace == nullptr) {
      counts = run_constant_chunks(*state.counter);
    } else {
      Commits commits = slot_commits();
      ClaimWriter writer(slot_, job_);
      ConstantChunkWriter constant(slot_.claims);
      Claimer claimer(job_.rule, state, worker_, WriterAnnounce{&writer, &constant, &commits});
      if (claimer.measured() || c_.trace != nullptr)
        run_timed(claimer, commits);
      else
        run_untimed([&claimer] { return claimer.next(); }, commits);
      counts = claimer.counts();
    }
    WorkerTally& t = slot_.tally;
    t.chunks += counts.chunks;
    t.operations += counts.operations;
    t.steal_attempts += counts.steal_attempts;
    t.steals += counts.steals;
    if (c_.statistics) t.busy_nanoseconds += nanoseconds(Clock::now() - started);
  }

 private:
  // Constant chunks, untimed: the hot path of dynamic(1), one claim per item, in the loop
  // instantiated with the job's closure.
  ClaimCounts run_constant_chunks(ChunkCounter& counter) {
    ConstantChunkJob job{.counter = &counter,
                         .units = job_.rule.units,
                         .chunk = job_.rule.chunk,
                         .unit = job_.unit,
                         .count = job_.count,
                         .first = job_.first,
                         .worker = worker_,
                         .stop = &c_.stop,
                         .commit = &slot_.commit,
                         .claims = slot_.claims,
                         .allowed = budget_.left(),
                         .piece = piece_,
                         .run_pieces = &loop_run_pieces,
                         .check_parent = &loop_check_parent,
                         .runner = this};
    const ConstantChunksRun run = job_.code->constant_chunks(job_.closure, job, slot_commits());
    budget_.claimed += run.chunks;
    return {.chunks = run.chunks, .operations = run.chunks + run.exhausted};
  }
  // The constant-chunk loop's rare paths (ConstantChunkJob).
  static Commits loop_run_pieces(ConstantChunkJob& job, std::uint64_t lo, std::uint64_t hi,
                                 Commits commits) {
    auto& self = *static_cast<JobRunner*>(job.runner);
    commits = self.run_items(lo, hi, commits);
    job.piece = self.piece_;
    return commits;
  }
  static void loop_check_parent(ConstantChunkJob& job) {
    static_cast<JobRunner*>(job.runner)->check_parent(Clock::now());
  }

  Commits slot_commits() const {
    const std::uint64_t commit = slot_.commit.load(std::memory_order_relaxed);
    return {commit_count(commit), commit_slot(commit)};
  }

  // Claims with `claim` and runs the chunks, none of them timed; returns how many it claimed.
  template <class Claim>
  std::uint64_t run_untimed(Claim claim, Commits& commits) {
    const std::uint64_t allowed = budget_.left();
    std::uint64_t claimed = 0;
    while (claimed != allowed && !stopped()) {
      const UnitSpan s = claim();
      if (s.empty()) break;
      ++claimed;
      const Block b = items_of(s);
      commits = run_items(b.first, b.last, commits);
    }
    budget_.claimed += claimed;
    return claimed;
  }

  // The loop of the schedules that time their chunks: for what the claimer measures, and for
  // the trace.
  template <class TimedClaimer>
  void run_timed(TimedClaimer& claimer, Commits& commits) {
    while (!stopped() && !budget_.spent()) {
      const UnitSpan s = claimer.next();
      if (s.empty()) break;
      ++budget_.claimed;
      const Block b = items_of(s);
      const Clock::time_point start = Clock::now();
      commits = claimer.paced() ? run_piece(b.first, b.last, commits)
                                : run_items(b.first, b.last, commits);
      const Clock::time_point end = Clock::now();
      if (claimer.measured()) claimer.record(s.size(), nanoseconds(end - start));
      if (c_.trace != nullptr) trace(b, start, end);
      if (claimer.paced()) check_parent(end);
    }
  }

  // Runs the chunk of item offsets [lo, hi), piece by piece; returns the commits after it. A
  // chunk shorter than a piece needs no timing, so small chunks cost no clock reads.
  [[nodiscard]] Commits run_items(std::uint64_t lo, std::uint64_t hi, Commits commits) {
    while (lo < hi && !stopped()) {
      if (hi - lo < piece_) return run_short_chunk(lo, hi, commits);
      const Clock::time_point start = Clock::now();
      commits = run_piece(lo, lo + piece_, commits);
      const Clock::time_point end = Clock::now();
      lo += piece_;
      piece_ = next_piece(piece_, nanoseconds(end - start));
      check_parent(end);
    }
    return commits;
  }

  // Runs a chunk shorter than a piece as one piece, untimed.
  [[nodiscard]] Commits run_short_chunk(std::uint64_t lo, std::uint64_t hi, Commits commits) {
    commits = run_piece(lo, hi, commits);
    if (++untimed_ % kUntimedPerParentCheck == 0) check_parent(Clock::now());
    return commits;
  }

  // Runs items [lo, hi), and the tasks they spawned, and commits them; returns the new commits.
  [[nodiscard]] Commits run_piece(std::uint64_t lo, std::uint64_t hi, Commits commits) {
    const std::int64_t first = job_.first + static_cast<std::int64_t>(lo);
    {
      const ItemFrame tasks(first);
      job_.code->chunk(job_.closure, first, first + static_cast<std::int64_t>(hi - lo), worker_,
                       commits.current);
    }
    commits.current ^= 1;
    commits.count += hi - lo;
    slot_.commit.store(commits.word(), std::memory_order_release);
    return commits;
  }

  static std::uint64_t nanoseconds(Clock::duration d) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }

  void trace(Block b, Clock::time_point start, Clock::time_point end) {
    if (slot_.traced >= c_.trace_capacity) return;
    const auto since_map = [this](Clock::time_point t) {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count() -
             c_.map_start_nanoseconds;
    };
    c_.trace[std::size_t{worker_} * c_.trace_capacity + slot_.traced++] = {
        job_.first + static_cast<std::int64_t>(b.first), b.last - b.first, since_map(start),
        since_map(end) - since_map(start)};
  }

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
  TaskBudget& budget_;
  std::uint64_t piece_ = 1;
  std::uint64_t untimed_ = 0;  // chunks run as one untimed piece
  Clock::time_point parent_checked_;
};

}  // namespace

Job make_job(const ClosureCode* code, const void* closure, std::int64_t first, std::uint64_t count,
             Schedule schedule, unsigned workers, std::uint64_t unit, std::uint64_t chunk_stride) {
  if (unit == 0) unit = std::max<std::uint64_t>(1, ceil_div(count, ChunkRange::kMaxUnits));
  const auto units = static_cast<std::uint32_t>(ceil_div(count, unit));
  Job job{
      code, closure, first, count, unit, schedule, make_claim_rule(schedule, units, workers, unit)};
  job.rule.chunk_stride = chunk_stride;
  return job;
}

ScheduleState schedule_state(Control& control, ChunkRange* ranges) {
  return {&control.counter, ranges, control.times};
}

void prepare_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots) {
  reset_schedule_state(control.job.rule, schedule_state(control, ranges));
  if (control.tasks != nullptr) prepare_tasks(*control.tasks);
  for (unsigned w = 0; w < control.workers; ++w) reset_claims(slots[w], control.job.first);
}

void run_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots, unsigned worker,
                  pid_t parent, TaskBudget& budget) {
  JobTasks tasks(control, worker, parent);
  JobRunner(control, slots[worker], worker, parent, budget).run(schedule_state(control, ranges));
  tasks.help();
}

}  // namespace forkpool::detail
