// The pool's dispatcher: one thread per pool, started by the first submit or map_async, that runs
// the queued asynchronous calls in order through the pool's synchronous machinery (so recovery,
// retries, Options::timeout, cancel() and statistics apply to them unchanged).
//
// A map_async runs as its map. Submits queued one after another run together as one map over a
// table of tasks, item i running task i under Schedule::dynamic(1), so that they spread over the
// workers. Each task catches its own exception into its own slot: one task that throws does not
// stop the others. When the map as a whole fails (BrokenPool, Timeout, Cancelled, PoolClosed),
// the tasks that finished keep their results and only the others fail with that error.
//
// Lifetime: close() lets the queue drain, then the dispatcher tells the workers to exit;
// terminate() fails what is still queued with PoolClosed. Every queued call ends in its
// Completion being set, so no Future waits forever.
#pragma once

#include <forkpool/detail/async.hpp>
#include <forkpool/detail/closures.hpp>
#include <forkpool/detail/segment.hpp>
#include <forkpool/schedule.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace forkpool::detail {

class Completion {
 public:
  void set(std::exception_ptr error) noexcept;
  bool ready() const;
  void wait() const;
  bool wait_for(std::chrono::nanoseconds timeout) const;
  std::exception_ptr error() const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::atomic<bool> done_{false};  // written under mutex_; read without it by a polling waiter
  std::exception_ptr error_;
};

class Dispatcher {
 public:
  // What the dispatcher needs from its pool.
  struct Host {
    // Runs a job over [first, last) as Pool::run_job does, under the pool's mutex; throws
    // PoolClosed once the workers are gone.
    std::function<void(const JobCallable&, std::int64_t first, std::int64_t last, Schedule)> run;
    std::function<void()> shut_down;  // tells the workers to exit once idle
    std::function<void()> cancel;     // Pool::cancel
  };

  // Starts the thread; throws std::system_error if it cannot.
  Dispatcher(Host host, std::shared_ptr<Segment> segment);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Queues `op`; throws PoolClosed after close() or terminate().
  std::shared_ptr<Completion> push(AsyncOp op);
  // Runs what is queued, then shuts the workers down and ends the thread.
  void close();
  // Fails what is queued with PoolClosed, cancels the call running now, and ends the thread.
  void terminate();
  // Waits for the thread to end (after close() or terminate()).
  void join();

 private:
  struct Queued {
    AsyncOp op;
    std::shared_ptr<Completion> done;
  };

  void loop();
  // Lets go of the call's memory, then sets its completion.
  static void finish(Queued& call, std::exception_ptr error) noexcept;
  void run_map(Queued& call);
  void run_tasks(std::vector<Queued>& tasks);

  Host host_;
  std::shared_ptr<Segment> segment_;
  pid_t owner_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  std::atomic<std::uint64_t> pushed_{0};  // calls ever queued: polled by the idle thread
  bool closing_ = false;
  bool terminating_ = false;
  std::unique_ptr<std::thread> thread_;
  std::mutex join_mutex_;
};

}  // namespace forkpool::detail
