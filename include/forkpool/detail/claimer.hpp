// Claimer: one worker's side of a job's schedule. next() hands out the worker's chunks under the
// job's ClaimRule, using the claim operations of claims.hpp on the shared state of the schedule
// (ScheduleState) and the chunk-size rules of chunking.hpp; record() feeds it what a chunk cost,
// for the schedules that adapt. The pool's workers (lib/scheduler.cpp), the thread stress tests
// and the simulator (lib/simulator.cpp) all run this same code.
#pragma once

#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>
#include <forkpool/detail/claims.hpp>
#include <forkpool/schedule.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace forkpool::detail {

// A schedule resolved for one job of `units` chunk units over `workers` workers: every size in
// units (see make_claim_rule).
struct ClaimRule {
  Schedule::Kind kind;
  std::uint32_t units;
  unsigned workers;
  // static_chunked, dynamic, fixed_size, python: the chunk; guided: the least chunk;
  // work_stealing: the grain; others: unused.
  std::uint64_t chunk;
  TrapezoidRule trapezoid;
  // static_chunked: only every chunk_stride-th chunk is run (a dead worker's rest, run again).
  std::uint64_t chunk_stride = 1;
};

// `schedule` for a job of `units` units of `unit` items each: every chunk size of the schedule
// rounded up to whole units, and every default (python's chunksize, trapezoid's first chunk,
// mFSC's chunk, work stealing's grain) computed from `units` and `workers`.
inline ClaimRule make_claim_rule(Schedule schedule, std::uint32_t units, unsigned workers,
                                 std::uint64_t unit) {
  const auto in_units = [unit](std::uint64_t items) {
    return std::max<std::uint64_t>(1, ceil_div(items, unit));
  };
  ClaimRule rule{schedule.kind(), units, workers, 1, {1, 1, 0}};
  const std::uint64_t p = schedule.parameter();
  switch (schedule.kind()) {
    case Schedule::Kind::static_chunked:
    case Schedule::Kind::dynamic:
    case Schedule::Kind::guided:
      rule.chunk = in_units(p);
      break;
    case Schedule::Kind::python:
      rule.chunk = p == 0 ? python_chunksize(units, workers) : in_units(p);
      break;
    case Schedule::Kind::fixed_size:
      rule.chunk = fixed_size_chunk(units, workers);
      break;
    case Schedule::Kind::work_stealing:
      rule.chunk = p == 0 ? auto_grain(units, workers) : in_units(p);
      break;
    case Schedule::Kind::trapezoid:
      rule.trapezoid = trapezoid_rule(units, workers, p == 0 ? 0 : in_units(p),
                                      in_units(schedule.second_parameter()));
      break;
    default:
      break;
  }
  return rule;
}

// Whether a schedule's chunks all have one size (but the last), claimed with a fetch_add
// (ChunkCounter::claim_constant).
constexpr bool has_constant_chunks(Schedule::Kind kind) {
  return kind == Schedule::Kind::dynamic || kind == Schedule::Kind::fixed_size ||
         kind == Schedule::Kind::python;
}

// The first unit of a job that no claim on its counter has taken.
inline std::uint32_t counter_next_unit(const ClaimRule& rule, const ChunkCounter& counter) {
  return has_constant_chunks(rule.kind) ? counter.next_unit(rule.units, rule.chunk)
                                        : counter.next_unit();
}

// The shared state of a job's schedule, one of each per pool (ranges and times: one per worker).
struct ScheduleState {
  ChunkCounter* counter;
  ChunkRange* ranges;
  SharedItemTime* times;
};

// Sets the shared state for a new job (before the job is published).
inline void reset_schedule_state(const ClaimRule& rule, const ScheduleState& state) {
  state.counter->reset();
  for (unsigned w = 0; w < rule.workers; ++w) {
    const Block b = static_block(rule.units, rule.workers, w);
    state.ranges[w].reset(
        {static_cast<std::uint32_t>(b.first), static_cast<std::uint32_t>(b.last)});
    state.times[w].mean.store(0, std::memory_order_relaxed);
    state.times[w].variance.store(0, std::memory_order_relaxed);
    state.times[w].steal_grain.store(0, std::memory_order_relaxed);
  }
}

// What a worker's claims did, for Pool::last_stats().
struct ClaimCounts {
  std::uint64_t chunks = 0;
  // Atomic read-modify-writes of shared scheduling state: compare-and-swaps (failed ones too)
  // and fetch_adds.
  std::uint64_t operations = 0;
  std::uint64_t steal_attempts = 0;
  std::uint64_t steals = 0;
};

template <class Announce = NoAnnounce>
class Claimer {
  // Counts every compare-and-swap: each one is announced just before it is tried.
  struct CountingAnnounce {
    Announce inner;
    std::uint64_t* operations;
    template <class Span>
    void operator()(Span s) const {
      ++*operations;
      inner(s);
    }
    template <class Span>
    void record(Span s) const {
      inner.record(s);
    }
  };

 public:
  Claimer(const ClaimRule& rule, const ScheduleState& state, unsigned self, Announce announce = {})
      : rule_(rule),
        state_(state),
        self_(self),
        announce_{announce, &counts_.operations},
        stealer_(state.ranges, rule.workers, self, rule.chunk, announce_,
                 rule.kind == Schedule::Kind::automatic ? state.times : nullptr) {}
  Claimer(const Claimer&) = delete;
  Claimer& operator=(const Claimer&) = delete;

  // The worker's next chunk of units; empty when it has nothing left to run.
  [[nodiscard]] UnitSpan next() {
    const UnitSpan s = claim();
    counts_.chunks += !s.empty();
    return s;
  }

  // The chunks of adaptive_stealing and automatic are pieces: each is run at once, and record()
  // paces the next one from what it cost.
  bool paced() const {
    return rule_.kind == Schedule::Kind::adaptive_stealing ||
           rule_.kind == Schedule::Kind::automatic;
  }
  // Whether record() must be called after each chunk.
  bool measured() const { return paced() || rule_.kind == Schedule::Kind::adaptive_factoring; }

  // The chunk just claimed, of `units` units, took `nanoseconds` to run.
  void record(std::uint64_t units, std::uint64_t nanoseconds) {
    timer_.record(units, nanoseconds);
    if (rule_.kind == Schedule::Kind::adaptive_factoring) {
      const ItemTime t = timer_.estimate();
      state_.times[self_].mean.store(t.mean, std::memory_order_relaxed);
      state_.times[self_].variance.store(t.variance, std::memory_order_relaxed);
      return;
    }
    piece_ = next_piece(units, nanoseconds);
    grain_ = paced_grain(static_cast<std::uint64_t>(timer_.items),
                         static_cast<std::uint64_t>(timer_.nanoseconds));
    if (rule_.kind == Schedule::Kind::automatic)
      state_.times[self_].steal_grain.store(grain_, std::memory_order_relaxed);
  }

  ClaimCounts counts() const {
    ClaimCounts c = counts_;
    c.steal_attempts = stealer_.steal_attempts();
    c.steals = stealer_.steals();
    return c;
  }

 private:
  UnitSpan claim() {
    const std::uint64_t p = rule_.workers, units = rule_.units, chunk = rule_.chunk;
    const auto span_of = [](Block b) {
      return UnitSpan{static_cast<std::uint32_t>(b.first), static_cast<std::uint32_t>(b.last)};
    };
    switch (rule_.kind) {
      case Schedule::Kind::static_blocks:
        return taken_++ == 0 ? span_of(static_block(units, p, self_)) : UnitSpan{0, 0};
      case Schedule::Kind::static_chunked:
        return span_of(static_chunk(units, chunk, p, self_, taken_++, rule_.chunk_stride));
      case Schedule::Kind::dynamic:
      case Schedule::Kind::fixed_size:
      case Schedule::Kind::python:
        return constant_chunk();
      case Schedule::Kind::guided:
        return from_counter(
            [p, chunk](std::uint64_t, std::uint64_t r) { return guided_chunk(r, p, chunk); });
      case Schedule::Kind::trapezoid:
        return from_counter([&t = rule_.trapezoid](std::uint64_t i, std::uint64_t r) {
          return trapezoid_chunk(t, i, r);
        });
      case Schedule::Kind::factoring:
        return from_counter([p, units](std::uint64_t i, std::uint64_t r) {
          return factoring_chunk(units, p, i, r);
        });
      case Schedule::Kind::adaptive_factoring:
        return from_counter([this](std::uint64_t, std::uint64_t r) { return af_size(r); });
      case Schedule::Kind::work_stealing:
        return stealer_.next();
      case Schedule::Kind::adaptive_stealing:
      case Schedule::Kind::automatic:
        return stealer_.next([piece = piece_, grain = grain_](std::uint64_t r) {
          return paced_take(r, piece, grain);
        });
    }
    return {0, 0};
  }

  UnitSpan constant_chunk() {
    ++counts_.operations;
    const UnitSpan s = state_.counter->claim_constant(rule_.units, rule_.chunk, announce_);
    return s.first >= s.last ? UnitSpan{0, 0} : s;
  }

  template <class SizeFor>
  UnitSpan from_counter(SizeFor size_for) {
    const UnitSpan s = state_.counter->claim(rule_.units, size_for, announce_, counter_guess_);
    return s.first >= s.last ? UnitSpan{0, 0} : s;
  }

  std::uint64_t af_size(std::uint64_t remaining) const {
    if (timer_.chunks < kAfSamples) return af_probe_chunk(rule_.units, rule_.workers, remaining);
    AfSums sums;
    for (unsigned j = 0; j < rule_.workers; ++j)
      sums.add({state_.times[j].mean.load(std::memory_order_relaxed),
                state_.times[j].variance.load(std::memory_order_relaxed)});
    if (sums.measured == 0) return af_probe_chunk(rule_.units, rule_.workers, remaining);
    return af_chunk(sums.over(rule_.workers), timer_.estimate(), remaining);
  }

  const ClaimRule& rule_;
  ScheduleState state_;
  unsigned self_;
  ClaimCounts counts_;
  CountingAnnounce announce_;
  Stealer<CountingAnnounce> stealer_;
  std::uint64_t counter_guess_ = 0;  // the counter's word after this worker's last claim
  std::uint64_t taken_ = 0;          // static kinds: chunks taken so far
  std::uint64_t piece_ = 1;          // paced kinds: units of the next piece
  std::uint64_t grain_ = 1;          // paced kinds: the least piece near the end of a range
  ItemTimer timer_;
};

}  // namespace forkpool::detail
