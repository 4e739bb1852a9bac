#include "workloads.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace workloads {

FORKPOOL_WORKLOAD_NOINLINE std::uint64_t spin(std::uint64_t seed, std::uint64_t iters) {
  std::uint64_t x = (seed + 1) * 0x9E3779B97F4A7C15u;
  for (std::uint64_t k = 0; k < iters; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

std::vector<std::uint64_t> make_heavytail_costs(std::uint64_t n, std::uint64_t k) {
  std::uint64_t s = 0x5EED5EED5EED5EEDu;
  const auto splitmix64 = [&s] {
    s += 0x9E3779B97F4A7C15u;
    std::uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
  };
  std::vector<double> w(n);
  double total = 0.0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t r = splitmix64();
    const double u = static_cast<double>((r >> 11) + 1) * 0x1.0p-53;
    const double p = std::pow(u, -1.0 / 1.5);
    w[i] = std::min(p, 3000.0);
    total += w[i];
  }
  std::vector<std::uint64_t> c(n);
  const double dk = static_cast<double>(k), dn = static_cast<double>(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    const double scaled = w[i] * dk * dn / total;
    c[i] = std::min(1000 * k, static_cast<std::uint64_t>(std::floor(scaled + 0.5)));
  }
  return c;
}

const std::vector<std::uint64_t>& heavytail_costs() {
  static const std::vector<std::uint64_t> costs = [] {
    std::vector<std::uint64_t> c = make_heavytail_costs();
    check_heavytail_costs(c);
    return c;
  }();
  return costs;
}

std::uint64_t fnv1a(const std::vector<std::uint64_t>& values) {
  std::uint64_t h = 14695981039346656037u;
  for (const std::uint64_t v : values) h = (h ^ v) * 1099511628211u;
  return h;
}

void check_heavytail_costs(const std::vector<std::uint64_t>& costs) {
  std::uint64_t sum = 0, max = 0;
  for (const std::uint64_t c : costs) {
    sum += c;
    max = std::max(max, c);
  }
  const std::uint64_t hash = fnv1a(costs);
  if (costs.size() == N && sum == kHeavytailSum && max == kHeavytailMax && hash == kHeavytailFnv)
    return;
  std::fprintf(stderr,
               "workloads: the heavy-tail cost sequence is wrong: n = %zu (expected %llu), "
               "sum = %llu (expected %llu), max = %llu (expected %llu), FNV-1a = %llu (expected "
               "%llu)\n",
               costs.size(), static_cast<unsigned long long>(N),
               static_cast<unsigned long long>(sum), static_cast<unsigned long long>(kHeavytailSum),
               static_cast<unsigned long long>(max), static_cast<unsigned long long>(kHeavytailMax),
               static_cast<unsigned long long>(hash),
               static_cast<unsigned long long>(kHeavytailFnv));
  std::abort();
}

std::uint64_t uniform_sequential() {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < N; ++i) sum += uniform_item(static_cast<std::int64_t>(i));
  return sum;
}

std::uint64_t triangular_sequential() {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < N; ++i) sum += triangular_item(static_cast<std::int64_t>(i));
  return sum;
}

std::uint64_t heavytail_sequential() {
  const std::uint64_t* costs = heavytail_costs().data();
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < N; ++i) sum += heavytail_item(costs, static_cast<std::int64_t>(i));
  return sum;
}

std::uint64_t mandelbrot_row(std::int64_t row) {
  const double y = -1.25 + 2.5 * (static_cast<double>(row) + 0.5) / kMandelbrotSize;
  std::uint64_t total = 0;
  for (std::int64_t col = 0; col < kMandelbrotSize; ++col) {
    const double x = -2.0 + 2.5 * (static_cast<double>(col) + 0.5) / kMandelbrotSize;
    double zr = 0, zi = 0;
    std::uint32_t k = 0;
    while (k < kMandelbrotMaxIterations && zr * zr + zi * zi <= 4.0) {
      const double t = zr * zr - zi * zi + x;
      zi = 2 * zr * zi + y;
      zr = t;
      ++k;
    }
    total += k;
  }
  return total;
}

std::uint64_t bimodal_sequential() {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < N; ++i) sum += bimodal_item(static_cast<std::int64_t>(i));
  return sum;
}

std::uint64_t mandelbrot_sequential() {
  std::uint64_t sum = 0;
  for (std::int64_t row = 0; row < kMandelbrotSize; ++row) sum += mandelbrot_row(row);
  return sum;
}

}  // namespace workloads
