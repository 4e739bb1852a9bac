// pool.py from the tutorial: the sum of the squares of 1..5000, mapped over a pool of workers.
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <numeric>

std::int64_t square(std::int64_t x) { return x * x; }

int main() {
  std::printf("Number of cores available equals %u\n", forkpool::cpu_count());

  forkpool::Pool pool;  // cpu_count() worker processes
  const auto result = pool.map(square, forkpool::range(1, 5001));
  const std::int64_t total = std::accumulate(result.begin(), result.end(), std::int64_t{0});

  std::printf("The sum of the square of the first 5000 integers is %lld\n",
              static_cast<long long>(total));
}
