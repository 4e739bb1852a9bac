// Streaming results, as Python's Pool.imap and Pool.imap_unordered:
//
//   with Pool(processes=4) as pool:
//       for i in pool.imap(f, range(10)): print(i)
//       for i in pool.imap_unordered(f, range(10)): print(i)
//
// Each result is read as soon as it is ready, while the workers compute the next ones; the input
// is read lazily, so it may even be endless.
#include <forkpool/forkpool.hpp>

#include <cstddef>
#include <cstdint>
#include <iostream>
#include <iterator>

namespace {

std::int64_t f(std::int64_t x) { return x * x; }

// The numbers 1, 2, 3, ... without end, as std::views::iota(1) (which clang 14 cannot compile
// with libstdc++ 12).
struct Naturals {
  struct iterator {
    using value_type = std::int64_t;
    using difference_type = std::ptrdiff_t;
    std::int64_t n = 1;
    std::int64_t operator*() const { return n; }
    iterator& operator++() {
      ++n;
      return *this;
    }
    iterator operator++(int) { return {n++}; }
    bool operator==(const iterator&) const = default;
  };
  iterator begin() const { return {}; }
  std::unreachable_sentinel_t end() const { return {}; }
};

// Steps of the Collatz sequence from n down to 1.
std::int64_t collatz_steps(std::int64_t n) {
  std::int64_t steps = 0;
  for (; n != 1; ++steps) n = n % 2 == 0 ? n / 2 : 3 * n + 1;
  return steps;
}

}  // namespace

int main() {
  forkpool::Pool pool(4);

  // In input order: prints "0 1 4 9 16 25 36 49 64 81".
  for (std::int64_t y : pool.imap(f, forkpool::range(10))) std::cout << y << ' ';
  std::cout << '\n';

  // In the order they finish, each with the index of its item (the order varies from run to run).
  for (auto [x, y] : pool.imap_unordered(f, forkpool::range(10)))
    std::cout << "f(" << x << ") = " << y << '\n';

  // An endless input, read only as far as the workers get ahead of this loop: the first number
  // whose Collatz sequence takes over 400 steps. Leaving the loop stops the workers.
  std::int64_t n = 1;
  for (std::int64_t steps :
       pool.imap(collatz_steps, Naturals{}, forkpool::ImapOptions{.chunksize = 64})) {
    if (steps > 400) {
      std::cout << n << " takes " << steps << " steps to reach 1\n";
      break;
    }
    ++n;
  }
}
