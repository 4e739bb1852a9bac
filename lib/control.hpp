// The pool's control block: the part of the segment through which the parent and the workers
// talk. Allocated once per pool, before the fork.
#pragma once

#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/claim_records.hpp>
#include <forkpool/detail/claimer.hpp>
#include <forkpool/detail/closures.hpp>
#include <forkpool/schedule.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace forkpool::detail {

// A job as the workers see it: indices [first, first + count), cut into units of `unit` items
// (1 unless count exceeds what a ChunkRange or ChunkCounter can index), handed out under `rule`.
// A map is one job, plus one more for each span of items that a dead worker left unfinished (see
// recovery.hpp).
struct Job {
  const ClosureCode* code;
  const void* closure;
  std::int64_t first;
  std::uint64_t count;
  std::uint64_t unit;
  Schedule schedule;
  ClaimRule rule;
};

// Why a map stopped early; the first reason wins. kTaskLost: a worker died while tasks were
// outstanding (tasks.hpp).
enum Stop : std::uint32_t {
  kRunning = 0,
  kTaskError = 1,
  kCancelled = 2,
  kTimedOut = 3,
  kTaskLost = 4
};

struct TaskPool;

// The first exception of a map, written by the worker that claimed it.
struct TaskErrorSlot {
  std::int64_t index;
  char type[256];
  char message[2048];
};

// What a worker did in a map, for Pool::last_stats().
struct WorkerTally {
  std::uint64_t chunks, operations, steal_attempts, steals, busy_nanoseconds;
};

// One chunk a worker ran, when the map is traced (Options::trace_chunks); times from the map's
// start.
struct ChunkTrace {
  std::int64_t first;
  std::uint64_t items;
  std::int64_t start_nanoseconds;
  std::int64_t nanoseconds;
};

// What one worker slot has claimed and finished; what the parent reads to find the items a dead
// worker lost. Only the slot's worker writes it while a job runs, the parent between jobs.
//
// The claim records: two, written in turn, so that the parent always reads a whole one, whenever
// the worker died. A CAS claim fills the one that is not current and then makes it current (a
// release store of current_claim, read with acquire); a constant chunk's says itself which is the
// later (ClaimRecord).
//
// The commit word: bits 0-62 count the items this slot has finished in the current map; bit 63
// says which of the slot's two map_reduce partials is current. The worker writes a piece's
// partial into the other one and then publishes both with one release store, so a piece counts
// (in the partial and in the count) entirely or not at all, whenever the worker dies.
struct alignas(64) WorkerSlot {
  ClaimRecord claims[2];
  std::atomic<std::uint32_t> current_claim{0};
  std::atomic<std::uint64_t> commit{0};
  // The generation of the last job this slot's worker finished. A new worker that runs
  // Options::initializer first sets it to the generation it was forked at once that has run.
  std::atomic<std::uint32_t> finished{0};
  // Set by a worker that retires (Options::max_tasks_per_child) just before it exits, having
  // committed every item it claimed; read by the parent after reaping it, reset before a fork.
  std::atomic<std::uint32_t> retired{0};

  // The worker's share of the map's statistics, added to at the end of each job (before
  // `finished`, which publishes them), reset by the parent before each map.
  WorkerTally tally{};
  std::uint32_t traced = 0;  // chunk records written to the worker's part of Control::trace
};

inline constexpr std::size_t kInlineClosureBytes = 512;

struct Control {
  explicit Control(unsigned workers) : workers(workers) {}

  const unsigned workers;
  Job job{nullptr, nullptr, 0, 0, 1, Schedule::static_blocks(),
          {}};  // written by the parent before it bumps `generation`

  // Bumped (release) by the parent to publish a job or the shutdown; futex word for idle workers.
  alignas(64) std::atomic<std::uint32_t> generation{0};
  std::atomic<std::uint32_t> sleepers{0};  // workers in (or entering) futex_wait on generation
  std::atomic<std::uint32_t> shutdown{0};

  // Set while the parent sleeps on the wake-up eventfd; a worker that finishes a job then writes
  // to it (a Dekker-style handshake, seq_cst on both sides, with WorkerSlot::finished).
  alignas(64) std::atomic<std::uint32_t> parent_waiting{0};

  // A Stop: the workers stop at their next piece once it is set.
  alignas(64) std::atomic<std::uint32_t> stop{kRunning};
  TaskErrorSlot error{};

  // 1 + the index of the first worker whose Options::initializer threw; that worker then writes
  // the exception into initializer_error (its index is the worker's) and exits. The parent reads
  // it after reaping the worker.
  std::atomic<std::uint32_t> initializer_failed{0};
  TaskErrorSlot initializer_error{};

  // The self-scheduling schedules' shared counter (claims.hpp), alone on its cache line: every
  // claim moves the line to the claiming worker, and nothing else should move with it.
  alignas(64) ChunkCounter counter;
  // Per worker: adaptive factoring's estimates; allocated with the pool, before the fork.
  alignas(64) SharedItemTime* times = nullptr;

  // Statistics: whether workers time their jobs, and the chunk records of a traced map
  // (trace_capacity per worker; nullptr when the map is not traced). Set before a map's jobs.
  bool statistics = true;
  ChunkTrace* trace = nullptr;
  std::uint32_t trace_capacity = 0;
  std::int64_t map_start_nanoseconds = 0;  // steady clock; the origin of the trace's times

  // The workers' task deques and arenas (tasks.hpp); made with the pool.
  TaskPool* tasks = nullptr;

  alignas(64) std::byte closure[kInlineClosureBytes];
};

}  // namespace forkpool::detail
