// The scheduler's entry points; the algorithm is described in scheduler.cpp.
#pragma once

#include "control.hpp"

namespace forkpool::detail {

// The job for `count` items from `first` under `schedule`, with `closure` already in the segment.
// Requires count < 2^62.
Job make_job(const JobCallable& callable, const void* closure, std::int64_t first,
             std::uint64_t count, Schedule schedule, unsigned workers);

// Parent, before publishing control.job: resets the schedule's shared state.
void prepare_schedule(Control& control, ChunkRange* ranges);

// Worker `worker`: runs its share of control.job and returns when there is nothing left for it.
void run_schedule(Control& control, ChunkRange* ranges, unsigned worker);

}  // namespace forkpool::detail
