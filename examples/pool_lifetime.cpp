// pool_lifetime from the tutorial: a pool lives as long as its object. close() + join() end it
// explicitly; a scope (RAII, the C++ form of Python's `with`) ends it even when an exception
// leaves the scope.
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

std::int64_t square(std::int64_t x) {
  std::printf("Worker %d calculating square of %lld\n", forkpool::current_process().pid,
              static_cast<long long>(x));
  return x * x;
}

void print(const char* label, const std::vector<std::int64_t>& v) {
  std::printf("%s: [", label);
  for (std::size_t i = 0; i < v.size(); ++i)
    std::printf(i ? ", %lld" : "%lld", static_cast<long long>(v[i]));
  std::printf("]\n");
}

int main() {
  const unsigned nprocs = 2;
  std::printf("Number of workers equals %u\n", nprocs);

  forkpool::Pool pool(nprocs);
  const std::vector<std::int64_t> result = pool.map(square, forkpool::range(1, 11));
  pool.close();  // no more work: the workers exit once idle
  pool.join();   // wait for them (the destructor would do both)
  const std::int64_t total = std::accumulate(result.begin(), result.end(), std::int64_t{0});
  std::printf("The sum of the square of the first 10 integers is %lld\n",
              static_cast<long long>(total));

  try {
    pool.map(square, forkpool::range(1, 6));
  } catch (const forkpool::PoolClosed& e) {
    std::printf("Using the pool after close(): %s\n", e.what());
  }

  {  // the `with contextlib.closing(Pool()) as pool:` block
    forkpool::Pool scoped;
    print("Scoped result", scoped.map([](std::int64_t x) { return x * x; }, forkpool::range(1, 6)));
  }  // closed and joined here
}
