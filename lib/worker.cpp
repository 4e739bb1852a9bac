#include "worker.hpp"

#include "scheduler.hpp"
#include "wait.hpp"

#include <forkpool/forkpool.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>

namespace forkpool::detail {
namespace {

Segment* g_segment = nullptr;
Control* g_control = nullptr;
int g_index = -1;

// An idle worker polls this long for the next job before it sleeps (see poll_yielding).
constexpr auto kIdlePoll = std::chrono::microseconds(50);
// A sleeping worker wakes this often to check that its parent is still alive (the case
// PR_SET_PDEATHSIG cannot cover: a pool made on a thread other than the main one).
constexpr auto kParentCheck = std::chrono::milliseconds(500);

// Only the standard streams, as Python's workers do: they are the ones the parent flushes before
// a fork (pool.cpp). Any other FILE may still hold the parent's buffered data, which a flush here
// would write a second time.
void flush_output() {
  std::cout.flush();
  std::clog.flush();
  std::fflush(stdout);
  std::fflush(stderr);
}

void set_up_process(const WorkerStart& start) {
  g_segment = start.segment;
  g_control = start.control;
  g_index = static_cast<int>(start.index);
  // A terminal's Ctrl-C, Ctrl-\ or hang-up goes to the whole process group; it is the parent's to
  // handle, and the workers follow it (PDEATHSIG, or the pool's shutdown) instead of each dying
  // noisily.
  for (int sig : {SIGINT, SIGQUIT, SIGHUP}) signal(sig, SIG_IGN);
  for (int sig : {SIGTERM, SIGCHLD, SIGPIPE}) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (start.die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before prctl took effect.
  if (getppid() != start.parent) _exit(0);
}

std::uint32_t wait_for_job(Control& c, std::uint32_t seen, pid_t parent) {
  const auto published = [&c, seen] {
    return c.generation.load(std::memory_order_acquire) != seen;
  };
  if (poll_yielding(published, kIdlePoll)) return c.generation.load(std::memory_order_acquire);
  for (;;) {
    // Dekker-style handshake with the parent's publish (seq_cst on both sides): either the parent
    // sees sleepers > 0 and wakes us, or we see the new generation before sleeping.
    c.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (c.generation.load(std::memory_order_seq_cst) == seen)
      futex_wait(c.generation, seen, kParentCheck);
    c.sleepers.fetch_sub(1, std::memory_order_relaxed);
    const std::uint32_t g = c.generation.load(std::memory_order_acquire);
    if (g != seen) return g;
    if (getppid() != parent) exit_worker(0);
  }
}

// Tells the parent that this worker has finished the job of `generation` (or, with that of its
// fork, run Options::initializer). Dekker-style handshake with the parent's wait (seq_cst on both
// sides): either the parent sees it before it sleeps, or this worker sees it sleeping and wakes it.
void report_finished(const WorkerStart& start, std::uint32_t generation) {
  start.slots[start.index].finished.store(generation, std::memory_order_seq_cst);
  if (start.control->parent_waiting.load(std::memory_order_seq_cst) != 0) {
    const std::uint64_t one = 1;
    while (write(start.wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

std::atomic<pid_t> g_pid{0};
void refresh_pid() noexcept { g_pid.store(getpid(), std::memory_order_relaxed); }

}  // namespace

void exit_worker(int status) {
  flush_output();
  _exit(status);
}

// A process made by a raw clone() rather than fork() would keep its parent's value; forkpool's
// own processes are all made by fork().
pid_t this_process() noexcept {
  static const bool registered = [] {
    refresh_pid();
    pthread_atfork(nullptr, nullptr, &refresh_pid);
    return true;
  }();
  static_cast<void>(registered);
  return g_pid.load(std::memory_order_relaxed);
}

Control* current_worker_control() noexcept { return g_control; }

void prefault_in_worker(const void* p, std::size_t bytes, bool write) noexcept {
  if (g_segment != nullptr) g_segment->prefault(p, bytes, write);
}

void worker_main(const WorkerStart& start) {
  set_up_process(start);
  Control& c = *start.control;
  if (start.initializer != nullptr) {
    try {
      (*start.initializer)();
    } catch (...) {
      record_initializer_error(start.index);
      exit_worker(1);
    }
    flush_output();
    report_finished(start, start.generation);
  }
  TaskBudget budget{.limit = start.max_tasks};
  std::uint32_t seen = start.generation;
  for (;;) {
    seen = wait_for_job(c, seen, start.parent);
    if (c.shutdown.load(std::memory_order_acquire)) exit_worker(0);
    run_schedule(c, start.ranges, start.slots, start.index, start.parent, budget);
    flush_output();
    if (budget.spent()) {
      // All it claimed is committed (unless the map was stopped); what it leaves unclaimed, the
      // other workers or the parent's next round run (recovery.hpp finds it as a dead worker's).
      // Relaxed: the parent reads the flag after reaping this process.
      start.slots[start.index].retired.store(1, std::memory_order_relaxed);
      exit_worker(0);
    }
    report_finished(start, seen);
  }
}

}  // namespace forkpool::detail

namespace forkpool {

ProcessInfo current_process() { return {detail::this_process(), detail::g_index}; }

}  // namespace forkpool
