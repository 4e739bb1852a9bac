// The pool's control block: the part of the segment through which the parent and the workers
// talk. Allocated once per pool, before the fork.
#pragma once

#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/closures.hpp>
#include <forkpool/schedule.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace forkpool::detail {

// A map as the workers see it: indices [first, first + count), cut into units of `unit` items
// (1 unless count exceeds what a ChunkRange can index).
struct Job {
  ChunkFn run;
  const void* closure;
  std::int64_t first;
  std::uint64_t count;
  Schedule::Kind kind;
  std::uint64_t chunk;  // dynamic: chunk; guided: min_chunk; work_stealing: grain in units
  std::uint64_t unit;
};

// The first exception of a map, written by the worker that claimed it.
struct TaskErrorSlot {
  std::int64_t index;
  char type[256];
  char message[2048];
};

inline constexpr std::size_t kInlineClosureBytes = 512;

struct Control {
  explicit Control(unsigned workers) : workers(workers) {}

  const unsigned workers;
  Job job{};  // written by the parent before it bumps `generation`

  // Bumped (release) by the parent to publish a job or the shutdown; futex word for idle workers.
  alignas(64) std::atomic<std::uint32_t> generation{0};
  std::atomic<std::uint32_t> sleepers{0};  // workers in (or entering) futex_wait on generation
  std::atomic<std::uint32_t> shutdown{0};

  // Workers that finished the current job; futex word for the parent.
  alignas(64) std::atomic<std::uint32_t> done{0};

  // Set by the worker that records the map's first error; the others stop at their next chunk.
  alignas(64) std::atomic<std::uint32_t> cancelled{0};
  TaskErrorSlot error{};

  // dynamic and guided: the offset of the next unclaimed item.
  alignas(64) std::atomic<std::uint64_t> next{0};

  alignas(64) std::byte closure[kInlineClosureBytes];
};

}  // namespace forkpool::detail
