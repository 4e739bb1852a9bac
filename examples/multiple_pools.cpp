// broken_pool.py from the tutorial, in C++. Python's workers miss a *function* defined after the
// fork; C++ workers run the same binary, so every function exists in them. What they miss is
// *data*: a worker sees the parent's memory as it was when the Pool was built.
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

// The exponent each map raises its items to. The parent changes it after building the pool.
int power = 2;

std::int64_t raise(std::int64_t x) {
  std::int64_t r = 1;
  for (int i = 0; i < power; ++i) r *= x;
  return r;
}

void print(const char* label, const std::vector<std::int64_t>& v) {
  std::printf("%s: [", label);
  for (std::size_t i = 0; i < v.size(); ++i)
    std::printf(i ? ", %lld" : "%lld", static_cast<long long>(v[i]));
  std::printf("]\n");
}

int main() {
  const auto a = forkpool::range(1, 6);

  {
    forkpool::Pool pool;
    print("Square result", pool.map(raise, a));
    power = 3;  // too late: the workers were forked while power was 2
    print("Cube result (the pitfall: still squares)", pool.map(raise, a));
  }

  // Fix 1, as in the tutorial: a new pool, forked after the change.
  {
    forkpool::Pool pool;
    print("Cube result (fix 1: a new pool)", pool.map(raise, a));
  }

  // Fix 2: keep what changes in the shared segment. The parent's writes after the fork are seen.
  {
    forkpool::Pool pool;
    auto exponent = pool.shared_array<int>(1);
    int* e = exponent.data();
    const auto pow_shared = [e](std::int64_t x) {
      std::int64_t r = 1;
      for (int i = 0; i < *e; ++i) r *= x;
      return r;
    };
    exponent[0] = 2;
    print("Square result (fix 2: shared memory)", pool.map(pow_shared, a));
    exponent[0] = 3;
    print("Cube result (fix 2: shared memory)", pool.map(pow_shared, a));
  }
}
