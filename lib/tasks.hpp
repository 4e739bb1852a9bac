// The task scheduler's shared state, and its entry points for the pool (parent side) and the job
// runner (worker side). The algorithm is described in tasks.cpp.
#pragma once

#include "control.hpp"

#include <forkpool/detail/item_frame.hpp>
#include <forkpool/detail/segment.hpp>
#include <forkpool/detail/task_deque.hpp>
#include <forkpool/tasks.hpp>

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace forkpool::detail {

// One worker's part, in the segment: its deque, its task arena (only it allocates there), and
// whether it may still spawn from the job's items.
struct alignas(64) WorkerTasks {
  WorkerTasks(std::atomic<TaskHeader*>* ring, std::uint64_t capacity, std::byte* arena)
      : deque(ring, capacity), arena(arena) {}

  TaskDeque<TaskHeader*> deque;
  std::byte* const arena;
  // Set by the parent before each job, cleared by the worker once its claimer has run dry (or by
  // the parent when the worker dies): idle workers stay in the job while any is set.
  alignas(64) std::atomic<std::uint32_t> claiming{0};
};

// The pool's tasks, in the segment; made before the fork (make_task_pool).
struct TaskPool {
  // Tasks spawned in this job and not finished yet (a running task counts).
  alignas(64) std::atomic<std::int64_t> pending{0};
  // Whether any task was pushed in this job (set once, then only read).
  alignas(64) std::atomic<std::uint32_t> spawned{0};
  // Idle workers sleep on wake_epoch (a futex word); sleepers counts them (see tasks.cpp).
  alignas(64) std::atomic<std::uint32_t> wake_epoch{0};
  std::atomic<std::uint32_t> sleepers{0};

  unsigned workers = 0;
  std::size_t arena_bytes = 0;
  std::size_t bytes = 0;  // of the whole block, for free_task_pool
  WorkerTasks* per_worker = nullptr;
};

// Parent. The pool's tasks: P deques of `deque_capacity` tasks and P arenas of `arena_bytes`,
// in one block of the segment (throws SegmentFull).
TaskPool* make_task_pool(Segment& segment, unsigned workers, std::uint64_t deque_capacity,
                         std::size_t arena_bytes);
void free_task_pool(Segment& segment, TaskPool* pool) noexcept;

// Parent, before publishing a job (no worker is in one): empty deques, no pending tasks, every
// worker claiming.
void prepare_tasks(TaskPool& pool) noexcept;

// Parent, when it has reaped worker w: the worker no longer claims; if tasks were outstanding,
// some may have been lost with it (running, or its continuation waiting for children), so the
// job stops with kTaskLost rather than wait for them forever. Not for a worker that `retired`
// (Options::max_tasks_per_child): it left from its job's end, holding no task.
void tasks_worker_died(Control& control, unsigned w, bool retired) noexcept;

// Worker: makes spawn and TaskGroup usable for the job about to run, and unusable again after.
class JobTasks {
 public:
  JobTasks(Control& control, unsigned worker, pid_t parent) noexcept;
  ~JobTasks();
  JobTasks(const JobTasks&) = delete;
  JobTasks& operator=(const JobTasks&) = delete;

  // Once the worker's claimer has run dry: runs other workers' tasks until none are outstanding
  // and no worker still runs items, or the job stops.
  void help() noexcept;
};

}  // namespace forkpool::detail
