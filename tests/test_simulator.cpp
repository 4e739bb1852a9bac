// The scheduling simulator (forkpool/simulator.hpp): cases whose makespan, balance or chunks are
// known exactly, every item run once under every schedule, and its argument checks.
#include <forkpool/detail/chunking.hpp>
#include <forkpool/schedule.hpp>
#include <forkpool/simulator.hpp>
#include <forkpool/stats.hpp>

#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using forkpool::MapStats;
using forkpool::Schedule;
using forkpool::simulate;
using forkpool::SimulatorCosts;
using std::chrono::nanoseconds;

std::vector<Schedule> portfolio() {
  return {Schedule::static_blocks(), Schedule::static_chunked(64),  Schedule::dynamic(1),
          Schedule::dynamic(64),     Schedule::guided(1),           Schedule::trapezoid(),
          Schedule::factoring(),     Schedule::fixed_size(),        Schedule::adaptive_factoring(),
          Schedule::work_stealing(), Schedule::adaptive_stealing(), Schedule::python(),
          Schedule::automatic()};
}

bool times_chunks(Schedule s) {
  return s.kind() == Schedule::Kind::adaptive_factoring ||
         s.kind() == Schedule::Kind::adaptive_stealing || s.kind() == Schedule::Kind::automatic;
}

bool claims_from_counter(Schedule s) {
  using K = Schedule::Kind;
  switch (s.kind()) {
    case K::static_blocks:
    case K::static_chunked:
    case K::work_stealing:
    case K::adaptive_stealing:
    case K::automatic:
      return false;
    default:
      return true;
  }
}

// Whole nanoseconds, so that every sum below is exact in double.
std::vector<double> uneven_costs(std::size_t n) {
  std::vector<double> c(n);
  for (std::size_t i = 0; i < n; ++i)
    c[i] = static_cast<double>(100 * (i % 7 + 1) + (i % 3) * 1000);
  return c;
}

std::vector<double> triangular_costs(std::size_t n) {
  std::vector<double> c(n);
  std::iota(c.begin(), c.end(), 0.0);
  return c;
}

// The chunk sizes in claim order of a schedule that claims from the shared counter (in index
// order): the trace sorted by first item.
std::vector<std::uint64_t> sizes_by_first(MapStats stats) {
  std::sort(stats.chunks.begin(), stats.chunks.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::uint64_t> sizes;
  for (const auto& c : stats.chunks) sizes.push_back(c.items);
  return sizes;
}

TEST(Simulator, OneWorkerTakesTheSumOfItsItemsAndOverheads) {
  const std::vector<double> items = uneven_costs(1000);
  const double sum = std::accumulate(items.begin(), items.end(), 0.0);
  const SimulatorCosts costs{
      .dispatch_ns = 30, .timing_ns = 40, .remote_ns = 500, .start_ns = 20000, .stagger_ns = 7000};
  for (const Schedule& s : portfolio()) {
    SCOPED_TRACE(s.name());
    const MapStats m = simulate(s, 1, items, costs);
    const auto chunks = static_cast<double>(m.total_chunks());
    // The first claim on the shared counter follows the parent's reset of it.
    const double expected = costs.start_ns + sum + chunks * costs.dispatch_ns +
                            (times_chunks(s) ? chunks * costs.timing_ns : 0) +
                            (claims_from_counter(s) ? costs.remote_ns : 0);
    EXPECT_EQ(m.makespan, nanoseconds(std::llround(expected)));
    EXPECT_EQ(m.workers[0].busy, m.makespan - nanoseconds(20000));
    EXPECT_EQ(m.imbalance, 0);
    EXPECT_EQ(m.items, 1000u);
  }
  EXPECT_EQ(simulate(Schedule::dynamic(1), 1, items, {}).makespan, nanoseconds(std::llround(sum)));
}

TEST(Simulator, StaticBlocksOnATriangleAreHalfAsSlowAgainOnTwoWorkers) {
  const std::vector<double> items = triangular_costs(100000);
  const double sum = std::accumulate(items.begin(), items.end(), 0.0);
  const MapStats m = simulate(Schedule::static_blocks(), 2, items, {});
  // Worker 1's half of a triangle is 3/4 of its area: 1.5 times the mean.
  EXPECT_NEAR(m.imbalance, 0.5, 1e-3);
  EXPECT_NEAR(static_cast<double>(m.makespan.count()) / (sum / 2), 1.5, 1e-3);
  EXPECT_EQ(m.total_chunks(), 2u);
  EXPECT_EQ(m.total_steals(), 0u);
}

TEST(Simulator, WorkStealingBalancesATriangle) {
  const MapStats m = simulate(Schedule::work_stealing(), 2, triangular_costs(100000), {});
  EXPECT_GT(m.total_steals(), 0u);
  EXPECT_LT(m.imbalance, 0.01);
}

TEST(Simulator, DynamicOneOnUniformItemsTakesCeilNOverPItems) {
  const std::vector<double> items(1001, 250.0);
  const MapStats m = simulate(Schedule::dynamic(1), 4, items, {});
  EXPECT_EQ(m.makespan, nanoseconds(251 * 250));
  EXPECT_EQ(m.total_chunks(), 1001u);
}

TEST(Simulator, ClaimsAfterAnotherWorkersClaimPayTheRemoteCost) {
  // Worker 0 and worker 1 claim in turn, every claim after the other's; worker 0's last, empty
  // look at the counter follows worker 1's last claim.
  const std::vector<double> items(1000, 2000.0);
  const SimulatorCosts costs{.remote_ns = 100};
  const MapStats m = simulate(Schedule::dynamic(1), 2, items, costs);
  EXPECT_EQ(m.makespan, nanoseconds(500 * (2000 + 100) + 100));
}

TEST(Simulator, WorkersStartOneAfterAnother) {
  const std::vector<double> items(400, 1000.0);
  const SimulatorCosts costs{.dispatch_ns = 10, .start_ns = 5000, .stagger_ns = 300};
  const MapStats m = simulate(Schedule::static_blocks(), 4, items, costs);
  EXPECT_EQ(m.makespan, nanoseconds(5000 + 3 * 300 + 10 + 100 * 1000));
  EXPECT_EQ(m.workers[0].busy, m.workers[3].busy);
  EXPECT_EQ(m.workers[0].idle, nanoseconds(3 * 300 + 5000));
}

TEST(Simulator, EveryItemRunsExactlyOnce) {
  const std::vector<double> items = uneven_costs(3001);
  const double sum = std::accumulate(items.begin(), items.end(), 0.0);
  for (const Schedule& s : portfolio())
    for (unsigned p : {1u, 2u, 3u, 64u, 1024u}) {
      SCOPED_TRACE(s.name() + " on " + std::to_string(p) + " workers");
      const MapStats m = simulate(s, p, items, {.dispatch_ns = 20, .remote_ns = 100}, true);
      std::vector<int> runs(items.size(), 0);
      for (const auto& c : m.chunks)
        for (std::uint64_t i = 0; i < c.items; ++i) ++runs[static_cast<std::size_t>(c.first) + i];
      EXPECT_EQ(std::count(runs.begin(), runs.end(), 1), static_cast<long>(items.size()));
      EXPECT_EQ(m.chunks.size(), m.total_chunks());
      std::uint64_t ran = 0;
      for (const auto& w : m.workers) ran += w.items;
      EXPECT_EQ(ran, items.size());
      EXPECT_GE(static_cast<double>(m.makespan.count()), sum / p);
      ASSERT_FALSE(HasFailure());
    }
}

TEST(Simulator, ChunkCountsAreTheRules) {
  const std::vector<double> items(1000, 100.0);
  EXPECT_EQ(simulate(Schedule::python(), 4, items, {}).total_chunks(), 16u);  // 4P chunks of 63
  EXPECT_EQ(simulate(Schedule::dynamic(64), 4, items, {}).total_chunks(), 16u);
  EXPECT_EQ(simulate(Schedule::static_blocks(), 4, items, {}).total_chunks(), 4u);
  EXPECT_EQ(simulate(Schedule::static_chunked(10), 3, items, {}).total_chunks(), 100u);
  const std::uint64_t mfsc = forkpool::detail::fixed_size_chunk(1000, 4);
  EXPECT_EQ(simulate(Schedule::fixed_size(), 4, items, {}).total_chunks(),
            forkpool::detail::ceil_div(1000, mfsc));
  // FAC2: batches of P chunks, each batch half of what is left.
  std::vector<std::uint64_t> fac2;
  for (std::uint64_t size : {125, 63, 32, 16, 8, 4, 2}) fac2.insert(fac2.end(), 4, size);
  EXPECT_EQ(sizes_by_first(simulate(Schedule::factoring(), 4, items, {}, true)), fac2);
  // GSS: ceil(R / P) of the R left.
  std::vector<std::uint64_t> gss;
  for (std::uint64_t left = 1000; left > 0; left -= gss.back()) gss.push_back((left + 3) / 4);
  EXPECT_EQ(sizes_by_first(simulate(Schedule::guided(), 4, items, {}, true)), gss);
}

TEST(Simulator, AWorkersMeasurementIsSeenOnceItsChunkIsOver) {
  // adaptive_factoring on 2 workers: probe chunks of 12800 / (64 x 2) = 100 items. Worker 0 runs
  // two fast probes, [0, 100) and [200, 300), while worker 1 is still in its slow one, [100, 200):
  // as in the pool, worker 1 has published no estimate yet, and worker 0's third chunk is sized
  // from worker 0's estimate alone.
  std::vector<double> items(12800, 100.0);
  std::fill(items.begin() + 100, items.begin() + 200, 1000.0);
  const MapStats m = simulate(Schedule::adaptive_factoring(), 2, items, {}, true);
  const auto third =
      std::find_if(m.chunks.begin(), m.chunks.end(), [](const auto& c) { return c.first == 300; });
  ASSERT_NE(third, m.chunks.end());
  EXPECT_EQ(third->worker, 0u);
  using forkpool::detail::AfSums;
  using forkpool::detail::ItemTime;
  const ItemTime fast{.mean = 100, .variance = 0}, slow{.mean = 1000, .variance = 0};
  AfSums own;
  own.add(fast);
  AfSums both = own;
  both.add(slow);
  const std::uint64_t expected = forkpool::detail::af_chunk(own.over(2), fast, 12500);
  EXPECT_EQ(third->items, expected);
  // What it would be had worker 1's slow probe been seen when it was claimed.
  EXPECT_NE(forkpool::detail::af_chunk(both, fast, 12500), expected);
}

TEST(Simulator, AnEmptyMapTakesNoTime) {
  const MapStats m = simulate(Schedule::dynamic(1), 8, {}, {.start_ns = 1000});
  EXPECT_EQ(m.makespan, nanoseconds(0));
  EXPECT_EQ(m.workers.size(), 8u);
  EXPECT_EQ(m.total_chunks(), 0u);
}

void expect_invalid(const std::function<void()>& f, const std::string& says) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one that says: " << says;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
}

TEST(Simulator, RejectsBadArguments) {
  const std::vector<double> items(10, 1.0);
  const auto dyn = Schedule::dynamic(1);
  expect_invalid([&] { simulate(dyn, 0, items, {}); }, "workers must be in [1, 1024], got 0");
  expect_invalid([&] { simulate(dyn, 1025, items, {}); }, "workers must be in [1, 1024], got 1025");
  expect_invalid([&] { simulate(dyn, 2, items, {.dispatch_ns = -1}); },
                 "costs.dispatch_ns must be finite and >= 0");
  expect_invalid([&] { simulate(dyn, 2, items, {.remote_ns = std::nan("")}); },
                 "costs.remote_ns must be finite and >= 0");
  expect_invalid(
      [&] { simulate(dyn, 2, items, {.start_ns = std::numeric_limits<double>::infinity()}); },
      "costs.start_ns must be finite and >= 0");
  std::vector<double> bad = items;
  bad[3] = -5;
  expect_invalid([&] { simulate(dyn, 2, bad, {}); }, "item_ns[3] must be finite and >= 0");
  bad[3] = std::nan("");
  expect_invalid([&] { simulate(dyn, 2, bad, {}); }, "item_ns[3] must be finite and >= 0");
}

TEST(Simulator, RejectsTwoToTheThirtyTwoItems) {
  // Address space for 2^32 doubles, never touched: the count is checked first.
  const std::size_t n = std::size_t{1} << 32;
  void* p = mmap(nullptr, n * sizeof(double), PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "cannot reserve 32 GiB of address space here";
  const std::span<const double> items(static_cast<const double*>(p), n);
  expect_invalid([&] { simulate(Schedule::dynamic(1), 2, items, {}); },
                 "item_ns must have fewer than 2^32 items, got 4294967296");
  munmap(p, n * sizeof(double));
}

}  // namespace
