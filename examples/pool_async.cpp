// Python's apply_async / map_async example, in C++: a task runs in one worker and its Future gives
// the result (or the task's exception) when asked; map_async is a whole map in the background;
// starmap zips several inputs.
#include <forkpool/forkpool.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

std::int64_t square(std::int64_t x) { return x * x; }

int main() {
  using namespace std::chrono_literals;
  forkpool::Pool pool(4);

  forkpool::Future<std::int64_t> res = pool.apply_async(square, 20);  // runs in one worker
  std::printf("apply_async(square, 20).get(1s) = %lld\n", static_cast<long long>(res.get(1s)));
  std::printf("apply(square, 7) = %lld\n", static_cast<long long>(pool.apply(square, 7)));

  // Several at once run on several workers.
  std::vector<forkpool::Future<pid_t>> pids;
  for (int i = 0; i < 8; ++i)
    pids.push_back(pool.submit([] {
      std::this_thread::sleep_for(20ms);
      return forkpool::current_process().pid;
    }));
  std::set<pid_t> distinct;
  for (auto& p : pids) distinct.insert(p.get());
  std::printf("8 submits ran in %s worker processes, none of them this one: %s\n",
              distinct.size() > 1 ? "several" : "one", distinct.count(getpid()) ? "no" : "yes");

  // get(timeout) gives up waiting; the task goes on.
  forkpool::Future<void> slow = pool.submit([] { std::this_thread::sleep_for(300ms); });
  try {
    slow.get(10ms);
  } catch (const forkpool::FutureTimeout&) {
    std::printf("We lacked patience and got a forkpool::FutureTimeout\n");
  }
  slow.wait();
  std::printf("ready after wait(): %s\n", slow.ready() ? "yes" : "no");

  // A task's exception comes back through its own future only.
  auto bad = pool.submit(
      [](std::int64_t x) -> std::int64_t {
        if (x < 0) throw std::domain_error("negative input");
        return x;
      },
      std::int64_t{-1});
  auto good = pool.submit(square, 3);
  try {
    bad.get();
  } catch (const forkpool::TaskError& e) {
    std::printf("%s\n", e.what());
  }
  std::printf("the other task still gives %lld\n", static_cast<long long>(good.get()));

  // A whole map in the background.
  auto squares = pool.map_async(square, forkpool::range(1, 5001));
  const auto result = squares.get();
  std::printf("map_async: the sum of the squares of 1..5000 is %lld\n",
              static_cast<long long>(std::accumulate(result.begin(), result.end(), 0LL)));

  const std::vector<std::int64_t> a{1, 2, 3}, b{10, 20, 30};
  const auto sums = pool.starmap([](std::int64_t x, std::int64_t y) { return x + y; }, a, b);
  std::printf("starmap(add, [1, 2, 3], [10, 20, 30]) = [%lld, %lld, %lld]\n",
              static_cast<long long>(sums[0]), static_cast<long long>(sums[1]),
              static_cast<long long>(sums[2]));
}
