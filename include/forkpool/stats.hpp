// What a map did, per worker and in all: Pool::last_stats().
#pragma once

#include <forkpool/schedule.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace forkpool {

struct WorkerStats {
  // Items run in this worker slot, by its process and by any that died in it during the map
  // (the items it committed: after a map that threw, the piece that threw counts too).
  std::uint64_t items = 0;
  std::uint64_t chunks = 0;          // chunks it claimed
  std::uint64_t steal_attempts = 0;  // compare-and-swaps on another worker's range
  std::uint64_t steals = 0;          // the ones that took work
  // From the job's start to the moment the worker found nothing left to claim: running items
  // plus claiming and stealing. idle = makespan - busy: starting late, and waiting for the others.
  std::chrono::nanoseconds busy{0};
  std::chrono::nanoseconds idle{0};
};

// One chunk a worker ran (Options::trace_chunks); times from the map's start.
struct ChunkRecord {
  unsigned worker;
  std::int64_t first;  // the chunk is items [first, first + items)
  std::uint64_t items;
  std::chrono::nanoseconds start;
  std::chrono::nanoseconds duration;
};

struct MapStats {
  Schedule schedule = Schedule::static_blocks();
  std::uint64_t items = 0;
  // From publishing the map to the last worker finishing it (retries of lost items included).
  std::chrono::nanoseconds makespan{0};
  // max busy / mean busy - 1: 0 is a perfect balance.
  double imbalance = 0;
  // Atomic read-modify-writes of shared scheduling state: compare-and-swaps (claims and steals,
  // failed ones too) and fetch_adds (constant-chunk claims).
  std::uint64_t scheduling_operations = 0;
  std::vector<WorkerStats> workers;
  // Options::trace_chunks: every chunk, up to Options::trace_capacity per worker, by start time.
  std::vector<ChunkRecord> chunks;
  bool chunks_truncated = false;  // some worker ran more chunks than were recorded

  std::uint64_t total_chunks() const;
  std::uint64_t total_steals() const;
  // A table, one row per worker and a summary line; also what operator<< prints.
  std::string table() const;
};

std::ostream& operator<<(std::ostream& os, const MapStats& stats);

}  // namespace forkpool
