// What Pool::submit and Pool::map_async queue for the pool's dispatcher thread (lib/dispatcher.hpp
// runs them), and the typed parts of a submitted task that must be instantiated for its type.
#pragma once

#include <forkpool/detail/closures.hpp>
#include <forkpool/schedule.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

namespace forkpool::detail {

struct TaskErrorSlot;  // lib/control.hpp

// Called in a worker, inside a catch block: describes the exception being handled in `slot`.
void record_exception(TaskErrorSlot& slot) noexcept;

// Runs one submitted task in a worker: its call is the closure, its result goes to `result`.
// False if it threw (then `error` describes the exception).
using TaskFn = bool (*)(const void* call, void* result, TaskErrorSlot& error) noexcept;

template <class Call, class R>
bool run_task(const void* call, void* result, TaskErrorSlot& error) noexcept {
  Call g = *static_cast<const Call*>(call);
  try {
    if constexpr (std::is_void_v<R>)
      g();
    else
      std::construct_at(static_cast<R*>(result), g());
    return true;
  } catch (...) {
    record_exception(error);
    return false;
  }
}

template <class... Args>
constexpr bool arguments_are_trivially_copyable() {
  static_assert((std::is_trivially_copyable_v<Args> && ...),
                "forkpool: the arguments of submit/apply must be trivially copyable, because they "
                "are copied as bytes into shared memory for the worker processes. Pass pointers "
                "into a forkpool::SharedArray (or its span()) instead of a std::vector or "
                "std::string");
  return true;
}

template <class F, class... Args>
constexpr bool task_is_callable() {
  static_assert(std::is_invocable_v<F&, Args&...>,
                "forkpool: submit(f, args...) and apply(f, args...) call f(args...): f cannot be "
                "called with these arguments");
  return std::is_invocable_v<F&, Args&...>;
}

template <bool Callable, class F, class... Args>
struct TaskResultOf {
  using type = std::remove_cvref_t<std::invoke_result_t<F&, Args&...>>;
};
template <class F, class... Args>
struct TaskResultOf<false, F, Args...> {
  using type = void;
};

template <class R>
constexpr bool task_result_is_storable() {
  static_assert(std::is_void_v<R> || std::is_trivially_copyable_v<R>,
                "forkpool: the result of a submitted task must be trivially copyable (or void), "
                "because the worker writes it straight into shared memory");
  return true;
}

template <class F, class... Args>
using TaskResultType = typename TaskResultOf<task_is_callable<F, Args...>(), F, Args...>::type;

template <class F, class... Args>
using TaskResult = std::enable_if_t<callable_is_trivially_copyable<F>() &&
                                        arguments_are_trivially_copyable<Args...>() &&
                                        task_result_is_storable<TaskResultType<F, Args...>>(),
                                    TaskResultType<F, Args...>>;

// f and its arguments as one trivially copyable closure (a std::tuple is not trivially copyable).
template <class F, class... Args>
auto bind_task(F f, Args... args) {
  return [f, args...]() mutable { return std::invoke(f, args...); };
}

// starmap's item i: f(a[i], b[i], ...).
template <class F, class... T>
auto zip_items(F f, const T*... items) {
  static_assert(std::is_invocable_v<F&, const T&...>,
                "forkpool: starmap(f, a, b, ...) calls f(a[i], b[i], ...): f cannot be called "
                "with one element of each input");
  return [f, items...](std::int64_t i) mutable { return std::invoke(f, items[i]...); };
}

// The common length of starmap's inputs; throws std::invalid_argument naming them otherwise.
std::size_t equal_lengths(std::initializer_list<std::size_t> lengths);

// A queued submit or map_async, until the dispatcher runs it.
struct AsyncOp {
  std::shared_ptr<const void> closure;  // a copy of the call or map closure, in this process
  std::size_t size = 0;
  std::size_t align = 1;
  // A submit: run by `task`, writing its result to `result` (nullptr for void).
  TaskFn task = nullptr;
  void* result = nullptr;
  // A map_async: items [first, last) under `schedule`, each chunk run by `chunk`.
  const ClosureCode* code = nullptr;
  bool each_item_once = false;
  std::int64_t first = 0;
  std::int64_t last = 0;
  Schedule schedule = Schedule::static_blocks();
  // Segment memory the call reads or writes, kept until it has run: a map's copy of its input,
  // and the task's result slot or the map's result array (its Future may be dropped first).
  std::shared_ptr<const void> input;
  std::shared_ptr<const void> output;
  const void* out = nullptr;  // the map's results, prefaulted for reading once done
  std::size_t out_bytes = 0;
};

template <class R, class Call>
AsyncOp task_op(const Call& call, void* result) {
  AsyncOp op;
  op.closure = std::make_shared<const Call>(call);
  op.size = sizeof(Call);
  op.align = alignof(Call);
  op.task = &run_task<Call, R>;
  op.result = result;
  return op;
}

template <class Closure>
AsyncOp map_op(const Closure& closure, std::int64_t first, std::int64_t last, Schedule s) {
  static_assert(std::is_trivially_copyable_v<Closure>);
  AsyncOp op;
  op.closure = std::make_shared<const Closure>(closure);
  op.size = sizeof(Closure);
  op.align = alignof(Closure);
  op.code = &closure_code<Closure>;
  op.each_item_once = counts_each_item_once<Closure>;
  op.first = first;
  op.last = last;
  op.schedule = s;
  return op;
}

}  // namespace forkpool::detail
