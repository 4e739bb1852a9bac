// What Python's Pool cannot do: a worker segfaults in the middle of a map, and the map still
// returns every result; a task that never ends hits a deadline, and the pool carries on.
//   ./dev.sh run pool_faults
#include <forkpool/forkpool.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>

int main() {
  forkpool::Pool pool(forkpool::Options{.processes = 2, .timeout = std::chrono::seconds(1)});

  // The first time item 500 runs, its worker crashes. The items it had in flight run again on a
  // replacement worker.
  auto crash_once = pool.shared_array<std::atomic<bool>>(1);
  crash_once[0] = true;
  const auto before = pool.pids();
  const auto squares = pool.map(
      [crash = crash_once.data()](std::int64_t x) {
        if (x == 500 && crash->exchange(false)) raise(SIGSEGV);
        return x * x;
      },
      forkpool::range(1000));
  std::int64_t wrong = 0;
  for (std::int64_t x = 0; x < 1000; ++x) wrong += squares[static_cast<std::size_t>(x)] != x * x;
  const auto after = pool.pids();
  std::printf("a worker crashed; all %zu squares came back, %lld wrong; workers %d %d -> %d %d\n",
              squares.size(), static_cast<long long>(wrong), before[0], before[1], after[0],
              after[1]);

  // An item that never finishes: the map throws Timeout, and the stuck worker is replaced.
  try {
    pool.for_each(forkpool::range(10), [](std::int64_t i) {
      volatile bool stuck = i == 3;  // volatile: an empty endless loop would be undefined
      while (stuck) {
      }
    });
  } catch (const forkpool::Timeout& e) {
    std::printf("%s\n", e.what());
  }

  // A crash on every run of item 7 is not a transient fault: after Options::retries re-runs, the
  // map says which worker died, how, and which items it was running.
  try {
    (void)pool.map(
        [](std::int64_t x) {
          if (x == 7) raise(SIGSEGV);
          return x;
        },
        forkpool::range(100));
  } catch (const forkpool::BrokenPool& e) {
    std::printf("%s\n", e.what());
  }

  const auto sum = pool.map_reduce([](std::int64_t x) { return x; }, forkpool::range(1001),
                                   std::int64_t{0}, std::plus<>{});
  std::printf("and the pool still works: sum of 0..1000 = %lld\n", static_cast<long long>(sum));
}
