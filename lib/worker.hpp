// The worker process: what runs in each forked child until the pool shuts down.
#pragma once

#include "control.hpp"

#include <forkpool/detail/segment.hpp>

#include <sys/types.h>

#include <cstdint>

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
};

// Never returns: the worker ends with _exit, so no atexit handler or static destructor of the
// parent's runs twice.
[[noreturn]] void worker_main(const WorkerStart& start);

// Ends the worker process: flushes the standard streams, then _exit.
[[noreturn]] void exit_worker(int status);

// The control block of the pool this process is a worker of; nullptr in other processes.
Control* current_worker_control() noexcept;

}  // namespace forkpool::detail
