// A discrete-event simulator of the pool's schedules: what a map would do on P workers, for P far
// beyond the cores of the machine it runs on (up to 1024).
//
// It runs the claiming code the worker processes run (detail::Claimer over in-memory copies of the
// shared schedule state), one claim at a time in order of simulated time: every chunk size, steal
// and adaptive decision is the runtime's own, and only the clock is simulated. A worker's clock
// advances by what the items of its chunks cost plus the runtime's own costs (SimulatorCosts);
// the worker with the earliest clock claims next.
//
// What it leaves out: claims never collide (a compare-and-swap lost to another worker is not
// simulated; remote_ns stands for the cost of sharing), workers never lose their core, and the
// time-paced pieces of a long chunk (two clock reads a millisecond) cost nothing.
//
// bench/simulate.cpp (forkpool_simulate) measures the costs on a machine, checks predictions
// against real maps, and predicts maps on more workers.
#pragma once

#include <forkpool/schedule.hpp>
#include <forkpool/stats.hpp>

#include <span>

namespace forkpool {

inline constexpr unsigned kMaxSimulatedWorkers = 1024;

// What the runtime costs besides the items, in nanoseconds (forkpool_simulate --calibrate
// measures them). Each must be finite and >= 0; all zero simulates a machine without overheads.
struct SimulatorCosts {
  // Every chunk: claiming it, calling the map's function on it and committing its results.
  double dispatch_ns = 0;
  // Every chunk of a schedule that times its chunks (adaptive_factoring, adaptive_stealing,
  // automatic): the clock reads around it.
  double timing_ns = 0;
  // Every access to scheduling state that another process wrote last, i.e. a cache line moving
  // between cores: a claim on the shared counter after another worker's claim, each steal
  // attempt, and each other worker's range looked at in a worker's last, empty search.
  double remote_ns = 0;
  // Every map: publishing it and waking the workers, and seeing the last of them finish.
  double start_ns = 0;
  // Worker w starts w * stagger_ns after worker 0: the workers wake one after another.
  double stagger_ns = 0;
};

// The statistics Pool::last_stats() would report for a map of item_ns.size() items, item i
// taking item_ns[i] nanoseconds, under `schedule` on `workers` workers. With `trace`, also every
// chunk (MapStats::chunks, by start time; ChunkRecord::duration is its items' time).
// An empty map publishes nothing and takes no time, as Pool's does.
// Throws std::invalid_argument if workers is outside [1, kMaxSimulatedWorkers], a cost or an item
// time is negative or not finite, or there are 2^32 items or more.
MapStats simulate(Schedule schedule, unsigned workers, std::span<const double> item_ns,
                  const SimulatorCosts& costs, bool trace = false);

}  // namespace forkpool
