// Soak (issue 4): back-to-back small maps on one Pool(2) with random faults, and what the parent's
// resources do over them. 10^5 maps by default (--soak_maps=N changes it; the ctest smoke run does
// 2000), each of 1 to 1000 items, map or map_reduce, with a random schedule, every result checked.
// About 1% of the maps have a worker die inside f (SIGKILL, SIGSEGV, abort() or _exit(3)): on the
// first run of one item (the item is run again on a replacement worker: the map must return the
// exact result) or, for one in six of them, on every run (the map must throw BrokenPool). About
// 0.03% of the maps loop forever at one item and must throw Timeout (Options::timeout = 200 ms).
//
// One benchmark iteration is one map. Counters:
//   maps, faults (maps with one), recovered (faulted maps with the exact result), errors (the
//   documented BrokenPool or Timeout; timeouts counts the latter), wrong (must be 0), unexpected
//   (any other outcome; must be 0); rss_kb, fds and procs (the parent's resident set, open
//   descriptors and child processes, zombies included) at the start and at the end (and rss_kb_half
//   half-way), and workers_rss_kb (the workers' resident sets, summed) at the start and the end.
// A wrong result, an unexpected outcome, more fds or processes at the end than at the start, or
// a resident set that grows from half-way to the end (by more than max(1 MiB, 25%)) fails the
// benchmark (SkipWithError) and the exit status.
//
// --soak_seed=S replays a run's sequence of maps and faults (the default is fixed).
#include "flags.hpp"

#include <forkpool/forkpool.hpp>

#include <benchmark/benchmark.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::uint64_t g_maps = 100000;
std::uint64_t g_seed = 0x50a4;
bool g_failed = false;

constexpr unsigned kProcesses = 2;
constexpr auto kTimeout = std::chrono::milliseconds(200);

void fail(benchmark::State& state, const std::string& msg) {
  g_failed = true;
  std::fprintf(stderr, "bench_soak: %s\n", msg.c_str());
  state.SkipWithError(msg.c_str());
}

// ---- What the parent holds, from /proc

long status_kb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const std::size_t len = std::strlen(field);
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, len, field) == 0 && line.size() > len && line[len] == ':')
      return std::strtol(line.c_str() + len + 1, nullptr, 10);
  return 0;
}

long open_fds() {
  long n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
  }
  return n;
}

// Processes whose parent is this one, zombies included.
long child_processes() {
  long n = 0;
  const pid_t self = getpid();
  DIR* d = opendir("/proc");
  if (d == nullptr) return 0;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == self) ++n;
  }
  closedir(d);
  return n;
}

struct Snapshot {
  long rss_kb, workers_rss_kb, fds, procs;
  static Snapshot now(const forkpool::Pool& pool) {
    long workers = 0;
    for (pid_t pid : pool.pids()) workers += status_kb(pid, "VmRSS");
    return {status_kb(getpid(), "VmRSS"), workers, open_fds(), child_processes()};
  }
};

// ---- The maps and their faults

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

enum class Fault : int { none, sigkill, sigsegv, abort, exit3, endless_loop };

// Shared with the workers: where the fault fires, and on how many more runs of that item.
struct Plan {
  std::atomic<std::int64_t> item{0};
  std::atomic<int> fault{0};
  std::atomic<int> remaining{0};
};

[[gnu::noinline]] void fire(Plan& plan) {
  switch (static_cast<Fault>(plan.fault.load(std::memory_order_relaxed))) {
    case Fault::sigkill:
      raise(SIGKILL);
      break;
    case Fault::sigsegv:
#if defined(__SANITIZE_ADDRESS__)
      signal(SIGSEGV, SIG_DFL);  // die of the signal, not of ASan's report
#endif
      raise(SIGSEGV);
      break;
    case Fault::abort:
      std::abort();
    case Fault::exit3:
      _exit(3);
    case Fault::endless_loop:
      while (plan.fault.load(std::memory_order_relaxed) != -1) {
      }
      break;
    default:
      break;
  }
}

constexpr std::uint64_t value(std::int64_t i) {
  const std::uint64_t x = static_cast<std::uint64_t>(i) * 0x9e3779b97f4a7c15;
  return x ^ (x >> 29);
}

struct F {
  Plan* plan;
  std::uint64_t operator()(std::int64_t i) const {
    if (i == plan->item.load(std::memory_order_relaxed) &&
        plan->remaining.load(std::memory_order_relaxed) > 0 &&
        plan->remaining.fetch_sub(1, std::memory_order_relaxed) > 0)
      fire(*plan);
    return value(i);
  }
};

forkpool::Schedule schedule_of(std::uint64_t r) {
  switch (r % 4) {
    case 0:
      return forkpool::Schedule::static_blocks();
    case 1:
      return forkpool::Schedule::dynamic(1 + (r >> 2) % 16);
    case 2:
      return forkpool::Schedule::guided();
    default:
      return forkpool::Schedule::work_stealing();
  }
}

enum class Outcome { exact, wrong, broken_pool, timeout, other };

// One map: returns what came of it; `what` says why when it is not what was due.
Outcome one_map(forkpool::Pool& pool, Plan* plan, std::uint64_t r, std::int64_t first,
                std::int64_t n, std::string& what) {
  const forkpool::Schedule s = schedule_of(r >> 20);
  try {
    if ((r >> 40) & 1) {
      const auto out = pool.map(F{plan}, forkpool::range(first, first + n), s);
      for (std::int64_t k = 0; k < n; ++k)
        if (out[static_cast<std::size_t>(k)] != value(first + k)) {
          what = "map result " + std::to_string(k) + " of [" + std::to_string(first) + ", " +
                 std::to_string(first + n) + ") with " + s.name() + " is wrong";
          return Outcome::wrong;
        }
    } else {
      std::uint64_t expected = 0;
      for (std::int64_t k = 0; k < n; ++k) expected += value(first + k);
      const std::uint64_t got = pool.map_reduce(F{plan}, forkpool::range(first, first + n),
                                                std::uint64_t{0}, std::plus<std::uint64_t>{}, s);
      if (got != expected) {
        what = "map_reduce of [" + std::to_string(first) + ", " + std::to_string(first + n) +
               ") with " + s.name() + " gave " + std::to_string(got) + ", expected " +
               std::to_string(expected);
        return Outcome::wrong;
      }
    }
    return Outcome::exact;
  } catch (const forkpool::BrokenPool& e) {
    what = e.what();
    return Outcome::broken_pool;
  } catch (const forkpool::Timeout& e) {
    what = e.what();
    return Outcome::timeout;
  } catch (const std::exception& e) {
    what = e.what();
    return Outcome::other;
  }
}

void BM_soak(benchmark::State& state) {
  forkpool::Pool pool(forkpool::Options{.processes = kProcesses,
                                        .segment_bytes = std::size_t{64} << 20,
                                        .retries = 1,
                                        .timeout = kTimeout});
  auto plans = pool.shared_array<Plan>(1);
  Plan* plan = plans.data();
  // Warm up (allocator caches, the segment's first pages), then measure the start.
  for (int k = 0; k < 200; ++k) benchmark::DoNotOptimize(pool.map(F{plan}, forkpool::range(100)));
  const Snapshot start = Snapshot::now(pool);

  std::uint64_t maps = 0, faults = 0, recovered = 0, errors = 0, timeouts = 0, wrong = 0,
                unexpected = 0;
  std::uint64_t counter = g_seed;
  Snapshot half = start;
  for (auto _ : state) {
    if (maps == g_maps / 2) half = Snapshot::now(pool);
    const std::uint64_t r = splitmix(counter++);
    const std::int64_t n = 1 + static_cast<std::int64_t>(r % 1000);
    const std::int64_t first = static_cast<std::int64_t>((r >> 10) % 2001) - 1000;
    // 1% of the maps fault (one in six of those on every run), 0.03% loop forever.
    const std::uint64_t roll = (r >> 32) % 10000;
    const std::uint64_t r2 = splitmix(r);
    Fault fault = Fault::none;
    int times = 0;
    if (roll < 100) {
      fault = static_cast<Fault>(1 + r2 % 4);
      times = (r2 >> 8) % 6 == 0 ? std::numeric_limits<int>::max() : 1;
    } else if (roll < 103) {
      fault = Fault::endless_loop;
      times = 1;
    }
    plan->item.store(first + static_cast<std::int64_t>((r2 >> 16) % static_cast<std::uint64_t>(n)));
    plan->fault.store(static_cast<int>(fault));
    plan->remaining.store(times);

    std::string what;
    const Outcome o = one_map(pool, plan, r, first, n, what);
    ++maps;
    faults += fault != Fault::none ? 1 : 0;
    const bool due_error = fault == Fault::endless_loop || times > 1;
    switch (o) {
      case Outcome::exact:
        if (due_error) {
          ++unexpected;
          fail(state, "map " + std::to_string(maps) + ": the exact result, where an error was due");
        }
        recovered += fault != Fault::none ? 1 : 0;
        break;
      case Outcome::broken_pool:
      case Outcome::timeout:
        if (!due_error || (o == Outcome::timeout) != (fault == Fault::endless_loop)) {
          ++unexpected;
          fail(state, "map " + std::to_string(maps) + ": unexpected error: " + what);
        }
        ++errors;
        timeouts += o == Outcome::timeout ? 1 : 0;
        break;
      case Outcome::wrong:
        ++wrong;
        fail(state, "map " + std::to_string(maps) + ": " + what);
        break;
      case Outcome::other:
        ++unexpected;
        fail(state, "map " + std::to_string(maps) + ": unexpected exception: " + what);
        break;
    }
    if (wrong + unexpected > 0) break;
  }

  const Snapshot end = Snapshot::now(pool);
  const auto count = [](double v) { return benchmark::Counter(v); };
  state.counters["maps"] = count(static_cast<double>(maps));
  state.counters["faults"] = count(static_cast<double>(faults));
  state.counters["recovered"] = count(static_cast<double>(recovered));
  state.counters["errors"] = count(static_cast<double>(errors));
  state.counters["timeouts"] = count(static_cast<double>(timeouts));
  state.counters["wrong"] = count(static_cast<double>(wrong));
  state.counters["unexpected"] = count(static_cast<double>(unexpected));
  state.counters["rss_kb_start"] = count(static_cast<double>(start.rss_kb));
  state.counters["rss_kb_half"] = count(static_cast<double>(half.rss_kb));
  state.counters["rss_kb_end"] = count(static_cast<double>(end.rss_kb));
  state.counters["workers_rss_kb_start"] = count(static_cast<double>(start.workers_rss_kb));
  state.counters["workers_rss_kb_end"] = count(static_cast<double>(end.workers_rss_kb));
  state.counters["fds_start"] = count(static_cast<double>(start.fds));
  state.counters["fds_end"] = count(static_cast<double>(end.fds));
  state.counters["procs_start"] = count(static_cast<double>(start.procs));
  state.counters["procs_end"] = count(static_cast<double>(end.procs));
  std::fprintf(stderr,
               "bench_soak: %llu maps, %llu faults, %llu recovered, %llu errors (%llu Timeout), "
               "%llu wrong, "
               "%llu unexpected; RSS %ld -> %ld (half-way) -> %ld kB (workers %ld -> %ld kB), "
               "fds %ld -> %ld, processes %ld -> %ld\n",
               static_cast<unsigned long long>(maps), static_cast<unsigned long long>(faults),
               static_cast<unsigned long long>(recovered), static_cast<unsigned long long>(errors),
               static_cast<unsigned long long>(timeouts), static_cast<unsigned long long>(wrong),
               static_cast<unsigned long long>(unexpected), start.rss_kb, half.rss_kb, end.rss_kb,
               start.workers_rss_kb, end.workers_rss_kb, start.fds, end.fds, start.procs,
               end.procs);
  if (end.fds > start.fds || end.procs > start.procs)
    fail(state, "resources grew over the soak: fds " + std::to_string(start.fds) + " -> " +
                    std::to_string(end.fds) + ", processes " + std::to_string(start.procs) +
                    " -> " + std::to_string(end.procs));
  // The parent's resident set settles within the first maps (allocator caches, the segment's
  // pages); from half-way to the end it must stay flat: 1 MiB or a quarter of it at most.
  if (end.rss_kb - half.rss_kb > std::max(1024L, half.rss_kb / 4))
    fail(state, "the parent's resident set grew from " + std::to_string(half.rss_kb) +
                    " kB half-way to " + std::to_string(end.rss_kb) + " kB at the end");
  if (end.procs < start.procs)
    fail(state, "workers missing at the end: processes " + std::to_string(start.procs) + " -> " +
                    std::to_string(end.procs));
}

}  // namespace

int main(int argc, char** argv) {
  constexpr std::uint64_t kAny = std::numeric_limits<std::uint64_t>::max();
  if (!forkpool_bench::take_uint_flags(
          argc, argv, {{"--soak_maps=", &g_maps, 1, kAny}, {"--soak_seed=", &g_seed, 0, kAny}},
          "bench_soak"))
    return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // The workers that abort or crash on purpose leave no core files.
  rlimit core{};
  if (getrlimit(RLIMIT_CORE, &core) == 0) {
    core.rlim_cur = 0;
    setrlimit(RLIMIT_CORE, &core);
  }
  benchmark::RegisterBenchmark("soak/faulty_small_maps", BM_soak)
      ->Iterations(static_cast<benchmark::IterationCount>(g_maps))
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::AddCustomContext("P", std::to_string(kProcesses));
  benchmark::AddCustomContext("soak_maps", std::to_string(g_maps));
  benchmark::AddCustomContext("soak_seed", std::to_string(g_seed));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return g_failed ? 1 : 0;
}
