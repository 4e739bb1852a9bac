// The standard workloads of /work/shared/WORKLOADS.md, implemented once. Every benchmark of
// forkpool and every comparator (sequential loop, OpenMP, ...) uses these definitions, so that the
// figures can be compared side by side.
//
// spin() is defined out of line in workloads.cpp, compiled once into the static library
// forkpool_workloads and marked noipa (GCC) / noinline (clang): every system calls the very same
// machine code, and nothing can be inlined, vectorised across items or elided.
#pragma once

#include <cstdint>
#include <vector>

#if defined(__clang__)
#define FORKPOOL_WORKLOAD_NOINLINE __attribute__((noinline))
#elif defined(__GNUC__)
#define FORKPOOL_WORKLOAD_NOINLINE __attribute__((noipa))
#else
#define FORKPOOL_WORKLOAD_NOINLINE
#endif

namespace workloads {

// ---- Cost function

// x = (seed + 1) * 0x9E3779B97F4A7C15 (wrap-around), then `iters` rounds of xorshift64; returns x.
// About 1.46 ns per iteration on the reference machine.
FORKPOOL_WORKLOAD_NOINLINE std::uint64_t spin(std::uint64_t seed, std::uint64_t iters);

// ---- Sizes

inline constexpr std::uint64_t K = 1366;    // spin iterations per item, about 2 microseconds
inline constexpr std::uint64_t N = 100000;  // items of the spin workloads

// ---- Seed workloads and their expected results

inline constexpr std::int64_t kSeedSmallLast = 5000;     // sum over x = 1..5000 of x*x (int64)
inline constexpr std::int64_t kSeedSmall = 41679167500;  //
inline constexpr std::int64_t kSeed1e6Last = 1000000;    // sum over x = 1..1e6 of x*x (int64)
inline constexpr std::int64_t kSeed1e6 = 333333833333500000;
inline constexpr std::int64_t kSeed1e8Count = 100000000;  // out[x] = x*x (uint64), x = 0..1e8-1
inline constexpr std::uint64_t kSeed1e8MapSum = 662921401752298880u;  // sum(out), uint64 wrap
inline constexpr std::int64_t kTinyLast = 16;                         // sum over x = 1..16 of x*x
inline constexpr std::int64_t kTiny = 1496;

inline constexpr std::int64_t square(std::int64_t x) { return x * x; }
inline constexpr std::uint64_t square_u64(std::int64_t x) {
  return static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x);
}

// ---- Spin workloads: item i of each (results are summed with uint64 wrap-around)

// Triangular cost: floor(2*K*i/N) iterations, the same total work as uniform, linearly rising.
inline constexpr std::uint64_t triangular_cost(std::uint64_t i) { return 2 * K * i / N; }

inline std::uint64_t uniform_item(std::int64_t i) { return spin(static_cast<std::uint64_t>(i), K); }
inline std::uint64_t triangular_item(std::int64_t i) {
  return spin(static_cast<std::uint64_t>(i), triangular_cost(static_cast<std::uint64_t>(i)));
}
// `costs` is heavytail_costs().data().
inline std::uint64_t heavytail_item(const std::uint64_t* costs, std::int64_t i) {
  return spin(static_cast<std::uint64_t>(i), costs[i]);
}

// ---- Heavy-tail cost sequence

// The Pareto (alpha 1.5) cost sequence c_0..c_{n-1} for K = k, bit-exact as WORKLOADS.md says.
std::vector<std::uint64_t> make_heavytail_costs(std::uint64_t n = N, std::uint64_t k = K);

// The sequence for N and K, computed (and checked with check_heavytail_costs) on first use.
// Call it before forking a pool whose workers read it: they see the parent's memory as it was at
// the fork.
const std::vector<std::uint64_t>& heavytail_costs();

inline constexpr std::uint64_t kHeavytailSum = 136600009;
inline constexpr std::uint64_t kHeavytailMax = 558220;
inline constexpr std::uint64_t kHeavytailFnv = 2623395150575651308u;

// FNV-1a over the 64-bit values: h = 14695981039346656037; h = (h ^ c_i) * 1099511628211.
std::uint64_t fnv1a(const std::vector<std::uint64_t>& values);

// Aborts with a message on stderr unless `costs` has the sum, maximum and FNV-1a hash above.
void check_heavytail_costs(const std::vector<std::uint64_t>& costs);

// ---- The two irregular workloads of issue 3 (defined here; see the README's Performance section)

// bimodal: N items; item i is heavy (1%) when splitmix64's mix of i + kBimodalSeed is 0 mod 100.
// A light item spins kBimodalLight iterations, a heavy one 100 times as many: the total work is
// within 0.1% of uniform's (0.99 * 686 + 0.01 * 68600 = 1365.1 iterations per item on average).
inline constexpr std::uint64_t kBimodalSeed = 0xB1B0DA1B1B0DA1ull;
inline constexpr std::uint64_t kBimodalLight = 686;
inline constexpr std::uint64_t kBimodalHeavy = 100 * kBimodalLight;
inline constexpr std::uint64_t mix64(std::uint64_t z) {  // splitmix64's output function
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline constexpr bool bimodal_heavy(std::uint64_t i) { return mix64(i + kBimodalSeed) % 100 == 0; }
inline constexpr std::uint64_t bimodal_cost(std::uint64_t i) {
  return bimodal_heavy(i) ? kBimodalHeavy : kBimodalLight;
}
inline std::uint64_t bimodal_item(std::int64_t i) {
  return spin(static_cast<std::uint64_t>(i), bimodal_cost(static_cast<std::uint64_t>(i)));
}

// mandelbrot: one item per row of a kMandelbrotSize x kMandelbrotSize image of the region
// [-2, 0.5] x [-1.25, 1.25], at most kMandelbrotMaxIterations iterations per pixel; an item's
// result is the sum of its pixels' iteration counts. Rows through the set cost up to 80 times
// rows outside it.
inline constexpr std::int64_t kMandelbrotSize = 1024;
inline constexpr std::uint32_t kMandelbrotMaxIterations = 256;
FORKPOOL_WORKLOAD_NOINLINE std::uint64_t mandelbrot_row(std::int64_t row);

// ---- Sequential references

std::uint64_t uniform_sequential();
std::uint64_t triangular_sequential();
std::uint64_t heavytail_sequential();
std::uint64_t bimodal_sequential();
std::uint64_t mandelbrot_sequential();

}  // namespace workloads
