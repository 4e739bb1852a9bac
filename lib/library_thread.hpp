// The pool's own threads (the monitor, the dispatcher): how they are started.
#pragma once

#include <signal.h>

#include <future>
#include <memory>
#include <thread>
#include <utility>

namespace forkpool::detail {

// Starts `body` on a new thread and returns once that thread runs it.
//
// All signals are blocked in the new thread: the program's signals are for its own threads.
//
// Returning only once it runs keeps the pool's forks out of the thread's start: a starting thread
// allocates (AddressSanitizer's runtime reads its stack bounds with pthread_getattr_np, which
// callocs), and that allocator has no fork handlers, so a fork in that instant would leave the
// worker an allocator lock that no thread of it will release. glibc's malloc is fork-safe.
//
// Throws what std::thread throws (std::system_error when no thread can be made).
template <class Body>
std::unique_ptr<std::thread> start_library_thread(Body body) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  std::promise<void> running;
  std::future<void> started = running.get_future();
  std::unique_ptr<std::thread> thread;
  try {
    thread = std::make_unique<std::thread>(
        [running = std::move(running), body = std::move(body)]() mutable {
          running.set_value();
          body();
        });
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  started.wait();
  return thread;
}

}  // namespace forkpool::detail
