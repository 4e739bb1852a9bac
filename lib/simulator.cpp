// The simulator's event loop (forkpool/simulator.hpp). Each worker has a clock and a Claimer; the
// worker with the earliest clock (the lower index on a tie) claims its next chunk, and its clock
// moves on by what the claim and the chunk cost. Claims therefore happen in the order of simulated
// time, and the shared state each Claimer sees is the state the real workers would see then.
#include <forkpool/simulator.hpp>

#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/claimer.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace forkpool {
namespace {

using detail::ChunkCounter;
using detail::ChunkRange;
using detail::ClaimCounts;
using detail::Claimer;
using detail::ClaimRule;
using detail::ScheduleState;
using detail::SharedItemTime;
using detail::UnitSpan;

void check_cost(double value, const char* name) {
  if (!std::isfinite(value) || value < 0)
    throw std::invalid_argument(std::string("forkpool::simulate: costs.") + name +
                                " must be finite and >= 0, got " + std::to_string(value));
}

void check_arguments(unsigned workers, std::span<const double> item_ns,
                     const SimulatorCosts& costs) {
  if (workers < 1 || workers > kMaxSimulatedWorkers)
    throw std::invalid_argument("forkpool::simulate: workers must be in [1, " +
                                std::to_string(kMaxSimulatedWorkers) + "], got " +
                                std::to_string(workers));
  // One chunk unit per item, as the pool uses for any map under 2^32 items.
  if (item_ns.size() > ChunkRange::kMaxUnits)
    throw std::invalid_argument(
        "forkpool::simulate: item_ns must have fewer than 2^32 items, got " +
        std::to_string(item_ns.size()));
  check_cost(costs.dispatch_ns, "dispatch_ns");
  check_cost(costs.timing_ns, "timing_ns");
  check_cost(costs.remote_ns, "remote_ns");
  check_cost(costs.start_ns, "start_ns");
  check_cost(costs.stagger_ns, "stagger_ns");
}

// prefix[i] = the time of items [0, i); throws for an item time that is negative or not finite.
std::vector<double> prefix_sums(std::span<const double> item_ns) {
  std::vector<double> prefix(item_ns.size() + 1, 0.0);
  for (std::size_t i = 0; i < item_ns.size(); ++i) {
    if (!std::isfinite(item_ns[i]) || item_ns[i] < 0)
      throw std::invalid_argument("forkpool::simulate: item_ns[" + std::to_string(i) +
                                  "] must be finite and >= 0, got " + std::to_string(item_ns[i]));
    prefix[i + 1] = prefix[i] + item_ns[i];
  }
  return prefix;
}

bool claims_from_counter(Schedule::Kind kind) {
  switch (kind) {
    case Schedule::Kind::dynamic:
    case Schedule::Kind::guided:
    case Schedule::Kind::trapezoid:
    case Schedule::Kind::factoring:
    case Schedule::Kind::fixed_size:
    case Schedule::Kind::adaptive_factoring:
    case Schedule::Kind::python:
      return true;
    default:
      return false;
  }
}

bool steals(Schedule::Kind kind) {
  return kind == Schedule::Kind::work_stealing || kind == Schedule::Kind::adaptive_stealing ||
         kind == Schedule::Kind::automatic;
}

std::chrono::nanoseconds to_nanoseconds(double ns) {
  return std::chrono::nanoseconds(std::llround(ns));
}

// One simulated map: the in-memory shared state of its schedule, a Claimer per worker over it, and
// the workers' clocks.
class Simulation {
 public:
  Simulation(Schedule schedule, unsigned workers, std::span<const double> item_ns,
             const SimulatorCosts& costs, bool trace)
      : rule_(detail::make_claim_rule(schedule, static_cast<std::uint32_t>(item_ns.size()), workers,
                                      1)),
        ranges_(workers),
        times_(workers),
        prefix_(prefix_sums(item_ns)),
        costs_(costs),
        trace_(trace),
        from_counter_(claims_from_counter(schedule.kind())),
        stealing_(steals(schedule.kind())),
        counter_writer_(workers),  // the parent reset the counter
        started_(workers),
        finished_(workers),
        unrecorded_(workers) {
    const ScheduleState state{&counter_, ranges_.data(), times_.data()};
    detail::reset_schedule_state(rule_, state);
    for (unsigned w = 0; w < workers; ++w) claimers_.emplace_back(rule_, state, w);
    stats_.schedule = schedule;
    stats_.items = item_ns.size();
    stats_.workers.resize(workers);
  }
  Simulation(const Simulation&) = delete;
  Simulation& operator=(const Simulation&) = delete;

  MapStats run() {
    if (prefix_.size() == 1) return stats_;     // no items: nothing is published
    using Event = std::pair<double, unsigned>;  // (clock, worker): a tie goes to the lower index
    std::priority_queue<Event, std::vector<Event>, std::greater<>> ready;
    for (unsigned w = 0; w < rule_.workers; ++w) {
      started_[w] = w * costs_.stagger_ns;
      ready.emplace(started_[w], w);
    }
    while (!ready.empty()) {
      const auto [clock, w] = ready.top();
      ready.pop();
      if (const std::optional<double> next = step(w, clock)) ready.emplace(*next, w);
    }
    summarize();
    return std::move(stats_);
  }

 private:
  // Worker w claims its next chunk at `clock` and runs it: its clock when it is done, or none
  // when it found nothing left to claim. What it measured of its previous chunk is recorded first:
  // as in the real worker, the others see a measurement once the chunk is over, not once it is
  // claimed (adaptive_factoring's chunk sizes follow from the other workers' estimates).
  std::optional<double> step(unsigned w, double clock) {
    Claimer<>& claimer = claimers_[w];
    if (const Measurement m = std::exchange(unrecorded_[w], {}); m.units != 0)
      claimer.record(m.units, m.nanoseconds);
    const std::uint64_t attempts = claimer.counts().steal_attempts;
    if (from_counter_ && counter_writer_ != w) clock += costs_.remote_ns;
    const UnitSpan s = claimer.next();
    clock += static_cast<double>(claimer.counts().steal_attempts - attempts) * costs_.remote_ns;
    if (s.empty()) {
      // Its last search looked at every other worker's range and found it empty.
      if (stealing_) clock += (rule_.workers - 1) * costs_.remote_ns;
      finished_[w] = clock;
      return std::nullopt;
    }
    if (from_counter_) counter_writer_ = w;
    clock += costs_.dispatch_ns + (claimer.measured() ? costs_.timing_ns : 0);
    const double run = prefix_[s.last] - prefix_[s.first];
    if (trace_)
      stats_.chunks.push_back(
          {w, s.first, s.size(), to_nanoseconds(costs_.start_ns + clock), to_nanoseconds(run)});
    // The real worker times the chunk's items (lib/scheduler.cpp); the claim is not in it.
    if (claimer.measured())
      unrecorded_[w] = {s.size(), static_cast<std::uint64_t>(std::llround(run))};
    stats_.workers[w].items += s.size();
    return clock + run;
  }

  void summarize() {
    double makespan = 0, busiest = 0, total_busy = 0;
    for (unsigned w = 0; w < rule_.workers; ++w) {
      const double busy = finished_[w] - started_[w];
      makespan = std::max(makespan, finished_[w]);
      busiest = std::max(busiest, busy);
      total_busy += busy;
    }
    stats_.makespan = to_nanoseconds(costs_.start_ns + makespan);
    if (total_busy > 0) stats_.imbalance = busiest * rule_.workers / total_busy - 1;
    for (unsigned w = 0; w < rule_.workers; ++w) {
      const ClaimCounts counts = claimers_[w].counts();
      WorkerStats& out = stats_.workers[w];
      out.chunks = counts.chunks;
      out.steal_attempts = counts.steal_attempts;
      out.steals = counts.steals;
      out.busy = to_nanoseconds(finished_[w] - started_[w]);
      out.idle = std::max(std::chrono::nanoseconds::zero(), stats_.makespan - out.busy);
      stats_.scheduling_operations += counts.operations;
    }
    std::stable_sort(stats_.chunks.begin(), stats_.chunks.end(),
                     [](const ChunkRecord& a, const ChunkRecord& b) { return a.start < b.start; });
  }

  // A chunk's units and the time its items took, not yet recorded by its worker's Claimer.
  struct Measurement {
    std::uint64_t units = 0, nanoseconds = 0;
  };

  ClaimRule rule_;
  ChunkCounter counter_;
  std::vector<ChunkRange> ranges_;
  std::vector<SharedItemTime> times_;
  std::deque<Claimer<>> claimers_;  // not movable: they point into the state above
  std::vector<double> prefix_;      // prefix_[i]: the time of items [0, i)
  SimulatorCosts costs_;
  bool trace_, from_counter_, stealing_;
  unsigned counter_writer_;  // the worker that claimed from the shared counter last
  std::vector<double> started_, finished_;
  std::vector<Measurement> unrecorded_;  // per worker: its last chunk, recorded at its next claim
  MapStats stats_;
};

}  // namespace

MapStats simulate(Schedule schedule, unsigned workers, std::span<const double> item_ns,
                  const SimulatorCosts& costs, bool trace) {
  check_arguments(workers, item_ns, costs);
  return Simulation(schedule, workers, item_ns, costs, trace).run();
}

}  // namespace forkpool
