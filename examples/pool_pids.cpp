// The second pool.py of the tutorial: two workers, each printing its pid for the items it runs.
#include <forkpool/forkpool.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <thread>

std::int64_t square(std::int64_t x) {
  std::printf("Worker %d calculating square of %lld\n", forkpool::current_process().pid,
              static_cast<long long>(x));
  // A millisecond of "work" per item. Without it, ten squares take less time than waking the
  // second worker, and the first worker to wake would run (or steal) all ten.
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return x * x;
}

int main() {
  const unsigned nprocs = 2;
  std::printf("Number of workers equals %u\n", nprocs);

  forkpool::Pool pool(nprocs);
  // The default schedule gives each worker a block of five to start from; a worker that finishes
  // first steals from the other. Try forkpool::Schedule::dynamic(1) as a third argument.
  const auto result = pool.map(square, forkpool::range(1, 11));
  const std::int64_t total = std::accumulate(result.begin(), result.end(), std::int64_t{0});

  std::printf("The sum of the square of the first 10 integers is %lld\n",
              static_cast<long long>(total));
}
