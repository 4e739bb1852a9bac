// Tasks that spawn tasks: the scheduler behind forkpool::spawn and forkpool::TaskGroup
// (include/forkpool/tasks.hpp).
//
// Work stealing over processes. Each worker owns a bounded Chase-Lev deque in the segment
// (detail/task_deque.hpp: Chase and Lev, SPAA 2005; memory orders after Le et al., PPoPP 2013).
// A spawn pushes the child onto the spawning worker's own deque; the worker pops its newest task
// when it runs out of work of its own, and an idle worker steals the oldest task of another
// (its last successful victim first, then the others from a random start), which in divide and
// conquer is the biggest piece left.
//
// Help-first, not work-first. Cilk's work-first spawn runs the child at once and lets a thief
// resume the parent's continuation; here a thief is another process, and the continuation is a
// frame on the spawning worker's private stack, which it cannot see or run. So the child is what
// travels: its callable and arguments are copied into the segment, the parent goes on, and a
// wait runs other tasks (its own children first, newest first; then stolen ones) until its
// children are done, instead of blocking.
//
// Where a task lives. Its record (header, callable, arguments, result) is written into the task
// arena of the worker that spawns it: a region of the segment reserved for that worker when the
// pool was built (MAP_NORESERVE: a page costs nothing until touched), where only that worker
// allocates, by bumping a pointer. No worker ever calls the segment's allocator. Records are
// given back in stack order: a task's children have all finished when it ends (the implicit sync
// of forkpool::spawn, and a TaskGroup waits in its destructor), so when a task or a piece of map
// items ends, the arena goes back to where it was when it began; a TaskGroup gives back its
// children's records when it is destroyed. One exception: a record allocated for a group that is
// not the innermost open one (forkpool::spawn inside a TaskGroup's scope, or two groups used in
// turn) must outlive the inner group, so it pins the arena: the inner group gives back only down
// to the pin. When the arena is full, or the deque is, the spawner runs the child itself at once
// (no parallelism lost that matters: the deque then holds thousands of tasks for the thieves).
//
// Counting. Each group (a TaskGroup, or a task's or piece's implicit group) has a pending count
// in the arena; the pool has one count of the job's tasks not finished yet (TaskPool::pending).
// A spawn adds one to both before the push (which publishes them); a task finishing subtracts
// one from both, its group's first: after that the record may be reused. A result is written
// before its group's decrement (release) and read after the wait saw zero (acquire).
//
// Termination of a job. Items are claimed as before (scheduler.cpp); once its claimer runs dry,
// a worker clears its `claiming` flag and helps: it runs tasks while any task is pending or any
// worker still claims (an item still running may spawn), and leaves when no worker claims and
// no task is pending. Both only fall: a task can only be spawned by a running task (counted) or
// a claiming worker's item, so the first moment both read zero, the job's tasks are done. The
// parent clears a dead worker's flag. One shortcut (may_leave): in a job of at least one item
// per worker in which no task has been pushed yet, a plain map, a worker leaves as soon as no
// task is pending, as it did before tasks existed. Correctness does not depend on the helpers:
// every spawner waits for its own children and runs them itself if nobody stole them.
//
// Idle workers. A worker with nothing to run polls, yielding the CPU, for kIdlePoll, then sleeps
// on a shared futex (TaskPool::wake_epoch) for at most kIdleSleep, after announcing itself in
// TaskPool::sleepers and looking once more. A push, a group or the job's count reaching zero,
// and a claiming flag cleared wake the sleepers when there are any: seq_cst on both sides, a
// Dekker pattern (the waker writes its event then reads sleepers; the sleeper writes sleepers
// then reads the events), so a wake-up is never lost. Never a lock.
//
// Stops and deaths. A map stops (an exception, cancel(), a timeout) through Control::stop: no
// task starts after it, and a wait that sees it unwinds its task with TasksStopped, so the
// workers leave the job within about kIdleSleep plus the task running. A worker can die at any
// instruction, and with it a task it was running or a continuation waiting for children: the
// parent, reaping a worker while tasks are pending, stops the job with kTaskLost and the map
// throws BrokenPool (tasks are not run again). Once stopped, nothing is given back to an arena
// any more: a task of an abandoned frame may still be running elsewhere, reading its record.
#include "tasks.hpp"

#include "wait.hpp"
#include "worker.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <new>
#include <stdexcept>
#include <string>

namespace forkpool::detail {

TaskFrame g_frame{};
std::byte* g_arena_top = nullptr;

namespace {

using Clock = std::chrono::steady_clock;

// An idle worker polls this long, yielding the CPU, before it sleeps (as worker.cpp's kIdlePoll).
constexpr auto kIdlePoll = std::chrono::microseconds(50);
// A sleeping idle worker wakes this often to see a stop the wake-ups do not cover (cancel(), a
// timeout) and to check that its parent is alive.
constexpr auto kIdleSleep = std::chrono::milliseconds(1);
// Tries on one victim whose deque lost a race (another thief or its owner took the task).
constexpr unsigned kStealRetries = 4;

// Thrown by a wait when the job has stopped: unwinds the task that waits (tasks.hpp).
struct TasksStopped {};

// This process's part in the current job; `me` is nullptr outside one.
struct Worker {
  Control* control = nullptr;
  TaskPool* pool = nullptr;
  WorkerTasks* me = nullptr;
  unsigned index = 0;
  pid_t parent = 0;
  std::byte* end = nullptr;  // of the arena; its first free byte is g_arena_top
  unsigned victim = 0;       // whom to steal from first
  std::uint64_t random = 0;
  const std::byte* stack_low = nullptr;  // this process's stack, for check_not_on_stack
  const std::byte* stack_high = nullptr;
};
Worker g_worker;

std::size_t round_up(std::size_t n, std::size_t align) { return (n + align - 1) / align * align; }

bool stopped() { return g_worker.control->stop.load(std::memory_order_relaxed) != kRunning; }

std::byte* bump(std::size_t bytes, std::size_t align) {
  const auto at = round_up(reinterpret_cast<std::uintptr_t>(g_arena_top), align);
  auto* p = reinterpret_cast<std::byte*>(at);
  if (p > g_worker.end || bytes > static_cast<std::size_t>(g_worker.end - p)) return nullptr;
  g_arena_top = p + bytes;
  return p;
}

void wake_sleepers(TaskPool& pool) {
  // Seq_cst: the other half of the sleeper's Dekker pattern (see the top of this file); the
  // caller's event (a push, a count's decrement, a flag cleared) was seq_cst too.
  if (pool.sleepers.load(std::memory_order_seq_cst) == 0) return;
  pool.wake_epoch.fetch_add(1, std::memory_order_relaxed);
  futex_wake(pool.wake_epoch);
}

bool any_task_queued(const TaskPool& pool) {
  for (unsigned w = 0; w < pool.workers; ++w)
    if (!pool.per_worker[w].deque.empty()) return true;
  return false;
}

// No worker claims items and no task is pending: the job's tasks are done.
bool quiescent(const TaskPool& pool) {
  for (unsigned w = 0; w < pool.workers; ++w)
    if (pool.per_worker[w].claiming.load(std::memory_order_seq_cst) != 0) return false;
  return pool.pending.load(std::memory_order_seq_cst) == 0;
}

// Whether a worker whose claimer has run dry may leave the job: when it is quiescent, or at once
// in a job of at least one item per worker where no task has been spawned (a plain map: staying
// for the items still running would only delay the worker's finish, and the map's, on a loaded
// machine). A job of fewer items than workers (pool.for_each(range(1), root)) keeps its idle
// workers until quiescence: its items are the roots of task trees.
bool may_leave(const TaskPool& pool) {
  if (pool.spawned.load(std::memory_order_relaxed) == 0 &&
      g_worker.control->job.count >= pool.workers &&
      pool.pending.load(std::memory_order_seq_cst) == 0)
    return true;
  return quiescent(pool);
}

std::uint64_t next_random() {
  std::uint64_t& x = g_worker.random;  // xorshift64
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

// A worker with nothing to run: yields for kIdlePoll, then sleeps until woken or kIdleSleep.
class Idle {
 public:
  void reset() { since_ = Clock::time_point{}; }

  // `done` says whether the wait is over; checked once more after announcing the sleep.
  template <class Done>
  void wait(Done done) {
    const Clock::time_point now = Clock::now();
    if (since_ == Clock::time_point{}) since_ = now;
    if (now - since_ < kIdlePoll) {
      sched_yield();
      return;
    }
    TaskPool& pool = *g_worker.pool;
    const std::uint32_t seen = pool.wake_epoch.load(std::memory_order_relaxed);
    pool.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (!done() && !any_task_queued(pool) && !stopped())
      futex_wait(pool.wake_epoch, seen, kIdleSleep);
    pool.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (getppid() != g_worker.parent) exit_worker(0);
  }

 private:
  Clock::time_point since_{};
};

void begin_frame(std::int64_t item) {
  g_frame = {nullptr, g_arena_top, g_arena_top, nullptr, item};
}

// Gives the frame's arena back (unless the job stopped: see the top of this file) and returns to
// the frame it interrupted.
void end_frame(const TaskFrame& outer) {
  if (!stopped()) g_arena_top = g_frame.mark;
  g_frame = outer;
}

void run_task(TaskHeader& task);

// Runs one task: one of this worker's own (the newest), else one stolen. False if none was found
// or the job has stopped.
bool run_one() {
  if (stopped()) return false;
  TaskHeader* task = nullptr;
  if (g_worker.me->deque.try_pop(task)) {
    run_task(*task);
    return true;
  }
  const TaskPool& pool = *g_worker.pool;
  for (unsigned k = 0; k < pool.workers; ++k) {
    const unsigned v = (g_worker.victim + k) % pool.workers;
    if (v == g_worker.index) continue;
    for (unsigned attempt = 0; attempt < kStealRetries; ++attempt) {
      const Stolen<TaskHeader*> s = pool.per_worker[v].deque.steal();
      if (s.outcome == Steal::empty) break;
      if (s.outcome == Steal::success) {
        g_worker.victim = v;
        run_task(*s.item);
        return true;
      }
    }
  }
  g_worker.victim = static_cast<unsigned>(next_random() % pool.workers);
  return false;
}

// Runs tasks until `count` is zero (true) or the job stops (false).
bool help_until_zero(const std::atomic<std::uint32_t>& count) {
  Idle idle;
  for (;;) {
    // Acquire: the children's results (written before their decrements) are visible.
    if (count.load(std::memory_order_acquire) == 0) return true;
    if (stopped()) return false;
    if (run_one())
      idle.reset();
    else
      idle.wait([&count] { return count.load(std::memory_order_seq_cst) == 0; });
  }
}

// Runs a task's body in a frame of its own, then waits for its implicit group. An exception is
// the map's TaskError (which stops the job).
void execute(TaskHeader& task) noexcept {
  const TaskFrame outer = g_frame;
  begin_frame(task.item);
  try {
    task.run(task.record);
    if (g_frame.implicit != nullptr && !help_until_zero(*g_frame.implicit)) throw TasksStopped{};
  } catch (const TasksStopped&) {
  } catch (...) {
    record_task_error(task.item);
  }
  end_frame(outer);
}

void run_task(TaskHeader& task) {
  execute(task);
  TaskPool& pool = *g_worker.pool;
  // Seq_cst (a release is what the result needs): a waker's event, see wake_sleepers. The group
  // first: the record, the group's count included, may be reused as soon as it reaches zero.
  const bool group_done = task.group->fetch_sub(1, std::memory_order_seq_cst) == 1;
  const bool job_done = pool.pending.fetch_sub(1, std::memory_order_seq_cst) == 1;
  if (group_done || job_done) wake_sleepers(pool);
}

void find_stack() {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
  void* low = nullptr;
  std::size_t size = 0;
  if (pthread_attr_getstack(&attr, &low, &size) == 0) {
    g_worker.stack_low = static_cast<const std::byte*>(low);
    g_worker.stack_high = g_worker.stack_low + size;
  }
  pthread_attr_destroy(&attr);
}

}  // namespace

TaskPool* make_task_pool(Segment& segment, unsigned workers, std::uint64_t deque_capacity,
                         std::size_t arena_bytes) {
  const std::size_t arena = round_up(arena_bytes, 64);
  const std::size_t per_worker_at = round_up(sizeof(TaskPool), 64);
  const std::size_t rings_at = per_worker_at + round_up(sizeof(WorkerTasks) * workers, 64);
  const std::size_t ring_bytes = round_up(sizeof(std::atomic<TaskHeader*>) * deque_capacity, 64);
  const std::size_t arenas_at = rings_at + ring_bytes * workers;
  const std::size_t bytes = arenas_at + arena * workers;
  auto* block = static_cast<std::byte*>(
      segment.allocate(bytes, 64, "the pool's task deques and task arenas"));
  auto* pool = new (block) TaskPool;
  pool->workers = workers;
  pool->arena_bytes = arena;
  pool->bytes = bytes;
  pool->per_worker = reinterpret_cast<WorkerTasks*>(block + per_worker_at);
  for (unsigned w = 0; w < workers; ++w) {
    auto* ring = new (block + rings_at + ring_bytes * w) std::atomic<TaskHeader*>[deque_capacity];
    new (&pool->per_worker[w]) WorkerTasks(ring, deque_capacity, block + arenas_at + arena * w);
  }
  return pool;
}

void free_task_pool(Segment& segment, TaskPool* pool) noexcept {
  segment.deallocate(pool, pool->bytes);
}

void prepare_tasks(TaskPool& pool) noexcept {
  pool.pending.store(0, std::memory_order_relaxed);
  pool.spawned.store(0, std::memory_order_relaxed);
  for (unsigned w = 0; w < pool.workers; ++w) {
    pool.per_worker[w].deque.reset();
    pool.per_worker[w].claiming.store(1, std::memory_order_relaxed);
  }
}

void tasks_worker_died(Control& control, unsigned w, bool retired) noexcept {
  TaskPool& pool = *control.tasks;
  pool.per_worker[w].claiming.store(0, std::memory_order_seq_cst);
  if (!retired && pool.pending.load(std::memory_order_seq_cst) != 0) {
    std::uint32_t running = kRunning;
    control.stop.compare_exchange_strong(running, kTaskLost, std::memory_order_relaxed);
  }
  wake_sleepers(pool);
}

JobTasks::JobTasks(Control& control, unsigned worker, pid_t parent) noexcept {
  if (g_worker.stack_high == nullptr) find_stack();
  g_worker.control = &control;
  g_worker.pool = control.tasks;
  g_worker.me = &control.tasks->per_worker[worker];
  g_worker.index = worker;
  g_worker.parent = parent;
  g_arena_top = g_worker.me->arena;
  g_worker.end = g_arena_top + control.tasks->arena_bytes;
  g_worker.victim = (worker + 1) % control.tasks->workers;
  g_worker.random = 0x9E3779B97F4A7C15u ^ (std::uint64_t{worker} << 32) ^
                    static_cast<std::uint64_t>(this_process());
  begin_frame(0);
}

JobTasks::~JobTasks() { g_worker.me = nullptr; }

void JobTasks::help() noexcept {
  TaskPool& pool = *g_worker.pool;
  g_worker.me->claiming.store(0, std::memory_order_seq_cst);
  wake_sleepers(pool);
  Idle idle;
  while (!stopped()) {
    if (run_one()) {
      idle.reset();
      continue;
    }
    if (may_leave(pool)) return;
    idle.wait([&pool] { return may_leave(pool); });
  }
}

void ItemFrame::end_tasks() noexcept {
  if (g_frame.implicit != nullptr) static_cast<void>(help_until_zero(*g_frame.implicit));
  if (!stopped()) g_arena_top = g_frame.mark;
  begin_frame(g_frame.item);
}

void require_worker(const char* what) {
  if (g_worker.me == nullptr)
    throw std::logic_error(std::string(what) +
                           ": only inside a pool worker, in a map, for_each or map_reduce item or "
                           "in a task it spawned (this process is not running a pool's job)");
}

void check_not_on_stack(const void* p, std::size_t argument, const char* what) {
  const auto* b = static_cast<const std::byte*>(p);
  if (b >= g_worker.stack_low && b < g_worker.stack_high)
    throw std::invalid_argument(
        std::string(what) + ": argument " + std::to_string(argument) +
        " points into the spawning worker's stack; the task may run in another worker process, "
        "which cannot see it. Put the data in a SharedArray, or return values through "
        "TaskGroup::spawn's TaskResult");
}

void* allocate_task(std::size_t bytes, std::size_t align, const TaskGroup* group) {
  std::byte* p = bump(bytes, align);
  if (p != nullptr && group != g_frame.innermost) g_frame.pin = g_arena_top;
  return p;
}

std::atomic<std::uint32_t>* implicit_group() {
  require_worker("forkpool::spawn");
  if (g_frame.implicit == nullptr) {
    void* p = allocate_task(sizeof(std::atomic<std::uint32_t>), alignof(std::atomic<std::uint32_t>),
                            nullptr);
    if (p != nullptr) g_frame.implicit = new (p) std::atomic<std::uint32_t>(0);
  }
  return g_frame.implicit;
}

void submit(TaskHeader& task) {
  task.item = g_frame.item;
  TaskPool& pool = *g_worker.pool;
  // Relaxed: published to whoever takes the task by the push (seq_cst, so also a release).
  task.group->fetch_add(1, std::memory_order_relaxed);
  pool.pending.fetch_add(1, std::memory_order_relaxed);
  if (g_worker.me->deque.try_push(&task)) {
    // Read first: after the first push of a job, the line is only read.
    if (pool.spawned.load(std::memory_order_relaxed) == 0)
      pool.spawned.store(1, std::memory_order_relaxed);
    wake_sleepers(pool);
    return;
  }
  task.group->fetch_sub(1, std::memory_order_relaxed);
  pool.pending.fetch_sub(1, std::memory_order_relaxed);
  execute(task);
}

}  // namespace forkpool::detail

namespace forkpool {

TaskGroup::TaskGroup() {
  detail::require_worker("forkpool::TaskGroup");
  mark_ = detail::g_arena_top;
  // Not allocate_task: the group's own count goes where the group's records start, and it is
  // given back with them.
  void* p = detail::bump(sizeof(std::atomic<std::uint32_t>), alignof(std::atomic<std::uint32_t>));
  pending_ = p == nullptr ? nullptr : new (p) std::atomic<std::uint32_t>(0);
  outer_ = detail::g_frame.innermost;
  detail::g_frame.innermost = this;
}

TaskGroup::~TaskGroup() {
  const bool done = pending_ == nullptr || detail::help_until_zero(*pending_);
  TaskGroup** link = &detail::g_frame.innermost;
  while (*link != nullptr && *link != this) link = &(*link)->outer_;
  if (*link == nullptr) return;
  const bool innermost = link == &detail::g_frame.innermost;
  *link = outer_;
  if (innermost && done && !detail::stopped())
    detail::g_arena_top = std::max(mark_, detail::g_frame.pin);
}

void TaskGroup::wait() {
  if (pending_ != nullptr && !detail::help_until_zero(*pending_)) throw detail::TasksStopped{};
  if (detail::stopped()) throw detail::TasksStopped{};
  ++waits_;
}

}  // namespace forkpool
