// A progress bar for a long map (Options::progress: on stderr, when it is a terminal), and the
// callback form for programs that draw their own.
#include <forkpool/forkpool.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>

std::int64_t slow_square(std::int64_t x) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(500);
  while (std::chrono::steady_clock::now() < until) {
  }
  return x * x;
}

int main() {
  forkpool::Pool bar(forkpool::Options{.processes = 2, .progress = true});
  bar.map(slow_square, forkpool::range(2000));

  forkpool::Pool own(forkpool::Options{
      .processes = 2, .on_progress = [](const forkpool::Progress& p) {
        std::printf("%llu of %llu items, %.0f items/s\n", static_cast<unsigned long long>(p.done),
                    static_cast<unsigned long long>(p.total), p.items_per_second);
      }});
  own.map(slow_square, forkpool::range(1000));
}
