// The scheduler's entry points; the algorithm is described in scheduler.cpp.
#pragma once

#include "control.hpp"

#include <sys/types.h>

#include <cstdint>

namespace forkpool::detail {

// The job for `count` items from `first` under `schedule`, with `closure` already in the segment.
// Requires count < 2^62.
// unit = 0 picks the unit from count; a chunk_stride > 1 runs only every chunk_stride-th chunk
// of a static_chunked schedule (recovery.hpp).
Job make_job(const ClosureCode* code, const void* closure, std::int64_t first, std::uint64_t count,
             Schedule schedule, unsigned workers, std::uint64_t unit = 0,
             std::uint64_t chunk_stride = 1);

// The shared state of the pool's schedule.
ScheduleState schedule_state(Control& control, ChunkRange* ranges);

// Parent, before publishing control.job: resets the schedule's shared state and the workers'
// claims.
void prepare_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots);

// The chunks a worker process has claimed, against Options::max_tasks_per_child (0: no limit).
struct TaskBudget {
  unsigned limit = 0;
  std::uint64_t claimed = 0;
  bool spent() const { return limit != 0 && claimed >= limit; }
  std::uint64_t left() const {
    if (limit == 0) return UINT64_MAX;
    return spent() ? 0 : limit - claimed;
  }
};

// Worker `worker`: runs its share of control.job, then helps with the tasks its items spawned
// (tasks.hpp), and returns when there is nothing left for it, or when `budget` is spent (then at a
// chunk boundary, holding no claimed item uncommitted).
// Between pieces it checks that `parent` is still its parent, and exits if not.
void run_schedule(Control& control, ChunkRange* ranges, WorkerSlot* slots, unsigned worker,
                  pid_t parent, TaskBudget& budget);

}  // namespace forkpool::detail
