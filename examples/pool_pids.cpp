// The second pool.py of the tutorial: two workers, each printing its pid for the items it runs.
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <numeric>

std::int64_t square(std::int64_t x) {
  std::printf("Worker %d calculating square of %lld\n", forkpool::current_process().pid,
              static_cast<long long>(x));
  return x * x;
}

int main() {
  const unsigned nprocs = 2;
  std::printf("Number of workers equals %u\n", nprocs);

  forkpool::Pool pool(nprocs);
  // dynamic(2): hand out two items at a time, like the tutorial's picture of the work being
  // shared out; the default schedule (work stealing) would give each worker one block of five.
  const auto result = pool.map(square, forkpool::range(1, 11), forkpool::Schedule::dynamic(2));
  const std::int64_t total = std::accumulate(result.begin(), result.end(), std::int64_t{0});

  std::printf("The sum of the square of the first 10 integers is %lld\n",
              static_cast<long long>(total));
}
