// forkpool_simulate: the scheduling simulator (forkpool/simulator.hpp) against this machine.
//
//   --calibrate  Measures, and prints, the runtime costs the simulator needs (SimulatorCosts).
//   --validate   For P = 1 and 2 (2 only with 2 CPUs or more; --workers=LIST, up to
//                cpu_count()), every schedule of the portfolio and the workloads uniform,
//                triangular, heavytail, bimodal and mandelbrot (--workload=NAME: that one, seed_1e6
//                too): runs the map on a Pool(P) (map_reduce, every sum checked), predicts it with
//                simulate() and the calibrated costs, and prints both. Exit status 1 if a
//                prediction is off by more than 10%, or a map could not be measured cleanly
//                (below); 2 on a wrong sum or another error. --quick: one map each, uniform and
//                mandelbrot only, and only errors fail.
//   --predict --workers=8,64,256 [--workload=NAME | --costs=FILE]
//                Predicts every schedule for each P: makespan / ideal (ideal = the items' time
//                over P) and imbalance; names the fastest schedule per workload and P.
//                --costs=FILE reads the items' costs, one per line in nanoseconds.
//                --start-ns=NS, --stagger-ns=NS replace the calibrated start costs, which this
//                machine cannot measure for many workers (below); 0 and 0 compare the schedules
//                alone.
//
// Measured makespans are Pool::last_stats().makespan, the median of 5 clean maps: maps in which
// no worker waited for a CPU (/proc/PID/schedstat) for more than 1% of the makespan plus 50 us.
// This machine is shared; a map that another process slowed down says nothing about the schedule,
// and the table says how many maps were run to find the clean ones. Schedules take turns, map by
// map, up to 20 maps each.
//
// The items' costs. Each item is timed alone on sequential passes (the per-item median of several
// passes, less what the clock reads of an empty interval), which gives the items' relative
// costs; then every cost is scaled by one factor so that they sum to an untimed sequential run of
// the same items (here the timed items sum to 1-10% less: the clock reads perturb what they time).
// This serves every workload, mandelbrot's rows included, which a model of spin iterations x ns
// per iteration would not; items faster than a clock read (seed_1e6) are taken as equal. The speed
// of this virtual machine drifts by a few percent over minutes, so validation times the untimed
// sequential run again between the rounds of maps it predicts, and scales the costs to that.
//
// The runtime's costs (--calibrate):
//   dispatch_ns  Pool(1): the makespan of dynamic(1) over 10^6 trivial items less that of
//                static_blocks over the same items, per chunk.
//   timing_ns    two steady_clock reads.
//   remote_ns    Pool(2), its workers pinned to two CPUs: they hand a token back and forth
//                through one word with a compare-and-swap; the median round trip over 2, i.e.
//                one hand-over.
//   start_ns     Pool(P), P = 1, 2: the makespan of a map of P trivial items, less the stagger,
//                with the workers asleep (a millisecond after the last map).
//   stagger_ns   the same maps, traced: the spread of the workers' first chunks over P - 1.
// Predictions for P above 2 use P = 2's start_ns and stagger_ns: worker w starts w x stagger_ns
// after the first. That is likely pessimistic for a machine with many cores: on this virtual
// machine a sleeping worker takes tens of microseconds to wake, and 2 workers cannot tell how much
// of that a third would add.
#include "workloads.hpp"

#include <forkpool/forkpool.hpp>
#include <forkpool/simulator.hpp>

#include <sched.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using forkpool::MapStats;
using forkpool::Pool;
using forkpool::Schedule;
using forkpool::SimulatorCosts;

constexpr double kTolerance = 0.10;  // the goal: within 10% of the measured makespan
// Without --workers, calibration measures start costs, and validation maps, on up to this many.
constexpr unsigned kDefaultMeasuredWorkers = 2;

// A measured map is clean when no worker waited for a CPU (runnable while another process had it)
// for longer than kMostCpuWait of its makespan plus kParentPollNanoseconds, what the parent's own
// polling at the start of a map may take from a worker (kFinishPoll in pool.cpp). Validation runs
// each map up to kRoundsPerRun times per clean map it needs.
constexpr double kMostCpuWait = 0.01;
constexpr double kParentPollNanoseconds = 50000;
constexpr int kRoundsPerRun = 4;

// Where results go that the compiler could otherwise drop with the work that made them.
volatile std::uint64_t g_sink;

// ---- Measuring

double nanoseconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::nano>(b - a).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

// How long a process has been runnable without a CPU, in ns: the second field of
// /proc/PID/schedstat (0 where the kernel does not say).
double cpu_wait_ns(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/schedstat");
  double running = 0, waiting = 0;
  in >> running >> waiting;
  return waiting;
}

// The longest that any of some processes has waited for a CPU since the watch began.
class CpuWaitWatch {
 public:
  explicit CpuWaitWatch(std::vector<pid_t> pids) : pids_(std::move(pids)) {
    for (const pid_t p : pids_) before_.push_back(cpu_wait_ns(p));
  }
  double most() const {
    double most = 0;
    for (std::size_t k = 0; k < pids_.size(); ++k)
      most = std::max(most, cpu_wait_ns(pids_[k]) - before_[k]);
    return most;
  }

 private:
  std::vector<pid_t> pids_;
  std::vector<double> before_;
};

// Several measurements of one thing: their median, over the clean ones (taken while the process
// measured had its CPU) when there are any.
class Samples {
 public:
  void add(double value, bool clean) { (clean ? clean_ : disturbed_).push_back(value); }
  std::size_t clean() const { return clean_.size(); }
  double median() const { return ::median(clean_.empty() ? disturbed_ : clean_); }

 private:
  std::vector<double> clean_, disturbed_;
};

double milliseconds(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; }

std::vector<Schedule> portfolio() {
  return {Schedule::static_blocks(), Schedule::static_chunked(64),  Schedule::dynamic(1),
          Schedule::dynamic(64),     Schedule::guided(1),           Schedule::trapezoid(),
          Schedule::factoring(),     Schedule::fixed_size(),        Schedule::adaptive_factoring(),
          Schedule::work_stealing(), Schedule::adaptive_stealing(), Schedule::python(),
          Schedule::automatic()};
}

// ---- Workloads: items as plain functions, so that the pool and the sequential passes call the
// very same code through the same indirect call.

using ItemFn = std::uint64_t (*)(std::int64_t);

struct Workload {
  const char* name;
  std::int64_t first, count;
  ItemFn item;
  std::uint64_t (*reference)();  // the sequential result, from workloads.hpp
};

std::uint64_t uniform(std::int64_t i) { return workloads::uniform_item(i); }
std::uint64_t triangular(std::int64_t i) { return workloads::triangular_item(i); }
std::uint64_t heavytail(std::int64_t i) {
  return workloads::heavytail_item(workloads::heavytail_costs().data(), i);
}
std::uint64_t bimodal(std::int64_t i) { return workloads::bimodal_item(i); }
std::uint64_t mandelbrot(std::int64_t row) { return workloads::mandelbrot_row(row); }
std::uint64_t seed(std::int64_t x) { return workloads::square_u64(x); }
std::uint64_t seed_reference() { return static_cast<std::uint64_t>(workloads::kSeed1e6); }
std::uint64_t trivial(std::int64_t i) { return static_cast<std::uint64_t>(i); }

const std::vector<Workload>& all_workloads() {
  constexpr auto n = static_cast<std::int64_t>(workloads::N);
  static const std::vector<Workload> all{
      {"uniform", 0, n, &uniform, &workloads::uniform_sequential},
      {"triangular", 0, n, &triangular, &workloads::triangular_sequential},
      {"heavytail", 0, n, &heavytail, &workloads::heavytail_sequential},
      {"bimodal", 0, n, &bimodal, &workloads::bimodal_sequential},
      {"mandelbrot", 0, workloads::kMandelbrotSize, &mandelbrot, &workloads::mandelbrot_sequential},
      {"seed_1e6", 1, workloads::kSeed1e6Last, &seed, &seed_reference}};
  return all;
}

const Workload& workload_named(std::string_view name) {
  for (const Workload& w : all_workloads())
    if (name == w.name) return w;
  std::string known;
  for (const Workload& w : all_workloads())
    known += std::string(known.empty() ? "" : ", ") + w.name;
  throw std::invalid_argument("--workload: unknown workload '" + std::string(name) + "' (one of " +
                              known + ")");
}

// One map_reduce on `pool` of item(i) over [first, first + count): its statistics, once its sum
// is checked.
MapStats run_map(Pool& pool, ItemFn item, std::int64_t first, std::int64_t count, Schedule s,
                 std::uint64_t expected, const char* what) {
  const std::uint64_t sum =
      pool.map_reduce([item](std::int64_t i) { return item(i); },
                      forkpool::range(first, first + count), std::uint64_t{0}, std::plus<>{}, s);
  if (sum != expected)
    throw std::runtime_error(std::string(what) + " under " + s.name() + " on " +
                             std::to_string(pool.size()) + " workers summed to " +
                             std::to_string(sum) + ", expected " + std::to_string(expected));
  return pool.last_stats();
}

std::uint64_t trivial_sum(std::int64_t count) {
  const auto n = static_cast<std::uint64_t>(count);
  return n * (n - 1) / 2;
}

// ---- Calibration

struct Calibration {
  double clock_read_ns = 0;      // one steady_clock::now()
  double empty_interval_ns = 0;  // what two back-to-back reads measure
  double spin_ns = 0;            // one spin() iteration, this process alone
  double spin_ns_all_busy = 0;   // the same with every CPU running one (Pool(cpu_count()))
  double dispatch_ns = 0;
  double remote_ns = 0;
  // False when the ping-pong's two workers never ran at once (other processes held the CPUs):
  // remote_ns is then 0, and predictions for P >= 2 leave out what sharing costs.
  bool remote_measured = false;
  std::vector<double> start_ns, stagger_ns;  // index P - 1

  SimulatorCosts costs(unsigned workers) const {
    const std::size_t p = std::min<std::size_t>(workers, start_ns.size()) - 1;
    return {dispatch_ns, 2 * clock_read_ns, remote_ns, start_ns[p], stagger_ns[p]};
  }
};

void measure_clock(Calibration& c) {
  constexpr int kReads = 1000000;
  std::vector<double> per_read, empty;
  for (int round = 0; round < 7; ++round) {
    const Clock::time_point a = Clock::now();
    for (int k = 0; k < kReads; ++k) static_cast<void>(Clock::now());
    per_read.push_back(nanoseconds_between(a, Clock::now()) / kReads);
  }
  for (int k = 0; k < 100001; ++k) {
    const Clock::time_point a = Clock::now();
    empty.push_back(nanoseconds_between(a, Clock::now()));
  }
  c.clock_read_ns = median(per_read);
  c.empty_interval_ns = median(empty);
}

void measure_spin(Calibration& c) {
  constexpr std::uint64_t kIters = 10000000;
  std::vector<double> alone;
  for (int round = 0; round < 7; ++round) {
    const Clock::time_point a = Clock::now();
    g_sink = workloads::spin(static_cast<std::uint64_t>(round), kIters);
    alone.push_back(nanoseconds_between(a, Clock::now()) / kIters);
  }
  c.spin_ns = median(alone);
  // Every worker times its own item, so that a late start does not count.
  const unsigned cpus = forkpool::cpu_count();
  Pool pool(cpus);
  auto times = pool.shared_array<double>(cpus);
  double* per_iteration = times.data();
  std::vector<double> busy;
  for (int round = 0; round < 5; ++round) {
    g_sink = pool.map_reduce(
        [per_iteration](std::int64_t i) {
          const Clock::time_point a = Clock::now();
          const std::uint64_t x = workloads::spin(static_cast<std::uint64_t>(i), kIters);
          per_iteration[i] = nanoseconds_between(a, Clock::now()) / kIters;
          return x;
        },
        forkpool::range(cpus), std::uint64_t{0}, std::plus<>{}, Schedule::static_blocks());
    busy.insert(busy.end(), times.begin(), times.end());
  }
  c.spin_ns_all_busy = median(busy);
}

void measure_dispatch(Calibration& c) {
  constexpr std::int64_t kItems = 1000000;
  Pool pool(1);
  std::vector<double> blocks, singles;
  for (int round = 0; round < 5; ++round) {
    blocks.push_back(
        static_cast<double>(run_map(pool, &trivial, 0, kItems, Schedule::static_blocks(),
                                    trivial_sum(kItems), "the trivial map")
                                .makespan.count()));
    singles.push_back(static_cast<double>(run_map(pool, &trivial, 0, kItems, Schedule::dynamic(1),
                                                  trivial_sum(kItems), "the trivial map")
                                              .makespan.count()));
  }
  c.dispatch_ns = std::max(0.0, (median(singles) - median(blocks)) / (kItems - 1));
}

// Item 0 and item 1 of a static_blocks map on Pool(2) run on different workers, each pinned to a
// CPU of its own (`cpus`, two of this process's); they hand a token back and forth through one
// word of the segment, each with a compare-and-swap once the word holds its value; item 0 records
// each round trip. Their median, or none if a side gave up waiting for the other (another process
// held the other CPU throughout).
std::optional<double> ping_pong(Pool& pool, std::array<int, 2> cpus) {
  constexpr std::uint64_t kRounds = 4001;
  constexpr std::uint64_t kGaveUp = UINT64_MAX;
  auto token = pool.shared_array<std::uint64_t>(1);
  auto trips = pool.shared_array<double>(kRounds);
  std::uint64_t* word = token.data();
  double* trip = trips.data();
  const auto finished = pool.map(
      [word, trip, cpus](std::int64_t side) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[static_cast<std::size_t>(side)], &one);
        sched_setaffinity(0, sizeof one, &one);
        std::atomic_ref<std::uint64_t> shared(*word);
        const Clock::time_point give_up = Clock::now() + std::chrono::seconds(1);
        Clock::time_point last{};
        for (std::uint64_t k = 0; k < kRounds; ++k) {
          std::uint64_t mine = 2 * k + static_cast<std::uint64_t>(side);
          for (std::uint64_t spins = 1;; ++spins) {
            const std::uint64_t seen = shared.load(std::memory_order_acquire);
            if (seen == mine) break;
            if (seen == kGaveUp || (spins % 4096 == 0 && Clock::now() > give_up)) {
              shared.store(kGaveUp, std::memory_order_release);  // the other side stops too
              return false;
            }
          }
          if (side == 0) {
            const Clock::time_point now = Clock::now();
            if (k > 0) trip[k - 1] = nanoseconds_between(last, now);
            last = now;
          }
          shared.compare_exchange_strong(mine, mine + 1, std::memory_order_acq_rel);
        }
        return true;
      },
      forkpool::range(2), Schedule::static_blocks());
  if (!finished[0] || !finished[1]) return std::nullopt;
  return median(std::vector<double>(trips.begin(), trips.end() - 1));
}

// One hand-over: half the round trip, less the clock read in it. The pool is made for this, so
// that pinning its workers changes nothing else.
void measure_remote(Calibration& c) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
  std::array<int, 2> cpus{-1, -1};
  for (int cpu = 0, found = 0; cpu < CPU_SETSIZE && found < 2; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) cpus[static_cast<std::size_t>(found++)] = cpu;
  if (cpus[1] < 0) return;
  Pool pool(2);
  for (int attempt = 0; attempt < 5 && !c.remote_measured; ++attempt)
    if (const std::optional<double> trip = ping_pong(pool, cpus)) {
      c.remote_ns = std::max(0.0, *trip - c.clock_read_ns) / 2;
      c.remote_measured = true;
    }
}

// Maps of P trivial items, one per worker, traced: their makespan, and when each worker's chunk
// began. Each map comes a millisecond after the last, when the workers have stopped polling for
// the next job and sleep (worker.cpp), as they do before most maps of a program.
void measure_start(Calibration& c, unsigned workers) {
  Pool pool(forkpool::Options{
      .processes = workers, .schedule = Schedule::static_blocks(), .trace_chunks = true});
  std::vector<double> makespans, staggers;
  for (int round = 0; round < 200; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const MapStats m = run_map(pool, &trivial, 0, workers, Schedule::static_blocks(),
                               trivial_sum(workers), "the start map");
    if (round < 10) continue;  // the first maps fault pages in
    makespans.push_back(static_cast<double>(m.makespan.count()));
    if (workers < 2 || m.chunks.size() != workers) continue;
    staggers.push_back(
        static_cast<double>((m.chunks.back().start - m.chunks.front().start).count()) /
        (workers - 1));
  }
  const double stagger = median(staggers);
  c.stagger_ns.push_back(stagger);
  c.start_ns.push_back(std::max(0.0, median(makespans) - (workers - 1) * stagger));
}

// Start costs are measured on 1 to `most_workers` workers.
Calibration calibrate(unsigned most_workers) {
  Calibration c;
  measure_clock(c);
  measure_spin(c);
  measure_dispatch(c);
  if (forkpool::cpu_count() >= 2) measure_remote(c);
  for (unsigned p = 1; p <= most_workers; ++p) measure_start(c, p);
  return c;
}

void print_calibration(const Calibration& c) {
  std::printf("## Calibration (%u CPUs, load average at start: %s)\n\n", forkpool::cpu_count(),
              [] {
                std::ifstream in("/proc/loadavg");
                std::string a, b, c;
                in >> a >> b >> c;
                return a + " " + b + " " + c;
              }()
                  .c_str());
  std::printf("| cost | ns | how |\n|---|---|---|\n");
  std::printf("| clock read | %.1f | steady_clock::now(), back to back |\n", c.clock_read_ns);
  std::printf("| empty interval | %.1f | what two back-to-back reads measure |\n",
              c.empty_interval_ns);
  std::printf("| spin iteration, alone | %.3f | spin(i, 10^7) |\n", c.spin_ns);
  std::printf("| spin iteration, every CPU busy | %.3f | the same on Pool(%u) |\n",
              c.spin_ns_all_busy, forkpool::cpu_count());
  std::printf(
      "| dispatch_ns | %.1f | Pool(1), 10^6 trivial items: dynamic(1) - static_blocks, "
      "per chunk |\n",
      c.dispatch_ns);
  std::printf("| timing_ns | %.1f | two clock reads |\n", 2 * c.clock_read_ns);
  if (c.remote_measured)
    std::printf("| remote_ns | %.1f | Pool(2) compare-and-swap ping-pong, round trip / 2 |\n",
                c.remote_ns);
  else
    std::printf(
        "| remote_ns | not measured, 0 used | the ping-pong's workers never ran at "
        "once: other processes held the CPUs |\n");
  for (std::size_t p = 0; p < c.start_ns.size(); ++p) {
    std::printf("| start_ns, P = %zu | %.0f | makespan of a map of P trivial items |\n", p + 1,
                c.start_ns[p]);
    std::printf("| stagger_ns, P = %zu | %.0f | spread of the workers' first chunks / (P - 1) |\n",
                p + 1, c.stagger_ns[p]);
  }
  std::printf("\n");
  std::fflush(stdout);
}

// ---- Item costs

struct ItemCosts {
  std::vector<double> ns;
  double timed_sum = 0;  // the items timed one by one, before scaling; 0 if read from a file
  double untimed = 0;    // the untimed sequential run
};

// One untimed sequential pass over w's items, in ns, into `samples`.
void time_sequential(const Workload& w, std::uint64_t expected, Samples& samples) {
  const CpuWaitWatch watch({getpid()});
  const Clock::time_point a = Clock::now();
  std::uint64_t sum = 0;
  for (std::int64_t i = w.first; i < w.first + w.count; ++i) sum += w.item(i);
  const double ns = nanoseconds_between(a, Clock::now());
  if (sum != expected)
    throw std::runtime_error(std::string("the sequential run of ") + w.name + " summed to " +
                             std::to_string(sum) + ", expected " + std::to_string(expected));
  samples.add(ns, watch.most() <= kMostCpuWait * ns);
}

// The same costs, scaled by one factor so that they sum to `untimed`.
ItemCosts scaled_to(ItemCosts costs, double untimed) {
  double sum = 0;
  for (const double x : costs.ns) sum += x;
  costs.untimed = untimed;
  for (double& x : costs.ns)
    x = sum > 0 ? x * (untimed / sum) : untimed / static_cast<double>(costs.ns.size());
  return costs;
}

ItemCosts record_costs(const Workload& w, std::uint64_t expected, int passes,
                       const Calibration& c) {
  const auto n = static_cast<std::size_t>(w.count);
  std::vector<std::vector<double>> timed(n, std::vector<double>(static_cast<std::size_t>(passes)));
  Samples untimed;
  for (int pass = 0; pass < passes; ++pass) {
    std::uint64_t sum = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const Clock::time_point a = Clock::now();
      sum += w.item(w.first + static_cast<std::int64_t>(k));
      timed[k][static_cast<std::size_t>(pass)] = nanoseconds_between(a, Clock::now());
    }
    if (sum != expected)
      throw std::runtime_error(std::string("the timed run of ") + w.name + " summed to " +
                               std::to_string(sum) + ", expected " + std::to_string(expected));
    time_sequential(w, expected, untimed);
  }
  ItemCosts costs;
  costs.ns.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    costs.ns[k] = std::max(0.0, median(timed[k]) - c.empty_interval_ns);
    costs.timed_sum += costs.ns[k];
  }
  // Items faster than a clock read cannot be told apart by timing them one by one: equal costs.
  if (costs.timed_sum < c.empty_interval_ns * static_cast<double>(n))
    std::fill(costs.ns.begin(), costs.ns.end(), 1.0);
  return scaled_to(std::move(costs), untimed.median());
}

ItemCosts read_costs(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--costs: cannot open '" + path + "'");
  ItemCosts costs;
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    const auto text = line.find_first_not_of(" \t\r");
    if (text == std::string::npos) continue;
    char* end = nullptr;
    const double ns = std::strtod(line.c_str() + text, &end);
    const auto rest = static_cast<std::size_t>(end - line.c_str());
    if (end == line.c_str() + text || line.find_first_not_of(" \t\r", rest) != std::string::npos ||
        !std::isfinite(ns) || ns < 0)
      throw std::invalid_argument("--costs: " + path + " line " + std::to_string(number) +
                                  ": expected one cost in nanoseconds (finite, >= 0), got '" +
                                  line + "'");
    costs.ns.push_back(ns);
    costs.untimed += ns;
  }
  if (costs.ns.empty()) throw std::invalid_argument("--costs: " + path + " has no costs");
  return costs;
}

void print_costs(const char* name, const ItemCosts& costs) {
  if (costs.timed_sum == 0)
    std::printf("%s: %zu items, %.2f ms in all\n", name, costs.ns.size(), costs.untimed / 1e6);
  else
    std::printf("%s: %zu items; timed one by one %.2f ms, untimed %.2f ms (costs scaled by %.4f)\n",
                name, costs.ns.size(), costs.timed_sum / 1e6, costs.untimed / 1e6,
                costs.untimed / costs.timed_sum);
  std::fflush(stdout);
}

// ---- Modes

struct Arguments {
  enum class Mode { none, calibrate, validate, predict } mode = Mode::none;
  bool quick = false;
  std::vector<unsigned> workers;  // --validate: the P measured; --predict: the P predicted
  std::optional<double> start_ns, stagger_ns;  // --predict: instead of the calibrated ones
  std::string workload, costs_file;
};

// The workloads of the goal. seed_1e6 is validated only when named: its items take a
// nanosecond and a map 1.5 ms, so a nanosecond of error in the per-chunk cost or ten microseconds
// in the start are 10% of a prediction, below what can be measured on a shared machine.
constexpr const char* kValidatedWorkloads[] = {"uniform", "triangular", "heavytail", "bimodal",
                                               "mandelbrot"};

unsigned measured_workers() { return std::min(kDefaultMeasuredWorkers, forkpool::cpu_count()); }

int calibrate_mode() {
  print_calibration(calibrate(measured_workers()));
  return 0;
}

// The maps of one workload on `pool`, per schedule of portfolio(): up to `runs` clean ones, and
// every one run. Round after round of every schedule still short of clean maps, so that a burst
// of load elsewhere on the machine lands on one map of several schedules, not on every map of one;
// and an untimed sequential pass each round, until `runs` are clean.
struct Measurements {
  std::vector<std::vector<MapStats>> clean, all;
  Samples sequential;
};

Measurements measure(Pool& pool, const Workload& w, std::uint64_t expected, int runs) {
  const std::vector<Schedule> schedules = portfolio();
  const auto enough = static_cast<std::size_t>(runs);
  Measurements m{std::vector<std::vector<MapStats>>(schedules.size()),
                 std::vector<std::vector<MapStats>>(schedules.size()),
                 {}};
  for (int round = 0; round < runs * kRoundsPerRun; ++round) {
    if (m.sequential.clean() < enough) time_sequential(w, expected, m.sequential);
    for (std::size_t j = 0; j < schedules.size(); ++j) {
      if (m.clean[j].size() >= enough) continue;
      const CpuWaitWatch watch(pool.pids());
      m.all[j].push_back(run_map(pool, w.item, w.first, w.count, schedules[j], expected, w.name));
      const auto makespan = static_cast<double>(m.all[j].back().makespan.count());
      if (watch.most() <= kMostCpuWait * makespan + kParentPollNanoseconds)
        m.clean[j].push_back(m.all[j].back());
    }
  }
  return m;
}

int validate_mode(const Arguments& args) {
  const Calibration c = calibrate(*std::max_element(args.workers.begin(), args.workers.end()));
  print_calibration(c);
  std::vector<const Workload*> chosen;
  if (!args.workload.empty())
    chosen.push_back(&workload_named(args.workload));
  else if (args.quick)
    chosen = {&workload_named("uniform"), &workload_named("mandelbrot")};
  else
    for (const char* name : kValidatedWorkloads) chosen.push_back(&workload_named(name));
  const int runs = args.quick ? 1 : 5;
  const int passes = args.quick ? 2 : 5;

  std::vector<std::uint64_t> expected;
  std::vector<ItemCosts> costs;
  std::printf("## Item costs\n\n");
  for (const Workload* w : chosen) {
    expected.push_back(w->reference());
    costs.push_back(record_costs(*w, expected.back(), passes, c));
    print_costs(w->name, costs.back());
  }
  std::printf(
      "\n## Measured and predicted makespans\n\nmeasured: the median of %d maps in which no worker "
      "waited for a CPU for more than %.0f%% of the makespan + %.0f us (clean: such maps / maps "
      "run)\n\n",
      runs, 100 * kMostCpuWait, kParentPollNanoseconds / 1e3);
  std::printf(
      "| workload | strategy | P | sequential ms | measured ms | predicted ms | error %% | clean | "
      "chunks measured | chunks predicted |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> off, unclean;
  for (const unsigned p : args.workers) {
    Pool pool(p);
    for (std::size_t k = 0; k < chosen.size(); ++k) {
      const Workload& w = *chosen[k];
      const std::vector<Schedule> schedules = portfolio();
      Measurements m = measure(pool, w, expected[k], runs);
      // The machine's speed drifts (other virtual machines on the same host): the items' costs
      // are scaled to the sequential passes run between these maps.
      const ItemCosts group_costs = scaled_to(costs[k], m.sequential.median());
      for (std::size_t j = 0; j < schedules.size(); ++j) {
        const Schedule& s = schedules[j];
        const std::string cell = std::string(w.name) + " " + s.name() + " P=" + std::to_string(p);
        std::vector<MapStats>& maps = m.clean[j].empty() ? m.all[j] : m.clean[j];
        std::sort(maps.begin(), maps.end(),
                  [](const MapStats& a, const MapStats& b) { return a.makespan < b.makespan; });
        const MapStats& measured = maps[maps.size() / 2];
        const MapStats predicted = forkpool::simulate(s, p, group_costs.ns, c.costs(p));
        const double error = (milliseconds(predicted.makespan) - milliseconds(measured.makespan)) /
                             milliseconds(measured.makespan);
        std::printf("| %s | %s | %u | %.2f | %.2f | %.2f | %+.1f | %zu/%zu | %llu | %llu |\n",
                    w.name, s.name().c_str(), p, group_costs.untimed / 1e6,
                    milliseconds(measured.makespan), milliseconds(predicted.makespan), 100 * error,
                    m.clean[j].size(), m.all[j].size(),
                    static_cast<unsigned long long>(measured.total_chunks()),
                    static_cast<unsigned long long>(predicted.total_chunks()));
        std::fflush(stdout);
        if (m.clean[j].empty())
          unclean.push_back(cell);
        else if (std::abs(error) > kTolerance)
          off.push_back(cell + ": " + std::to_string(100 * error) + "%");
      }
    }
  }
  const std::size_t cells = chosen.size() * portfolio().size() * args.workers.size();
  std::printf("\n%zu of %zu predictions off by more than %.0f%%; %zu not measured cleanly\n",
              off.size(), cells, 100 * kTolerance, unclean.size());
  for (const std::string& o : off) std::printf("  off: %s\n", o.c_str());
  for (const std::string& u : unclean)
    std::printf(
        "  not measured cleanly (other processes held the CPUs; rerun when the machine is "
        "quiet): %s\n",
        u.c_str());
  const bool remote_missing = !c.remote_measured && forkpool::cpu_count() >= 2;
  if (remote_missing)
    std::printf("  remote_ns was not measured: rerun when the machine is quiet\n");
  return (off.empty() && unclean.empty() && !remote_missing) || args.quick ? 0 : 1;
}

int predict_mode(const Arguments& args) {
  std::vector<std::pair<std::string, ItemCosts>> loads;
  if (!args.costs_file.empty()) loads.emplace_back(args.costs_file, read_costs(args.costs_file));
  const Calibration c = calibrate(measured_workers());
  print_calibration(c);
  if (args.costs_file.empty()) {
    std::vector<const Workload*> chosen;
    if (!args.workload.empty())
      chosen.push_back(&workload_named(args.workload));
    else
      for (const Workload& w : all_workloads()) chosen.push_back(&w);
    for (const Workload* w : chosen)
      loads.emplace_back(w->name, record_costs(*w, w->reference(), args.quick ? 1 : 3, c));
  }
  const auto costs_for = [&](unsigned p) {
    SimulatorCosts costs = c.costs(p);
    costs.start_ns = args.start_ns.value_or(costs.start_ns);
    costs.stagger_ns = args.stagger_ns.value_or(costs.stagger_ns);
    return costs;
  };
  std::printf(
      "Predicted with the costs above; P above %zu uses P = %zu's start_ns and stagger_ns "
      "(worker w starts w x stagger_ns late)",
      c.start_ns.size(), c.start_ns.size());
  if (args.start_ns) std::printf("; start_ns = %.0f as given", *args.start_ns);
  if (args.stagger_ns) std::printf("; stagger_ns = %.0f as given", *args.stagger_ns);
  std::printf(".\n\n");

  struct Winner {
    std::string workload;
    unsigned workers;
    std::string best, second;
    double best_ratio, second_ratio;
  };
  std::vector<Winner> winners;
  for (const auto& [name, costs] : loads) {
    print_costs(name.c_str(), costs);
    double sum = 0;
    for (const double x : costs.ns) sum += x;
    std::printf("\n| strategy |");
    for (const unsigned p : args.workers)
      std::printf(" P=%u time / ideal | P=%u imbalance |", p, p);
    std::printf("\n|---|");
    for (std::size_t k = 0; k < args.workers.size(); ++k) std::printf("---|---|");
    std::printf("\n");
    std::vector<std::vector<double>> ratios(portfolio().size());
    for (std::size_t k = 0; k < portfolio().size(); ++k) {
      const Schedule s = portfolio()[k];
      std::printf("| %s |", s.name().c_str());
      for (const unsigned p : args.workers) {
        const MapStats m = forkpool::simulate(s, p, costs.ns, costs_for(p));
        const double ratio = sum > 0 ? static_cast<double>(m.makespan.count()) / (sum / p) : 0;
        ratios[k].push_back(ratio);
        std::printf(" %.3f | %.3f |", ratio, m.imbalance);
      }
      std::printf("\n");
    }
    std::printf("\n");
    for (std::size_t j = 0; j < args.workers.size(); ++j) {
      std::vector<std::size_t> order(portfolio().size());
      for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return ratios[a][j] < ratios[b][j]; });
      winners.push_back({name, args.workers[j], portfolio()[order[0]].name(),
                         portfolio()[order[1]].name(), ratios[order[0]][j], ratios[order[1]][j]});
    }
  }
  std::printf(
      "## Fastest schedule per workload and P (predicted)\n\n| workload | P | fastest | "
      "time / ideal | runner-up | time / ideal |\n|---|---|---|---|---|---|\n");
  for (const Winner& w : winners)
    std::printf("| %s | %u | %s | %.3f | %s | %.3f |\n", w.workload.c_str(), w.workers,
                w.best.c_str(), w.best_ratio, w.second.c_str(), w.second_ratio);
  return 0;
}

// ---- Arguments

constexpr const char* kUsage =
    "usage: forkpool_simulate --calibrate\n"
    "       forkpool_simulate --validate [--quick] [--workload=NAME] [--workers=1,2]\n"
    "       forkpool_simulate --predict [--workers=8,64,256] [--workload=NAME | --costs=FILE] "
    "[--start-ns=NS] [--stagger-ns=NS] [--quick]\n"
    "workloads: uniform, triangular, heavytail, bimodal, mandelbrot, seed_1e6\n";

std::vector<unsigned> parse_workers(std::string_view list) {
  std::vector<unsigned> workers;
  while (!list.empty()) {
    const std::string item(list.substr(0, list.find(',')));
    list.remove_prefix(std::min(list.size(), item.size() + 1));
    char* end = nullptr;
    const unsigned long p = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || item[0] == '-' || p < 1 ||
        p > forkpool::kMaxSimulatedWorkers)
      throw std::invalid_argument("--workers: '" + item + "' is not a number in [1, " +
                                  std::to_string(forkpool::kMaxSimulatedWorkers) + "]");
    workers.push_back(static_cast<unsigned>(p));
  }
  if (workers.empty()) throw std::invalid_argument("--workers: the list is empty");
  return workers;
}

double parse_nanoseconds(const char* flag, const std::string& text) {
  char* end = nullptr;
  const double ns = std::strtod(text.c_str(), &end);
  if (*end != '\0' || !std::isfinite(ns) || ns < 0)
    throw std::invalid_argument(std::string(flag) + ": '" + text +
                                "' is not a time in nanoseconds (finite, >= 0)");
  return ns;
}

Arguments parse(int argc, char** argv) {
  Arguments args;
  bool workers_given = false;
  const auto set_mode = [&args](Arguments::Mode m, std::string_view flag) {
    if (args.mode != Arguments::Mode::none)
      throw std::invalid_argument("give exactly one of --calibrate, --validate, --predict (" +
                                  std::string(flag) + " after another)");
    args.mode = m;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const auto value = [a](std::string_view flag) {
      const std::string_view v = a.substr(flag.size());
      if (v.empty()) throw std::invalid_argument(std::string(flag) + " needs a value");
      return std::string(v);
    };
    if (a == "--calibrate")
      set_mode(Arguments::Mode::calibrate, a);
    else if (a == "--validate")
      set_mode(Arguments::Mode::validate, a);
    else if (a == "--predict")
      set_mode(Arguments::Mode::predict, a);
    else if (a == "--quick")
      args.quick = true;
    else if (a.starts_with("--workers=")) {
      args.workers = parse_workers(value("--workers="));
      workers_given = true;
    } else if (a.starts_with("--workload=")) {
      args.workload = value("--workload=");
      workload_named(args.workload);
    } else if (a.starts_with("--costs="))
      args.costs_file = value("--costs=");
    else if (a.starts_with("--start-ns="))
      args.start_ns = parse_nanoseconds("--start-ns", value("--start-ns="));
    else if (a.starts_with("--stagger-ns="))
      args.stagger_ns = parse_nanoseconds("--stagger-ns", value("--stagger-ns="));
    else
      throw std::invalid_argument("unknown argument '" + std::string(a) + "'");
  }
  using Mode = Arguments::Mode;
  if (args.mode == Mode::none)
    throw std::invalid_argument("give one of --calibrate, --validate, --predict");
  if (workers_given && args.mode == Mode::calibrate)
    throw std::invalid_argument("--workers is for --validate and --predict");
  if (args.mode == Mode::validate) {
    // The simulator gives every worker a CPU of its own; more workers than CPUs share them.
    for (const unsigned p : args.workers)
      if (p > forkpool::cpu_count())
        throw std::invalid_argument("--workers: --validate measures at most cpu_count() = " +
                                    std::to_string(forkpool::cpu_count()) + " workers, got " +
                                    std::to_string(p));
    if (!workers_given)
      for (unsigned p = 1; p <= measured_workers(); ++p) args.workers.push_back(p);
  }
  if (args.mode == Mode::predict && !workers_given) args.workers = {8, 64, 256};
  if (!args.costs_file.empty() && args.mode != Mode::predict)
    throw std::invalid_argument("--costs is for --predict");
  if ((args.start_ns || args.stagger_ns) && args.mode != Mode::predict)
    throw std::invalid_argument("--start-ns and --stagger-ns are for --predict");
  if (!args.workload.empty() && args.mode == Mode::calibrate)
    throw std::invalid_argument("--workload is for --validate and --predict");
  if (!args.workload.empty() && !args.costs_file.empty())
    throw std::invalid_argument("give --workload or --costs, not both");
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Arguments args;
  try {
    args = parse(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "forkpool_simulate: %s\n%s", e.what(), kUsage);
    return 2;
  }
  // The workers see the heavy-tail sequence as it was when their pool was made.
  workloads::heavytail_costs();
  try {
    switch (args.mode) {
      case Arguments::Mode::calibrate:
        return calibrate_mode();
      case Arguments::Mode::validate:
        return validate_mode(args);
      case Arguments::Mode::predict:
        return predict_mode(args);
      case Arguments::Mode::none:
        break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forkpool_simulate: %s\n", e.what());
    return 2;
  }
  return 2;
}
