// Tasks that spawn tasks: a parallel quicksort with forkpool::spawn, and a tree sum whose
// children return values through a TaskGroup.
#include <forkpool/forkpool.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <utility>

// Sorts a[lo, hi): the left part of each partition becomes a task, maybe run by another worker
// process; the sort of [lo, hi) is finished once all of them are (an implicit sync).
void quicksort(int* a, std::int64_t lo, std::int64_t hi) {
  while (hi - lo > 10000) {
    const int pivot = a[lo + (hi - lo) / 2];
    std::int64_t i = lo, j = hi - 1;
    while (i <= j) {
      while (a[i] < pivot) ++i;
      while (a[j] > pivot) --j;
      if (i <= j) std::swap(a[i++], a[j--]);
    }
    forkpool::spawn(quicksort, a, lo, j + 1);  // a points into a SharedArray: every worker sees it
    lo = i;
  }
  std::sort(a + lo, a + hi);
}

// The sum of 1..n as a binary tree of tasks: the left half's result comes back through the
// segment (TaskResult), the right half is computed here meanwhile.
std::int64_t sum(std::int64_t first, std::int64_t last) {
  if (last - first < 1000) {
    std::int64_t s = 0;
    for (std::int64_t i = first; i < last; ++i) s += i;
    return s;
  }
  const std::int64_t mid = first + (last - first) / 2;
  forkpool::TaskGroup g;
  auto left = g.spawn(sum, first, mid);
  const std::int64_t right = sum(mid, last);
  g.wait();  // runs other tasks while the left half is elsewhere
  return left.get() + right;
}

int main() {
  forkpool::Pool pool(2);

  auto data = pool.shared_array<int>(10'000'000);
  std::mt19937 rng(1);
  for (int& x : data) x = static_cast<int>(rng() % 1'000'000);
  int* a = data.data();
  const auto n = static_cast<std::int64_t>(data.size());
  pool.apply(quicksort, a, std::int64_t{0}, n);  // the root task; the others steal its children
  std::printf("sorted %zu ints: %s\n", data.size(),
              std::is_sorted(data.begin(), data.end()) ? "yes" : "no");

  const auto total = pool.map([](std::int64_t last) { return sum(1, last + 1); },
                              forkpool::range(999'999, 1'000'001));
  std::printf("1 + ... + 999999 = %lld, 1 + ... + 1000000 = %lld\n",
              static_cast<long long>(total[0]), static_cast<long long>(total[1]));
}
