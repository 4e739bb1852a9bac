// Which chunking strategy suits a loop whose items cost more and more (the triangular load)? Run
// it under a few strategies and read what each map did from Pool::last_stats().
//   ./dev.sh run pool_strategies
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <functional>

namespace {

// Item i runs 3i xorshift rounds (about 4i ns): the last items cost the most.
std::uint64_t rising_cost(std::int64_t i) {
  std::uint64_t x = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15u + 1;
  for (std::int64_t k = 0; k < i * 3; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

}  // namespace

int main() {
  using forkpool::Schedule;
  forkpool::Pool pool(forkpool::Options{.processes = 2});
  for (const Schedule s :
       {Schedule::static_blocks(), Schedule::dynamic(16), Schedule::guided(), Schedule::factoring(),
        Schedule::work_stealing(), Schedule::automatic()}) {
    const std::uint64_t sum =
        pool.map_reduce(rising_cost, forkpool::range(10000), std::uint64_t{0}, std::plus<>(), s);
    const forkpool::MapStats& stats = pool.last_stats();
    std::printf("%-20s makespan %7.2f ms  imbalance %.3f  chunks %5llu  steals %3llu  (sum %llx)\n",
                s.name().c_str(), static_cast<double>(stats.makespan.count()) / 1e6,
                stats.imbalance, static_cast<unsigned long long>(stats.total_chunks()),
                static_cast<unsigned long long>(stats.total_steals()),
                static_cast<unsigned long long>(sum));
  }
  std::printf("\nThe last map, worker by worker:\n%s", pool.last_stats().table().c_str());
}
