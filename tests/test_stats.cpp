// Pool::last_stats() (stats.hpp): what the last map did, per worker and in all;
// Options::statistics; the chunk trace (Options::trace_chunks, trace_capacity); MapStats::table();
// and the statistics of maps that threw or lost a worker.
//
// The callables run in other processes: they never call GoogleTest assertions; what the tests
// need from them goes through shared arrays.
#include <forkpool/forkpool.hpp>
#include <forkpool/stats.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

using forkpool::ChunkRecord;
using forkpool::MapStats;
using forkpool::Options;
using forkpool::Pool;
using forkpool::Schedule;
using forkpool::TaskError;
using forkpool::WorkerStats;
using forkpool_test::catch_as;
using forkpool_test::kEverySchedule;
using forkpool_test::schedule_test_name;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::int64_t triple(std::int64_t i) { return 3 * i + 1; }

// What the stats of a map of n items on `workers` workers that ran to its end must satisfy: the
// workers' items add up to n; a worker ran items if and only if it claimed chunks, and never more
// chunks than items; each busy time fits in the makespan and idle = makespan - busy; the
// imbalance is max busy / mean busy - 1; the totals are the sums of the workers' counts; and the
// schedule's kind decides the shared operations: none for the static kinds, at least one
// compare-and-swap per chunk for the others, and one more per steal attempt for work stealing.
void expect_consistent(const MapStats& m, const Schedule& s, unsigned workers, std::uint64_t n) {
  EXPECT_EQ(m.schedule, s);
  ASSERT_EQ(m.workers.size(), workers);
  EXPECT_EQ(m.items, n);
  EXPECT_GT(m.makespan.count(), 0);
  std::uint64_t items = 0, chunks = 0, steals = 0, attempts = 0;
  std::chrono::nanoseconds busiest{0}, total{0};
  for (unsigned w = 0; w < workers; ++w) {
    SCOPED_TRACE("worker " + std::to_string(w));
    const WorkerStats& ws = m.workers[w];
    items += ws.items;
    chunks += ws.chunks;
    steals += ws.steals;
    attempts += ws.steal_attempts;
    EXPECT_EQ(ws.items == 0, ws.chunks == 0) << ws.items << " items in " << ws.chunks << " chunks";
    EXPECT_LE(ws.chunks, ws.items);
    EXPECT_LE(ws.steals, ws.steal_attempts);
    EXPECT_GE(ws.busy.count(), 0);
    EXPECT_LE(ws.busy, m.makespan);
    EXPECT_EQ(ws.idle, m.makespan - ws.busy);
    busiest = std::max(busiest, ws.busy);
    total += ws.busy;
  }
  EXPECT_EQ(items, m.items);
  EXPECT_EQ(chunks, m.total_chunks());
  EXPECT_EQ(steals, m.total_steals());
  EXPECT_GE(m.imbalance, 0.0);
  if (total.count() > 0) {
    EXPECT_NEAR(
        m.imbalance,
        static_cast<double>(busiest.count()) * workers / static_cast<double>(total.count()) - 1,
        1e-9);
  } else {
    EXPECT_EQ(m.imbalance, 0.0);
  }
  if (forkpool_test::static_schedule(s)) {
    EXPECT_EQ(m.scheduling_operations, 0u);
    EXPECT_EQ(attempts, 0u);
  } else if (forkpool_test::counter_schedule(s)) {
    EXPECT_GE(m.scheduling_operations, chunks);
    EXPECT_EQ(attempts, 0u);
  } else {
    EXPECT_GE(m.scheduling_operations, chunks + attempts);
  }
}

// Empty if the trace of a map over [first, first + n) on `workers` workers (every chunk recorded)
// covers every item exactly once, in records sorted by start time, each inside the makespan, and
// each worker's records add up to its chunks and items; else what is wrong.
std::string trace_faults(const MapStats& m, unsigned workers, std::int64_t first, std::int64_t n) {
  if (m.chunks_truncated) return "truncated";
  if (!std::is_sorted(m.chunks.begin(), m.chunks.end(),
                      [](const ChunkRecord& a, const ChunkRecord& b) { return a.start < b.start; }))
    return "not sorted by start";
  std::vector<std::uint32_t> seen(static_cast<std::size_t>(n), 0);
  std::vector<std::uint64_t> chunks(workers, 0), items(workers, 0);
  std::uint64_t total = 0;
  for (const ChunkRecord& c : m.chunks) {
    const std::string where =
        "record of worker " + std::to_string(c.worker) + " at " + std::to_string(c.first) + ": ";
    if (c.worker >= workers) return where + "no such worker";
    if (c.items == 0) return where + "no items";
    if (c.first < first || c.first + static_cast<std::int64_t>(c.items) > first + n)
      return where + "outside the map";
    if (c.start.count() < 0 || c.duration.count() < 0) return where + "negative time";
    if (c.start + c.duration > m.makespan) return where + "ends after the makespan";
    for (std::uint64_t k = 0; k < c.items; ++k)
      ++seen[static_cast<std::size_t>(c.first - first) + k];
    ++chunks[c.worker];
    items[c.worker] += c.items;
    total += c.items;
  }
  if (total != static_cast<std::uint64_t>(n)) return "records add up to " + std::to_string(total);
  for (std::size_t k = 0; k < seen.size(); ++k)
    if (seen[k] != 1)
      return "item " + std::to_string(k) + " in " + std::to_string(seen[k]) + " records";
  for (unsigned w = 0; w < workers; ++w) {
    if (chunks[w] != m.workers[w].chunks)
      return "worker " + std::to_string(w) + ": " + std::to_string(chunks[w]) + " records of " +
             std::to_string(m.workers[w].chunks) + " chunks";
    if (items[w] != m.workers[w].items)
      return "worker " + std::to_string(w) + ": records of " + std::to_string(items[w]) +
             " items, stats of " + std::to_string(m.workers[w].items);
  }
  return "";
}

// The chunk sizes of a traced map in index order: for a self-scheduling schedule, the order in
// which the shared counter handed them out.
std::vector<std::uint64_t> sizes_by_index(const MapStats& m) {
  std::vector<ChunkRecord> records = m.chunks;
  std::sort(records.begin(), records.end(),
            [](const ChunkRecord& a, const ChunkRecord& b) { return a.first < b.first; });
  std::vector<std::uint64_t> sizes;
  for (const ChunkRecord& c : records) sizes.push_back(c.items);
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// Every schedule

class StatsEverySchedule : public ::testing::TestWithParam<Schedule> {};

TEST_P(StatsEverySchedule, EveryCallAddsUpAndItsTraceCoversEachItemOnce) {
  const Schedule s = GetParam();
  const std::int64_t n = 20011, first = -500;
  Pool pool(
      Options{.processes = 3, .trace_chunks = true, .trace_capacity = static_cast<std::size_t>(n)});
  const forkpool::Range r = forkpool::range(first, first + n);
  const auto out = pool.map(triple, r, s);
  for (std::int64_t k = 0; k < n; ++k)
    ASSERT_EQ(out[static_cast<std::size_t>(k)], triple(first + k));
  {
    SCOPED_TRACE("map");
    const MapStats& m = pool.last_stats();
    expect_consistent(m, s, 3, n);
    for (const WorkerStats& w : m.workers) EXPECT_GT(w.busy.count(), 0);
    EXPECT_EQ(trace_faults(m, 3, first, n), "");
  }
  const std::int64_t sum = pool.map_reduce(triple, r, std::int64_t{0}, std::plus<>{}, s);
  EXPECT_EQ(sum, 3 * (first + first + n - 1) * n / 2 + n);
  {
    SCOPED_TRACE("map_reduce");
    expect_consistent(pool.last_stats(), s, 3, n);
    EXPECT_EQ(trace_faults(pool.last_stats(), 3, first, n), "");
  }
  // A for_each of another size: the stats and the trace are of this call only.
  pool.for_each(
      forkpool::range(7, 1007), [](std::int64_t) {}, s);
  {
    SCOPED_TRACE("for_each");
    expect_consistent(pool.last_stats(), s, 3, 1000);
    EXPECT_EQ(trace_faults(pool.last_stats(), 3, 7, 1000), "");
  }
  // Over an input: the records are positions in it.
  const std::vector<std::int64_t> input(777, 5);
  (void)pool.map([](std::int64_t x) { return x; }, input, s);
  {
    SCOPED_TRACE("map over a vector");
    expect_consistent(pool.last_stats(), s, 3, 777);
    EXPECT_EQ(trace_faults(pool.last_stats(), 3, 0, 777), "");
  }
  // Fewer items than workers: a worker that runs nothing claims nothing.
  (void)pool.map(triple, forkpool::range(2), s);
  {
    SCOPED_TRACE("2 items");
    expect_consistent(pool.last_stats(), s, 3, 2);
    EXPECT_EQ(trace_faults(pool.last_stats(), 3, 0, 2), "");
  }
}

// A worker killed in an item (raise(SIGKILL), retried once): its slot's commit count survives it
// and its replacement goes on from there, so every item is counted once, in the slot of the
// process that ran it last: the dead worker's committed items in its slot, the items it lost in
// whichever slot ran them again.
TEST_P(StatsEverySchedule, AfterARecoveredDeathEveryItemIsCountedOnceInItsSlot) {
  const Schedule s = GetParam();
  Pool pool(Options{.processes = 2, .retries = 1});
  const std::int64_t n = 20000, fatal = 7777;
  auto who = pool.shared_array<pid_t>(static_cast<std::size_t>(n));
  auto armed = pool.shared_array<std::uint32_t>(1);
  armed[0] = 1;
  const std::vector<pid_t> before = pool.pids();
  const auto out = pool.map(
      [who = who.data(), armed = armed.data()](std::int64_t i) {
        if (i == fatal && std::atomic_ref<std::uint32_t>(*armed).exchange(0) == 1) raise(SIGKILL);
        who[i] = forkpool::current_process().pid;
        return triple(i);
      },
      forkpool::range(n), s);
  for (std::int64_t k = 0; k < n; ++k) ASSERT_EQ(out[static_cast<std::size_t>(k)], triple(k));
  const std::vector<pid_t> after = pool.pids();
  ASSERT_EQ(after.size(), 2u);
  const MapStats m = pool.last_stats();
  ASSERT_EQ(m.workers.size(), 2u);
  EXPECT_EQ(m.schedule, s);
  EXPECT_EQ(m.items, static_cast<std::uint64_t>(n));
  for (std::size_t w = 0; w < 2; ++w) {
    auto ran_in_slot = static_cast<std::uint64_t>(std::count(who.begin(), who.end(), after[w]));
    if (before[w] != after[w])
      ran_in_slot += static_cast<std::uint64_t>(std::count(who.begin(), who.end(), before[w]));
    EXPECT_EQ(m.workers[w].items, ran_in_slot) << "worker " << w;
  }
  for (const WorkerStats& w : m.workers) {
    EXPECT_LE(w.busy, m.makespan);
    EXPECT_EQ(w.idle, m.makespan - w.busy);
  }
}

INSTANTIATE_TEST_SUITE_P(All, StatsEverySchedule, ::testing::ValuesIn(kEverySchedule),
                         [](const ::testing::TestParamInfo<Schedule>& info) {
                           return schedule_test_name(info.param);
                         });

// ---------------------------------------------------------------------------------------------
// What each kind of schedule does, in numbers

TEST(Stats, EmptyBeforeTheFirstMap) {
  Pool pool(2);
  const MapStats& m = pool.last_stats();
  EXPECT_TRUE(m.workers.empty());
  EXPECT_EQ(m.items, 0u);
  EXPECT_EQ(m.makespan.count(), 0);
  EXPECT_EQ(m.imbalance, 0.0);
  EXPECT_EQ(m.scheduling_operations, 0u);
  EXPECT_TRUE(m.chunks.empty());
  EXPECT_FALSE(m.chunks_truncated);
  EXPECT_EQ(m.total_chunks(), 0u);
  EXPECT_EQ(m.total_steals(), 0u);
}

TEST(Stats, StaticBlocksHaveOneChunkPerWorkerAndNoSharedOperations) {
  Pool pool(2);
  (void)pool.map(triple, forkpool::range(1001), Schedule::static_blocks());
  const MapStats& m = pool.last_stats();
  expect_consistent(m, Schedule::static_blocks(), 2, 1001);
  EXPECT_EQ(m.workers[0].items, 501u);
  EXPECT_EQ(m.workers[1].items, 500u);
  for (const WorkerStats& w : m.workers) {
    EXPECT_EQ(w.chunks, 1u);
    EXPECT_EQ(w.steals, 0u);
    EXPECT_EQ(w.steal_attempts, 0u);
  }
  EXPECT_EQ(m.scheduling_operations, 0u);
}

TEST(Stats, StaticChunkedDealsItsChunksRoundRobin) {
  // static_chunked(7) over 100 items: 15 chunks, the last of 2; workers 0, 1, 2 get chunks
  // {0, 3, 6, 9, 12}, {1, 4, ..., 13} and {2, 5, ..., 14}.
  Pool pool(3);
  (void)pool.map(triple, forkpool::range(100), Schedule::static_chunked(7));
  const MapStats& m = pool.last_stats();
  expect_consistent(m, Schedule::static_chunked(7), 3, 100);
  const std::uint64_t items[] = {35, 35, 30};
  for (unsigned w = 0; w < 3; ++w) {
    EXPECT_EQ(m.workers[w].chunks, 5u) << "worker " << w;
    EXPECT_EQ(m.workers[w].items, items[w]) << "worker " << w;
  }
  EXPECT_EQ(m.scheduling_operations, 0u);
}

TEST(Stats, DynamicClaimsCeilNOverCChunks) {
  Pool pool(3);
  const std::uint64_t n = 10007;
  for (std::uint64_t c : {1, 7, 1000, 10007, 20000}) {
    SCOPED_TRACE("dynamic(" + std::to_string(c) + ")");
    (void)pool.map(triple, forkpool::range(static_cast<std::int64_t>(n)), Schedule::dynamic(c));
    const MapStats& m = pool.last_stats();
    expect_consistent(m, Schedule::dynamic(c), 3, n);
    EXPECT_EQ(m.total_chunks(), (n + c - 1) / c);
    EXPECT_GE(m.scheduling_operations, m.total_chunks());
    EXPECT_EQ(m.total_steals(), 0u);
  }
}

TEST(Stats, PythonDefaultClaimsAboutFourChunksPerWorker) {
  // chunksize = ceil(N / 4P), so ceil(N / chunksize) chunks: 4P when 4P divides N.
  struct Case {
    unsigned workers;
    std::int64_t n;
    std::uint64_t chunks;
  };
  for (const Case c : {Case{2, 1000, 8}, Case{3, 1001, 12}, Case{2, 10, 5}, Case{4, 3, 3}}) {
    SCOPED_TRACE("P " + std::to_string(c.workers) + ", N " + std::to_string(c.n));
    Pool pool(c.workers);
    (void)pool.map(triple, forkpool::range(c.n), Schedule::python());
    expect_consistent(pool.last_stats(), Schedule::python(), c.workers,
                      static_cast<std::uint64_t>(c.n));
    EXPECT_EQ(pool.last_stats().total_chunks(), c.chunks);
    // An explicit chunksize: ceil(N / chunksize).
    (void)pool.map(triple, forkpool::range(c.n), Schedule::python(5));
    EXPECT_EQ(pool.last_stats().total_chunks(), static_cast<std::uint64_t>((c.n + 4) / 5));
  }
}

TEST(Stats, SelfSchedulingChunksFollowThePublishedSequences) {
  // The trace in index order is the order in which the shared counter handed the chunks out.
  struct Case {
    Schedule schedule;
    unsigned workers;
    std::int64_t n;
    std::vector<std::uint64_t> sizes;
  };
  std::vector<std::uint64_t> fac2;
  for (std::uint64_t c : {125, 63, 32, 16, 8, 4, 2}) fac2.insert(fac2.end(), 4, c);
  std::vector<std::uint64_t> mfsc(31, 3203);
  mfsc.push_back(707);
  const Case cases[] = {
      // GSS (Polychronopoulos & Kuck 1987): ceil(R / P).
      {Schedule::guided(), 4, 100, {25, 19, 14, 11, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1}},
      // TSS (Tzen & Ni 1993): 125 falling by 8, the last cut to what is left.
      {Schedule::trapezoid(), 4, 1000, {125, 117, 109, 101, 93, 85, 77, 69, 61, 53, 45, 37, 28}},
      // FAC2 (Hummel, Schonberg & Flynn 1992): batches of P chunks, halving.
      {Schedule::factoring(), 4, 1000, fac2},
      // mFSC: floor(0.55 + T ln 2 / ln T), T = 50000: 3203.
      {Schedule::fixed_size(), 2, 100000, mfsc},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.schedule.name());
    Pool pool(Options{.processes = c.workers, .trace_chunks = true});
    (void)pool.map(triple, forkpool::range(c.n), c.schedule);
    const MapStats& m = pool.last_stats();
    expect_consistent(m, c.schedule, c.workers, static_cast<std::uint64_t>(c.n));
    EXPECT_EQ(trace_faults(m, c.workers, 0, c.n), "");
    EXPECT_EQ(sizes_by_index(m), c.sizes);
    EXPECT_EQ(m.total_chunks(), c.sizes.size());
  }
}

// ---------------------------------------------------------------------------------------------
// Work stealing: a worker whose block is cheap steals from the one whose block is costly.

class StatsStealing : public ::testing::TestWithParam<Schedule> {};

TEST_P(StatsStealing, AnIdleWorkerStealsFromACostlyBlock) {
  const Schedule s = GetParam();
  Pool pool(2);
  const std::int64_t n = 2000;
  auto runs = pool.shared_array<std::uint32_t>(static_cast<std::size_t>(n));
  auto started = pool.shared_array<std::uint32_t>(1);
  // Items [0, 1000) (worker 0's block) take 100 us each, once worker 1 has started (or after 2 s);
  // items [1000, 2000) (worker 1's) take nothing. Worker 1 is done with its own block while
  // worker 0 has most of its 100 ms still to run.
  pool.for_each(
      forkpool::range(n),
      [runs = runs.data(), started = started.data()](std::int64_t i) {
        std::atomic_ref<std::uint32_t>(runs[i]).fetch_add(1, std::memory_order_relaxed);
        std::atomic_ref<std::uint32_t> go(*started);
        if (i >= n / 2) {
          go.store(1, std::memory_order_relaxed);
          return;
        }
        const auto until = Clock::now() + 2s;
        while (go.load(std::memory_order_relaxed) == 0 && Clock::now() < until) {
        }
        forkpool_test::spin_for_us(100);
      },
      s);
  for (std::int64_t k = 0; k < n; ++k) ASSERT_EQ(runs[static_cast<std::size_t>(k)], 1u) << k;
  const MapStats& m = pool.last_stats();
  expect_consistent(m, s, 2, n);
  EXPECT_GT(m.total_steals(), 0u);
  EXPECT_GE(m.workers[1].steals, 1u);
  EXPECT_GT(m.workers[1].items, static_cast<std::uint64_t>(n / 2))
      << "worker 1 took none of block 0";
  EXPECT_GE(m.scheduling_operations,
            m.total_chunks() + m.workers[0].steal_attempts + m.workers[1].steal_attempts);
}

INSTANTIATE_TEST_SUITE_P(Stealing, StatsStealing,
                         ::testing::Values(Schedule::work_stealing(), Schedule::work_stealing(3),
                                           Schedule::adaptive_stealing(), Schedule::automatic()),
                         [](const ::testing::TestParamInfo<Schedule>& info) {
                           return schedule_test_name(info.param);
                         });

// ---------------------------------------------------------------------------------------------
// Maps that throw, Options::statistics, the trace's capacity, the table

TEST(Stats, AfterATaskErrorTheStatsAreThoseOfTheFailedMap) {
  Pool pool(3);
  (void)pool.map(triple, forkpool::range(5000), Schedule::dynamic(1));
  ASSERT_EQ(pool.last_stats().items, 5000u);
  const auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [](std::int64_t i) {
          if (i == 50000) throw std::runtime_error("bad item");
          return i;
        },
        forkpool::range(100000), Schedule::guided());
  });
  ASSERT_TRUE(e);
  const MapStats& m = pool.last_stats();
  EXPECT_EQ(m.schedule, Schedule::guided());
  ASSERT_EQ(m.workers.size(), 3u);
  EXPECT_GT(m.makespan.count(), 0);
  EXPECT_LE(m.items, 100000u);
  EXPECT_EQ(m.items, m.workers[0].items + m.workers[1].items + m.workers[2].items);
  EXPECT_GE(m.total_chunks(), 1u);
  for (const WorkerStats& w : m.workers) {
    EXPECT_LE(w.busy, m.makespan);
    EXPECT_EQ(w.idle, m.makespan - w.busy);
  }
}

// After a map that threw, items are what the workers committed, the piece that threw included
// (stats.hpp): one worker runs a map in pieces that grow 4 times a piece (1, 4, 16, ... items
// while items are fast), the piece that holds item 50000 is [21845, 87381), and it counts whole.
TEST(Stats, AfterATaskErrorItemsCountThePieceThatThrew) {
  Pool pool(1);
  auto ran = pool.shared_array<std::uint64_t>(1);
  const auto e = catch_as<TaskError>([&] {
    (void)pool.map(
        [ran = ran.data()](std::int64_t i) {
          std::atomic_ref<std::uint64_t>(*ran).fetch_add(1, std::memory_order_relaxed);
          if (i == 50000) throw std::runtime_error("bad item");
          return i;
        },
        forkpool::range(1000000), Schedule::static_blocks());
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(ran[0], 50001u);  // items 0 to 50000, then the map stopped
  const MapStats m = pool.last_stats();
  EXPECT_GT(m.items, 50000u);
  EXPECT_LT(m.items, 1000000u);
  EXPECT_EQ(m.items, m.workers[0].items);
}

TEST(Stats, WithoutStatisticsBusyIsZeroAndTheCountsAreKept) {
  Pool pool(Options{.processes = 2, .statistics = false});
  for (const Schedule& s :
       {Schedule::work_stealing(), Schedule::dynamic(10), Schedule::static_blocks()}) {
    SCOPED_TRACE(s.name());
    (void)pool.map(triple, forkpool::range(20000), s);
    const MapStats& m = pool.last_stats();
    expect_consistent(m, s, 2, 20000);
    for (const WorkerStats& w : m.workers) {
      EXPECT_EQ(w.busy.count(), 0);
      EXPECT_EQ(w.idle, m.makespan);
    }
    EXPECT_EQ(m.imbalance, 0.0);
    EXPECT_GT(m.makespan.count(), 0);  // measured by the parent, always
    EXPECT_TRUE(m.chunks.empty());     // not traced
  }
}

TEST(Stats, TheTraceIsTruncatedAtTraceCapacity) {
  Pool pool(Options{.processes = 2, .trace_chunks = true, .trace_capacity = 2});
  (void)pool.map(triple, forkpool::range(1000), Schedule::dynamic(1));
  const MapStats& m = pool.last_stats();
  expect_consistent(m, Schedule::dynamic(1), 2, 1000);
  EXPECT_EQ(m.total_chunks(), 1000u);  // counted whether recorded or not
  EXPECT_TRUE(m.chunks_truncated);
  EXPECT_LE(m.chunks.size(), 4u);
  EXPECT_GE(m.chunks.size(), 2u);  // a worker that ran chunks recorded its first two
  std::vector<int> per_worker(2, 0);
  for (const ChunkRecord& c : m.chunks) {
    ASSERT_LT(c.worker, 2u);
    ++per_worker[c.worker];
    EXPECT_EQ(c.items, 1u);
  }
  for (unsigned w = 0; w < 2; ++w)
    EXPECT_EQ(per_worker[w], static_cast<int>(std::min<std::uint64_t>(2, m.workers[w].chunks)));
  // A map with no more chunks per worker than the capacity is complete, and the flag is reset.
  (void)pool.map(triple, forkpool::range(1000), Schedule::static_blocks());
  EXPECT_FALSE(pool.last_stats().chunks_truncated);
  EXPECT_EQ(trace_faults(pool.last_stats(), 2, 0, 1000), "");
}

TEST(Stats, TraceCapacityMustBeInRangeWhenTracing) {
  const std::size_t children = forkpool_test::child_count();
  for (std::size_t capacity : {std::size_t{0}, (std::size_t{1} << 24) + 1}) {
    const auto e = catch_as<std::invalid_argument>([capacity] {
      Pool pool(Options{.processes = 2, .trace_chunks = true, .trace_capacity = capacity});
    });
    ASSERT_TRUE(e);
    EXPECT_CONTAINS(e->what(), "trace_capacity");
    EXPECT_CONTAINS(e->what(), "(got " + std::to_string(capacity) + ")");
  }
  EXPECT_EQ(forkpool_test::child_count(), children);  // nothing was forked
  // Without tracing, the capacity is not used.
  Pool pool(Options{.processes = 2, .trace_capacity = 0});
  EXPECT_TRUE(forkpool_test::map_works(pool, 1000));
  EXPECT_TRUE(pool.last_stats().chunks.empty());
}

TEST(Stats, TheTableHasARowPerWorkerAndTheScheduleName) {
  Pool pool(3);
  (void)pool.map(triple, forkpool::range(1000), Schedule::dynamic(7));
  const MapStats& m = pool.last_stats();
  const std::string table = m.table();
  std::ostringstream printed;
  printed << m;
  EXPECT_EQ(printed.str(), table);
  std::vector<std::string> lines;
  std::istringstream in(table);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u + 2u) << table;  // a header, a row per worker, a summary
  EXPECT_EQ(table.back(), '\n');
  for (const char* column : {"worker", "items", "chunks", "steals", "busy ms", "idle ms"})
    EXPECT_CONTAINS(lines[0], column);
  for (unsigned w = 0; w < 3; ++w) {
    std::istringstream row(lines[1 + w]);
    unsigned worker = 99;
    std::uint64_t items = 0, chunks = 0, steals = 0, tried = 0;
    row >> worker >> items >> chunks >> steals >> tried;
    EXPECT_EQ(worker, w) << lines[1 + w];
    EXPECT_EQ(items, m.workers[w].items) << lines[1 + w];
    EXPECT_EQ(chunks, m.workers[w].chunks) << lines[1 + w];
    EXPECT_EQ(steals, m.workers[w].steals) << lines[1 + w];
    EXPECT_EQ(tried, m.workers[w].steal_attempts) << lines[1 + w];
  }
  EXPECT_CONTAINS(lines[4], "dynamic(7)");
  EXPECT_CONTAINS(lines[4], "1000 items");
  EXPECT_CONTAINS(lines[4], std::to_string(m.total_chunks()) + " chunks");
  EXPECT_CONTAINS(lines[4], std::to_string(m.scheduling_operations) + " scheduling operations");
  // The empty stats: the header and the summary.
  const std::string empty = MapStats{}.table();
  EXPECT_EQ(forkpool_test::occurrences(empty, "\n"), 2u) << empty;
  EXPECT_CONTAINS(empty, "static_blocks: 0 items");
}

// ---------------------------------------------------------------------------------------------
// Maps that do not run, and pools that are gone

// "What the last map, map_reduce or for_each on this pool did" (forkpool.hpp): a map of no items
// is the last map, and did nothing.
TEST(Stats, AnEmptyMapReplacesTheStatsOfThePreviousMap) {
  Pool pool(2);
  (void)pool.map(triple, forkpool::range(1000), Schedule::dynamic(7));
  ASSERT_EQ(pool.last_stats().items, 1000u);
  (void)pool.map(triple, forkpool::range(5, 5), Schedule::guided());
  const MapStats& m = pool.last_stats();
  EXPECT_EQ(m.schedule, Schedule::guided());
  EXPECT_EQ(m.items, 0u);
  EXPECT_EQ(m.total_chunks(), 0u);
}

// Every other member of a moved-from Pool answers (size() 0, pids() empty, options() the
// defaults) or throws PoolClosed; last_stats() must not dereference the missing state. Run in a
// child, so that a crash fails this test only.
TEST(Stats, AMovedFromPoolHasEmptyStats) {
  const auto result = forkpool_test::run_in_child(
      [](int out) {
        Pool a(1);
        (void)forkpool_test::map_works(a, 100);
        Pool b(std::move(a));
        const MapStats& m = a.last_stats();  // a is moved from
        const bool empty = m.workers.empty() && m.items == 0;
        (void)!write(out, empty ? "ok" : "not empty", empty ? 2 : 9);
      },
      20s);
  ASSERT_NE(result.status, -1) << "the child hung";
  EXPECT_FALSE(WIFSIGNALED(result.status))
      << "the child was killed by signal " << WTERMSIG(result.status) << " ("
      << strsignal(WTERMSIG(result.status)) << ")";
  EXPECT_EQ(result.output, "ok");
}

}  // namespace
