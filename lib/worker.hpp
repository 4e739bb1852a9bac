// The worker process: what runs in each forked child until the pool shuts down.
#pragma once

#include "control.hpp"

#include <forkpool/detail/segment.hpp>

#include <sys/types.h>

#include <cstdint>
#include <functional>

namespace forkpool::detail {

struct WorkerStart {
  Segment* segment;
  Control* control;
  ChunkRange* ranges;
  WorkerSlot* slots;
  int wake_fd;  // an eventfd: written when a job is finished while the parent sleeps
  unsigned index;
  pid_t parent;
  bool die_with_parent;      // PR_SET_PDEATHSIG is safe: forked by the parent's main thread
  std::uint32_t generation;  // the last generation published before the fork
  const std::function<void()>* initializer;  // Options::initializer; nullptr when there is none
  unsigned max_tasks;                        // Options::max_tasks_per_child
};

// Never returns: the worker ends with _exit, so no atexit handler or static destructor of the
// parent's runs twice.
[[noreturn]] void worker_main(const WorkerStart& start);

// Ends the worker process: flushes the standard streams, then _exit.
[[noreturn]] void exit_worker(int status);

// Called in a worker, inside a catch block: records the exception that Options::initializer threw
// in Control::initializer_error, unless another worker's came first.
void record_initializer_error(unsigned worker) noexcept;

// The control block of the pool this process is a worker of; nullptr in other processes.
Control* current_worker_control() noexcept;

}  // namespace forkpool::detail
