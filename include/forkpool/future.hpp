// forkpool::Future<R>: the result of Pool::submit (apply_async) or Pool::map_async, Python's
// AsyncResult in C++ idiom.
//
//   forkpool::Future<std::int64_t> f = pool.submit([](std::int64_t x) { return x * x; }, 7);
//   f.ready();                              // finished (or failed) yet?
//   f.get(std::chrono::seconds(1));         // 49, or FutureTimeout if not ready by then
//
// get() waits, then returns the result or rethrows what stopped the task: TaskError (it threw),
// BrokenPool, Timeout, Cancelled, or PoolClosed (terminate() before it ran). Like std::future,
// get() gives the result once: the future is then no longer valid(). get(timeout) that runs out
// throws FutureTimeout and changes nothing: the task keeps running and the future stays valid.
// A Future may outlive its Pool: it keeps the shared segment that holds its result alive.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <utility>

namespace forkpool {

template <class T>
class SharedArray;

namespace detail {

// Set once, by the pool's dispatcher thread, when a queued call has finished or failed.
class Completion;

bool is_ready(const Completion& c);
void wait(const Completion& c);
bool wait_for(const Completion& c, std::chrono::nanoseconds timeout);
void rethrow_error(const Completion& c);  // what stopped the call, if anything did
[[noreturn]] void throw_not_ready(std::chrono::nanoseconds timeout);

// Where a future's result is: a one-element array in the segment that the worker wrote (a task),
// nothing (a task returning void), or the result array of a map. Shared with the queued call,
// which keeps it until it has run, so that a future dropped early is never written through.
template <class R>
struct FutureValue {
  std::shared_ptr<SharedArray<R>> slot;
  R take() { return (*slot)[0]; }
};
template <>
struct FutureValue<void> {
  void take() {}
};
template <class T>
struct FutureValue<SharedArray<T>> {
  std::shared_ptr<SharedArray<T>> array;
  SharedArray<T> take() { return std::move(*array); }
};

}  // namespace detail

template <class R>
class Future {
 public:
  Future() = default;  // not valid()
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;

  // False for a default-constructed or moved-from future, and after get() returned or threw.
  bool valid() const noexcept { return done_ != nullptr; }
  // Whether get() would return (or throw) at once.
  bool ready() const { return detail::is_ready(state()); }
  void wait() const { detail::wait(state()); }
  // Waits at most `timeout`; whether the result is ready.
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) const {
    return detail::wait_for(state(), std::chrono::ceil<std::chrono::nanoseconds>(timeout));
  }

  R get() {
    wait();
    return take();
  }
  // Throws FutureTimeout if the result is not ready within `timeout` (the future stays valid).
  template <class Rep, class Period>
  R get(const std::chrono::duration<Rep, Period>& timeout) {
    const auto ns = std::chrono::ceil<std::chrono::nanoseconds>(timeout);
    if (!detail::wait_for(state(), ns)) detail::throw_not_ready(ns);
    return take();
  }

 private:
  friend class Pool;
  Future(std::shared_ptr<detail::Completion> done, detail::FutureValue<R> value)
      : done_(std::move(done)), value_(std::move(value)) {}

  const detail::Completion& state() const {
    if (!done_)
      throw std::logic_error(
          "forkpool::Future: this future has no result (default-constructed, moved from, or "
          "get() was already called)");
    return *done_;
  }
  R take() {
    const std::shared_ptr<detail::Completion> done = std::move(done_);
    detail::FutureValue<R> value = std::move(value_);
    detail::rethrow_error(*done);
    return value.take();
  }

  std::shared_ptr<detail::Completion> done_;
  detail::FutureValue<R> value_;
};

}  // namespace forkpool
