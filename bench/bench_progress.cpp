// The cost of Options::on_progress on a map: the same maps with the callback off and on,
// interleaved (off, on, on, off, ...) so that both see the same machine, and the ratio of the
// median times. With the callback on, the parent wakes every 100 ms instead of every second and
// sums P commit words; the workers do nothing extra.
//
//   bench_progress [--reps=N]   (default 15; the ctest smoke run does 1)
//
// Exits non-zero if a map's result is wrong or the callback did not end at the map's total.
#include <forkpool/forkpool.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Workload {
  const char* name;
  std::int64_t items;
  std::int64_t (*f)(std::int64_t);
};

std::int64_t square(std::int64_t x) { return x * x; }

// About 25 us of arithmetic per item.
std::int64_t spin(std::int64_t x) {
  std::uint64_t h = static_cast<std::uint64_t>(x);
  for (int k = 0; k < 20000; ++k) h = h * 6364136223846793005u + 1442695040888963407u;
  return static_cast<std::int64_t>(h >> 40) + x * x;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 15;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--reps=", 7) == 0) reps = std::max(1, std::atoi(argv[i] + 7));

  std::uint64_t reported = 0;
  forkpool::Pool off;
  forkpool::Pool on(forkpool::Options{
      .on_progress = [&reported](const forkpool::Progress& p) { reported = p.done; }});
  const Workload workloads[] = {{"square, 4M items", 4'000'000, square},
                                {"spin ~25 us, 20k items", 20'000, spin}};
  bool ok = true;
  std::printf("P = %u, %d runs each, interleaved\n", off.size(), reps);
  for (const Workload& w : workloads) {
    std::vector<double> t_off, t_on;
    for (int r = 0; r < reps; ++r) {
      // Alternate which goes first, so that neither always finds the other's pages freed.
      for (forkpool::Pool* pool : r % 2 == 0 ? std::vector{&off, &on} : std::vector{&on, &off}) {
        reported = 0;
        const auto start = Clock::now();
        const auto out = pool->map(w.f, forkpool::range(w.items));
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        ok = ok && out[static_cast<std::size_t>(w.items - 1)] == w.f(w.items - 1);
        (pool == &off ? t_off : t_on).push_back(ms);
        if (pool == &on) ok = ok && reported == static_cast<std::uint64_t>(w.items);
      }
    }
    const double a = median(t_off), b = median(t_on);
    std::printf("%-24s off %8.1f ms   on %8.1f ms   on/off %.3f\n", w.name, a, b, b / a);
  }
  if (!ok) std::printf("FAILED: a wrong result, or the callback did not end at the total\n");
  return ok ? 0 : 1;
}
