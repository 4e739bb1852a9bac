// Thread-based stress of the lock-free claiming code the worker processes run: detail::ChunkRange
// and the claim operations of include/forkpool/detail/claims.hpp (the work-stealing Stealer and
// the shared-counter claims of dynamic and guided), the very functions lib/scheduler.cpp calls.
// Threads stand in for processes (the protocol only uses lock-free atomics on memory both sides
// see), so ThreadSanitizer can watch it (HAZARDS.md 10). This file must not fork.
//
// Every unit is counted by an atomic counter of its own; after each round every counter must be
// exactly 1: no unit lost (a worker stopped while work was left) and none run twice (two
// successful claims of one unit).
#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>
#include <forkpool/detail/claimer.hpp>
#include <forkpool/detail/claims.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using forkpool::Schedule;
using forkpool::detail::auto_grain;
using forkpool::detail::Block;
using forkpool::detail::ChunkCounter;
using forkpool::detail::ChunkRange;
using forkpool::detail::Claimer;
using forkpool::detail::ClaimRule;
using forkpool::detail::make_claim_rule;
using forkpool::detail::reset_schedule_state;
using forkpool::detail::ScheduleState;
using forkpool::detail::SharedItemTime;
using forkpool::detail::static_block;
using forkpool::detail::Steal;
using forkpool::detail::Stealer;
using forkpool::detail::StealResult;
using forkpool::detail::UnitSpan;

#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif
#else
constexpr bool kTsan = false;
#endif

// Rounds of the whole grid: enough interleavings to matter, bounded under TSan.
constexpr int kRepeats = kTsan ? 2 : 8;

// One counter per unit, all zero.
class Counters {
 public:
  explicit Counters(std::uint64_t n)
      : n_(n), c_(new std::atomic<std::uint32_t>[n == 0 ? 1 : n]()) {}
  void hit(std::uint64_t u) { c_[u].fetch_add(1, std::memory_order_relaxed); }
  // Empty when every unit was counted exactly once, else a description of the first faults.
  std::string faults() const {
    std::string out;
    int shown = 0;
    std::uint64_t bad = 0;
    for (std::uint64_t u = 0; u < n_; ++u) {
      const std::uint32_t v = c_[u].load(std::memory_order_relaxed);
      if (v == 1) continue;
      ++bad;
      if (shown++ < 8) out += " unit " + std::to_string(u) + " claimed " + std::to_string(v) + "x;";
    }
    if (bad != 0) out = std::to_string(bad) + " units wrong:" + out;
    return out;
  }

 private:
  std::uint64_t n_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> c_;
};

// Releases all threads of a round at once, so that they contend from the start.
class StartGate {
 public:
  void wait() const {
    while (!open_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  void open() { open_.store(true, std::memory_order_release); }

 private:
  std::atomic<bool> open_{false};
};

// Optional per-unit work, uneven so that stealing really happens.
void unit_work(std::uint64_t unit, unsigned cost) {
  if (cost == 0) return;
  volatile std::uint64_t x = unit + 1;
  const unsigned iters = (unit % 7 == 0) ? cost * 8 : cost;
  for (unsigned k = 0; k < iters; ++k) x = x * 6364136223846793005ull + 1442695040888963407ull;
}

// ---------------------------------------------------------------------------------------------
// Work stealing: detail::Stealer, as JobRunner::work_stealing in lib/scheduler.cpp drives it.

struct StealingRound {
  unsigned workers;
  std::uint32_t base;  // first unit (tests the packing near the top of the 32-bit space)
  std::uint32_t units;
  std::uint64_t grain;  // 0 = auto_grain
  unsigned cost = 0;
  bool late_owner = false;  // worker 0 starts only after every other worker has stopped
};

void stealing_worker(ChunkRange* ranges, unsigned workers, unsigned self, std::uint64_t grain,
                     std::uint32_t base, unsigned cost, Counters& counters,
                     std::atomic<std::uint64_t>& claimed) {
  Stealer stealer(ranges, workers, self, grain);
  std::uint64_t mine_total = 0;
  for (;;) {
    const UnitSpan mine = stealer.next();
    if (mine.empty()) break;
    for (std::uint32_t u = mine.first; u < mine.last; ++u) {
      counters.hit(u - base);
      unit_work(u, cost);
    }
    mine_total += mine.size();
  }
  claimed.fetch_add(mine_total, std::memory_order_relaxed);
}

void run_stealing_round(const StealingRound& round) {
  SCOPED_TRACE("workers " + std::to_string(round.workers) + ", base " + std::to_string(round.base) +
               ", units " + std::to_string(round.units) + ", grain " + std::to_string(round.grain) +
               ", cost " + std::to_string(round.cost) + (round.late_owner ? ", late owner" : ""));
  const unsigned P = round.workers;
  const std::uint64_t grain = round.grain == 0 ? auto_grain(round.units, P) : round.grain;
  std::unique_ptr<ChunkRange[]> ranges(new ChunkRange[P]);
  // prepare_schedule: worker w starts on static block w of the units.
  for (unsigned w = 0; w < P; ++w) {
    const Block b = static_block(round.units, P, w);
    ranges[w].reset({static_cast<std::uint32_t>(round.base + b.first),
                     static_cast<std::uint32_t>(round.base + b.last)});
  }
  Counters counters(round.units);
  std::atomic<std::uint64_t> claimed{0};
  std::atomic<unsigned> finished{0};
  StartGate gate;
  std::vector<std::thread> threads;
  threads.reserve(P);
  for (unsigned w = 0; w < P; ++w)
    threads.emplace_back([&, w] {
      gate.wait();
      if (round.late_owner && w == 0 && P > 1)
        while (finished.load(std::memory_order_acquire) != P - 1) std::this_thread::yield();
      stealing_worker(ranges.get(), P, w, grain, round.base, round.cost, counters, claimed);
      finished.fetch_add(1, std::memory_order_acq_rel);
    });
  gate.open();
  for (auto& t : threads) t.join();

  EXPECT_EQ(counters.faults(), "");
  EXPECT_EQ(claimed.load(), round.units);
  for (unsigned w = 0; w < P; ++w) EXPECT_EQ(ranges[w].remaining(), 0u) << "worker " << w;
}

const unsigned kWorkerCounts[] = {1, 2, 3, 4, 8};
const std::uint32_t kUnitCounts[] = {0, 1, 2, 3, 7, 8, 9, 64, 1000, 4099, 65536, 100003};
const std::uint64_t kGrains[] = {0, 1, 2, 3, 17, 1000};

TEST(ChunkRangeStress, WorkStealingClaimsEveryUnitOnce) {
  for (int rep = 0; rep < kRepeats; ++rep)
    for (unsigned P : kWorkerCounts)
      for (std::uint32_t n : kUnitCounts)
        for (std::uint64_t g : kGrains) {
          run_stealing_round({P, 0, n, g});
          if (HasFailure()) return;
        }
}

TEST(ChunkRangeStress, WorkStealingNearTheTopOfTheUnitSpace) {
  // Units right below ChunkRange::kMaxUnits: front and back use all 32 bits of their halves.
  for (int rep = 0; rep < kRepeats; ++rep)
    for (unsigned P : {2u, 4u, 8u})
      for (std::uint32_t n : {1u, 5u, 1000u, 50000u})
        for (std::uint64_t g : {1u, 3u}) {
          const auto base = static_cast<std::uint32_t>(ChunkRange::kMaxUnits - n);
          run_stealing_round({P, base, n, g});
          if (HasFailure()) return;
        }
}

TEST(ChunkRangeStress, WorkStealingUnevenWork) {
  // Items of uneven cost: the owners fall behind at different rates and thieves really split.
  const unsigned cost = kTsan ? 20 : 200;
  for (int rep = 0; rep < kRepeats; ++rep)
    for (unsigned P : {2u, 4u, 8u})
      for (std::uint32_t n : {100u, 5000u, 20000u})
        for (std::uint64_t g : {0u, 1u, 4u}) {
          run_stealing_round({P, 0, n, g, cost});
          if (HasFailure()) return;
        }
}

TEST(ChunkRangeStress, ThievesDrainAnOwnerThatNeverStarts) {
  // Worker 0 starts only after all others have stopped: they must have taken its whole block
  // (a worker stops only when every range is empty), so it finds nothing and stops too.
  for (int rep = 0; rep < kRepeats; ++rep)
    for (unsigned P : {2u, 3u, 8u})
      for (std::uint32_t n : {1u, 2u, 100u, 10000u})
        for (std::uint64_t g : {0u, 1u, 7u}) {
          run_stealing_round({P, 0, n, g, 0, true});
          if (HasFailure()) return;
        }
}

TEST(ChunkRangeStress, OwnerAgainstManyThievesOnOneRange) {
  // Only worker 0 has work to begin with; everyone else starts by stealing from it.
  for (int rep = 0; rep < kRepeats * 4; ++rep)
    for (unsigned P : {2u, 4u, 8u})
      for (std::uint64_t g : {1u, 2u}) {
        const std::uint32_t n = 20000;
        std::unique_ptr<ChunkRange[]> ranges(new ChunkRange[P]);
        ranges[0].reset({0, n});
        Counters counters(n);
        std::atomic<std::uint64_t> claimed{0};
        StartGate gate;
        std::vector<std::thread> threads;
        for (unsigned w = 0; w < P; ++w)
          threads.emplace_back([&, w] {
            gate.wait();
            stealing_worker(ranges.get(), P, w, g, 0, 0, counters, claimed);
          });
        gate.open();
        for (auto& t : threads) t.join();
        ASSERT_EQ(counters.faults(), "") << "P " << P << ", grain " << g;
        ASSERT_EQ(claimed.load(), n);
      }
}

TEST(ChunkRangeStress, RawTakeAndStealNeverOverlap) {
  // The bare operations, without the scheduler's loop: one owner takes single units from the
  // front while thieves take single units from the back of the same range.
  const std::uint32_t n = kTsan ? 20000 : 200000;
  for (int rep = 0; rep < kRepeats; ++rep)
    for (unsigned thieves : {1u, 3u, 7u}) {
      ChunkRange range;
      range.reset({0, n});
      Counters counters(n);
      StartGate gate;
      std::atomic<std::uint64_t> retries{0};
      std::vector<std::thread> threads;
      threads.emplace_back([&] {
        gate.wait();
        for (;;) {
          const UnitSpan s = range.take_front([](std::uint64_t) { return std::uint64_t{1}; });
          if (s.empty()) break;
          counters.hit(s.first);
        }
      });
      for (unsigned t = 0; t < thieves; ++t)
        threads.emplace_back([&] {
          gate.wait();
          std::uint64_t my_retries = 0;
          for (;;) {
            const StealResult r = range.steal_back([](std::uint64_t) { return std::uint64_t{1}; });
            if (r.outcome == Steal::empty) break;
            if (r.outcome == Steal::retry) {
              ++my_retries;
              continue;
            }
            EXPECT_EQ(r.span.size(), 1u);
            counters.hit(r.span.first);
          }
          retries.fetch_add(my_retries, std::memory_order_relaxed);
        });
      gate.open();
      for (auto& t : threads) t.join();
      ASSERT_EQ(counters.faults(), "") << thieves << " thieves";
      ASSERT_EQ(range.remaining(), 0u);
    }
}

// ---------------------------------------------------------------------------------------------
// Every schedule, through detail::Claimer, as JobRunner::run in lib/scheduler.cpp drives it.

void run_claimer_round(Schedule schedule, unsigned P, std::uint32_t count) {
  SCOPED_TRACE(schedule.name() + ", P " + std::to_string(P) + ", count " + std::to_string(count));
  Counters counters(count);
  const ClaimRule rule = make_claim_rule(schedule, count, P, 1);
  ChunkCounter counter;
  std::vector<ChunkRange> ranges(P);
  std::vector<SharedItemTime> times(P);
  const ScheduleState state{&counter, ranges.data(), times.data()};
  reset_schedule_state(rule, state);
  StartGate gate;
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < P; ++w)
    threads.emplace_back([&, w] {
      gate.wait();
      Claimer claimer(rule, state, w);
      for (;;) {
        const UnitSpan s = claimer.next();
        if (s.empty()) return;
        for (std::uint64_t i = s.first; i < s.last; ++i) counters.hit(i);
        // Worker w's items seem to cost w + 1 times as much: the adaptive rules see unequal rates.
        if (claimer.measured()) claimer.record(s.size(), s.size() * 100 * (w + 1));
      }
    });
  gate.open();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counters.faults(), "");
}

TEST(ChunkRangeStress, EveryScheduleClaimsEveryItemOnce) {
  const Schedule schedules[] = {
      Schedule::static_blocks(),      Schedule::static_chunked(3), Schedule::dynamic(1),
      Schedule::dynamic(64),          Schedule::guided(3),         Schedule::trapezoid(),
      Schedule::trapezoid(50, 5),     Schedule::factoring(),       Schedule::fixed_size(),
      Schedule::adaptive_factoring(), Schedule::work_stealing(),   Schedule::work_stealing(7),
      Schedule::adaptive_stealing(),  Schedule::python(),          Schedule::python(5),
      Schedule::automatic()};
  for (int rep = 0; rep < kRepeats; ++rep)
    for (const Schedule& s : schedules)
      for (unsigned P : {1u, 2u, 4u, 8u})
        for (std::uint32_t count : {0u, 1u, 2u, 7u, 1000u, 100003u}) {
          run_claimer_round(s, P, count);
          if (HasFailure()) return;
        }
}

}  // namespace
