// Tasks that spawn tasks, inside a pool's workers (divide and conquer: quicksort, tree walks).
//
//   pool.apply(quicksort, data, std::int64_t{0}, n);  // the root task; spawns may be stolen
//
//   void quicksort(int* a, std::int64_t lo, std::int64_t hi) {   // a: in a SharedArray
//     if (hi - lo < 10000) return std::sort(a + lo, a + hi);
//     const std::int64_t mid = partition(a, lo, hi);
//     forkpool::spawn(quicksort, a, lo, mid);   // may run on another worker
//     quicksort(a, mid, hi);                    // the children run before this task ends
//   }
//
//   forkpool::TaskGroup g;                      // children with results
//   auto left = g.spawn(sum_tree, node->left);  // TaskResult<std::int64_t>
//   const std::int64_t right = sum_tree(node->right);
//   g.wait();                                   // runs other tasks meanwhile
//   return left.get() + right;
//
// Each worker has a deque of tasks in the shared segment; spawn pushes onto the spawning
// worker's own deque, and idle workers steal the oldest task of another's. A task may therefore
// run in another PROCESS, which cannot see the spawning worker's stack or heap:
//  - f and the arguments are copied into the segment, so they must be trivially copyable, like a
//    map's callable. Pointers they carry must point into the segment (a SharedArray) or into
//    memory that existed when the pool was built and is only read.
//  - A pointer to a local variable is a mistake: the thief reads its own, unrelated stack. spawn
//    throws std::invalid_argument for a pointer argument into the spawning worker's stack
//    (pointers captured by a lambda cannot be checked). Return values with TaskGroup::spawn
//    instead: they are stored in the segment.
//
// forkpool::spawn(f, args...) adds a child to the current task (or map item): it is run, here or
// elsewhere, before that task is finished, as in Cilk (an implicit sync at the end of every
// task). Its result, if any, is dropped. TaskGroup::spawn adds a child to the group and returns a
// TaskResult; wait() (or the destructor) waits for the group's children, running other tasks
// meanwhile instead of blocking. A map item that spawns is finished, for the map, once its
// children are.
//
// Only in a worker's own thread, inside a map, for_each or map_reduce item, a task run by
// Pool::apply or submit, or a task they spawned; anywhere else they throw std::logic_error. If the
// map stops (an exception in a task or item, cancel(), a timeout, a dead worker), a wait unwinds
// the task with an internal exception that is not a std::exception: let it pass (do not swallow it
// with catch (...)), and the map throws why it stopped. A worker that dies while tasks are
// outstanding makes the map throw BrokenPool: tasks are not run again.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace forkpool {

class TaskGroup;

namespace detail {

// A task as it sits in a worker's deque: a pointer to this header in the segment.
struct TaskHeader {
  void (*run)(void* record);          // runs the body, storing its result; may throw
  void* record;                       // the TaskRecord this header is in
  std::atomic<std::uint32_t>* group;  // the pending count of the group waiting for it
  std::int64_t item;                  // the map item whose task tree it belongs to
};

template <class R>
struct ResultSlot {
  alignas(R) unsigned char bytes[sizeof(R)];
  template <class Body>
  void run(Body& body) {
    ::new (static_cast<void*>(bytes)) R(body());
  }
  const R& value() const { return *std::launder(reinterpret_cast<const R*>(bytes)); }
};
template <>
struct ResultSlot<void> {
  template <class Body>
  void run(Body& body) {
    body();
  }
};

// A task's bytes in the spawning worker's task arena (segment): header, callable, result.
template <class Body, class R>
struct TaskRecord {
  TaskHeader header;
  Body body;
  ResultSlot<R> result;

  static void run(void* record) {
    auto* self = static_cast<TaskRecord*>(record);
    self->result.run(self->body);
  }
};

template <class F, class... Args>
constexpr bool task_is_shareable() {
  static_assert(std::is_trivially_copyable_v<F>,
                "forkpool::spawn: the callable must be trivially copyable, because another "
                "worker process may run it from a copy in shared memory. Capture only trivially "
                "copyable values or pointers into a SharedArray");
  static_assert((std::is_trivially_copyable_v<Args> && ...),
                "forkpool::spawn: every argument must be trivially copyable, because another "
                "worker process may run the task from a copy in shared memory");
  static_assert(std::is_invocable_v<F&, Args&...>,
                "forkpool::spawn: f cannot be called with these arguments");
  using R = std::invoke_result_t<F&, Args&...>;
  static_assert(std::is_void_v<R> || std::is_trivially_copyable_v<R>,
                "forkpool::spawn: a task's result must be trivially copyable, because it is "
                "stored in shared memory for the spawning task");
  return true;
}

// lib/tasks.cpp, in a worker.
// Throws std::logic_error naming `what` when this is not a pool worker inside a job.
void require_worker(const char* what);
// Throws std::invalid_argument when p points into this worker's stack.
void check_not_on_stack(const void* p, std::size_t argument, const char* what);
// `bytes` in this worker's task arena for a task of `group` (nullptr: the current task's
// implicit group); nullptr when the arena is full (the caller runs the task inline).
void* allocate_task(std::size_t bytes, std::size_t align, const TaskGroup* group);
// The current task's implicit group (for forkpool::spawn), made on first use; nullptr when the
// arena is full.
std::atomic<std::uint32_t>* implicit_group();
// Counts the task in its group and pushes it onto this worker's deque, or runs it now when the
// deque is full.
void submit(TaskHeader& task);

template <class A>
void check_argument(const char* what, std::size_t n, const A& a) {
  if constexpr (std::is_pointer_v<A> && std::is_object_v<std::remove_pointer_t<A>>)
    check_not_on_stack(const_cast<const void*>(static_cast<const volatile void*>(a)), n, what);
}
template <class... Args>
void check_arguments([[maybe_unused]] const char* what, const Args&... args) {
  [[maybe_unused]] std::size_t n = 0;
  (check_argument(what, ++n, args), ...);
}

}  // namespace detail

// The value a TaskGroup child returned, kept in shared memory. get() once the group's wait()
// has returned; valid until the group is destroyed.
template <class R>
class TaskResult {
 public:
  TaskResult() = default;  // no task: get() throws
  const R& get() const;

 private:
  friend class TaskGroup;
  TaskResult(const detail::ResultSlot<R>* slot, const TaskGroup* group, std::uint64_t wave)
      : slot_(slot), group_(group), wave_(wave) {}
  explicit TaskResult(R value) : local_(value) {}

  const detail::ResultSlot<R>* slot_ = nullptr;
  const TaskGroup* group_ = nullptr;
  std::uint64_t wave_ = 0;
  std::optional<R> local_;  // the child ran inline (the worker's deque or arena was full)
};

// Children that a task waits for. Construct it inside a worker (in an item or a task); not
// copyable or movable (it belongs to the task's stack frame).
class TaskGroup {
 public:
  TaskGroup();   // throws std::logic_error outside a pool worker
  ~TaskGroup();  // waits for children not waited for yet (quietly if the map stopped)
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Runs f(args...) as a child of this group, maybe in another worker. Returns a
  // TaskResult<R> for an f returning R, nothing for a void f.
  template <class F, class... Args>
  auto spawn(F f, Args... args) {
    static_assert(detail::task_is_shareable<F, Args...>());
    using R = std::invoke_result_t<F&, Args&...>;
    detail::check_arguments("forkpool::TaskGroup::spawn", args...);
    auto body = [f, args...]() mutable -> R { return std::invoke(f, args...); };
    using Record = detail::TaskRecord<decltype(body), R>;
    void* at = pending_ == nullptr ? nullptr
                                   : detail::allocate_task(sizeof(Record), alignof(Record), this);
    if (at == nullptr) {
      if constexpr (std::is_void_v<R>)
        return body();
      else
        return TaskResult<R>(body());
    }
    auto* r = ::new (at) Record{{&Record::run, at, pending_, 0}, body, {}};
    detail::submit(r->header);
    if constexpr (!std::is_void_v<R>) return TaskResult<R>(&r->result, this, waits_);
  }

  // Returns once every child spawned so far has run, running other tasks meanwhile.
  void wait();

 private:
  template <class R>
  friend class TaskResult;

  std::atomic<std::uint32_t>* pending_;  // in the segment; nullptr when the arena was full
  std::byte* mark_;                      // the arena's top when the group was made
  TaskGroup* outer_;                     // the group made before this one in the same task
  std::uint64_t waits_ = 0;              // wait() calls that returned
};

template <class R>
const R& TaskResult<R>::get() const {
  if (local_) return *local_;
  if (group_ == nullptr || group_->waits_ <= wave_)
    throw std::logic_error(
        "forkpool::TaskResult::get: the task may not have run yet; call its TaskGroup's wait() "
        "first");
  return slot_->value();
}

// Runs f(args...) as a child of the current task (or map item), maybe in another worker; the
// current task ends only once it has run. Its result, if any, is dropped.
template <class F, class... Args>
void spawn(F f, Args... args) {
  static_assert(detail::task_is_shareable<F, Args...>());
  std::atomic<std::uint32_t>* group = detail::implicit_group();
  detail::check_arguments("forkpool::spawn", args...);
  auto body = [f, args...]() mutable { static_cast<void>(std::invoke(f, args...)); };
  using Record = detail::TaskRecord<decltype(body), void>;
  void* at =
      group == nullptr ? nullptr : detail::allocate_task(sizeof(Record), alignof(Record), nullptr);
  if (at == nullptr) return body();
  auto* r = ::new (at) Record{{&Record::run, at, group, 0}, body, {}};
  detail::submit(r->header);
}

}  // namespace forkpool
