// What results that are not trivially copyable cost (forkpool/result_codec.hpp): maps of 10^6
// items returning a std::string, next to the same map returning the int64 itself, the sequential
// loops, and the parent's conversion alone.
//
//   <kind>/sequential   for each i: v[i] = item(i), v a std::vector made in the loop
//   <kind>/forkpool     pool.map(item, range(10^6)) on a Pool() (cpu_count() workers) made once
//                       in main
//   <kind>/decode       the parent's part alone: 10^6 encoded results, laid out as the workers
//                       lay them out, decoded into a new std::vector<std::string> as map does
// with <kind> one of int64 (item(i) = i), to_string (std::to_string(i): 5.9 bytes on average,
// within the short-string buffer) and text100 (a 100-byte string: one heap allocation each).
//
// Counters: ns_per_item; for the maps, parallel_ms (last_stats().makespan: the workers' part of
// the first round) and parent_ms (the rest of the call: reserving, publishing, decoding, freeing).
// Every result is checked; a wrong one fails the benchmark and the exit status.
#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace {

constexpr std::int64_t kItems = 1'000'000;
using Clock = std::chrono::steady_clock;

std::unique_ptr<forkpool::Pool> g_pool;
bool g_failed = false;

void fail(benchmark::State& state, const std::string& msg) {
  g_failed = true;
  std::fprintf(stderr, "bench_results: %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

std::int64_t as_int64(std::int64_t i) { return i; }
std::string as_to_string(std::int64_t i) { return std::to_string(i); }
std::string as_text100(std::int64_t i) { return std::string(100, static_cast<char>('a' + i % 26)); }

template <class Out, class Item>
bool check(const Out& out, Item item) {
  if (out.size() != static_cast<std::size_t>(kItems)) return false;
  for (std::int64_t i = 0; i < kItems; i += 997)
    if (out[static_cast<std::size_t>(i)] != item(i)) return false;
  return out[out.size() - 1] == item(kItems - 1);
}

// Wall time per item, from the loop's own clock (Google Benchmark prints an inverted rate in
// seconds, which reads badly for nanoseconds).
class PerItem {
 public:
  void add(Clock::time_point t0) {
    ns_ += std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
  }
  void report(benchmark::State& state) const {
    state.counters["ns_per_item"] =
        ns_ / static_cast<double>(state.iterations()) / static_cast<double>(kItems);
  }

 private:
  double ns_ = 0;
};

template <class Item>
void sequential(benchmark::State& state, Item item) {
  using R = decltype(item(0));
  PerItem per_item;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    std::vector<R> out(static_cast<std::size_t>(kItems));
    for (std::int64_t i = 0; i < kItems; ++i) out[static_cast<std::size_t>(i)] = item(i);
    benchmark::DoNotOptimize(out.data());
    per_item.add(t0);
    if (!check(out, item)) fail(state, "wrong sequential result");
  }
  per_item.report(state);
}

template <class Item>
void forkpool_map(benchmark::State& state, Item item) {
  double parallel = 0, total = 0;
  PerItem per_item;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const auto out = g_pool->map(item, forkpool::range(kItems));
    per_item.add(t0);
    total += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    parallel += std::chrono::duration<double, std::milli>(g_pool->last_stats().makespan).count();
    if (!check(out, item)) fail(state, "wrong forkpool result");
  }
  const auto n = static_cast<double>(state.iterations());
  state.counters["parallel_ms"] = parallel / n;
  state.counters["parent_ms"] = (total - parallel) / n;
  per_item.report(state);
}

template <class Item>
void decode(benchmark::State& state, Item item) {
  std::vector<char> bytes;
  std::vector<std::pair<std::size_t, std::size_t>> places;
  for (std::int64_t i = 0; i < kItems; ++i) {
    const std::string s = item(i);
    places.emplace_back(bytes.size(), s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  const auto* base = reinterpret_cast<const std::byte*>(bytes.data());
  PerItem per_item;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    std::vector<std::string> out;
    out.reserve(places.size());
    for (const auto& [offset, size] : places)
      out.push_back(forkpool::ResultCodec<std::string>::decode(
          std::span<const std::byte>(base + offset, size)));
    benchmark::DoNotOptimize(out.data());
    per_item.add(t0);
    if (!check(out, item)) fail(state, "wrong decoded result");
  }
  per_item.report(state);
}

void register_kind(const char* kind, auto item) {
  const std::string name(kind);
  benchmark::RegisterBenchmark((name + "/sequential").c_str(),
                               [item](benchmark::State& s) { sequential(s, item); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark((name + "/forkpool").c_str(),
                               [item](benchmark::State& s) { forkpool_map(s, item); })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  if constexpr (std::is_same_v<decltype(item(0)), std::string>)
    benchmark::RegisterBenchmark((name + "/decode").c_str(),
                                 [item](benchmark::State& s) { decode(s, item); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  g_pool = std::make_unique<forkpool::Pool>();
  register_kind("int64", as_int64);
  register_kind("to_string", as_to_string);
  register_kind("text100", as_text100);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_pool.reset();
  return g_failed ? 1 : 0;
}
