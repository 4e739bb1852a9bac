// Facts about this process and machine: CPUs, ranges, schedule names.
#include <forkpool/forkpool.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

namespace forkpool {
namespace {

unsigned affinity_cpus() {
  for (std::size_t n = 1024; n <= (std::size_t{1} << 20); n *= 2) {
    cpu_set_t* set = CPU_ALLOC(n);
    const std::size_t bytes = CPU_ALLOC_SIZE(n);
    const bool ok = sched_getaffinity(0, bytes, set) == 0;
    const int count = ok ? CPU_COUNT_S(bytes, set) : 0;
    CPU_FREE(set);
    if (ok) return static_cast<unsigned>(count);
    if (errno != EINVAL) break;
  }
  return static_cast<unsigned>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}

// ceil(quota / period) from a cgroup file, if it sets a quota.
std::optional<unsigned> quota_cpus(double quota, double period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<unsigned>(std::max(1.0, std::ceil(quota / period)));
}

std::optional<unsigned> cgroup_v2_cpus(const std::string& dir) {
  std::ifstream in("/sys/fs/cgroup" + dir + "/cpu.max");
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  return quota_cpus(std::stod(quota), period);
}

std::optional<unsigned> cgroup_v1_cpus(const std::string& dir) {
  std::ifstream q("/sys/fs/cgroup/cpu" + dir + "/cpu.cfs_quota_us");
  std::ifstream p("/sys/fs/cgroup/cpu" + dir + "/cpu.cfs_period_us");
  double quota = 0, period = 0;
  if (!(q >> quota) || !(p >> period)) return std::nullopt;
  return quota_cpus(quota, period);
}

// The tightest CPU quota on this process's cgroup or any cgroup above it.
std::optional<unsigned> cgroup_cpus() {
  std::ifstream in("/proc/self/cgroup");
  std::optional<unsigned> best;
  const auto take = [&best](std::optional<unsigned> c) {
    if (c && (!best || *c < *best)) best = c;
  };
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string dir = line.substr(b + 1);
    const bool v2 = controllers.empty();
    const bool v1 = ("," + controllers + ",").find(",cpu,") != std::string::npos;
    if (!v1 && !v2) continue;
    for (;;) {
      take(v2 ? cgroup_v2_cpus(dir == "/" ? "" : dir) : cgroup_v1_cpus(dir == "/" ? "" : dir));
      if (dir.empty() || dir == "/") break;
      dir = dir.substr(0, dir.rfind('/'));
    }
  }
  return best;
}

}  // namespace

unsigned cpu_count() {
  const unsigned cpus = std::max(1u, affinity_cpus());
  const std::optional<unsigned> quota = cgroup_cpus();
  return quota ? std::min(cpus, *quota) : cpus;
}

Range range(std::int64_t first, std::int64_t last) {
  if (first > last)
    throw std::invalid_argument("forkpool::range: first (" + std::to_string(first) +
                                ") must not be greater than last (" + std::to_string(last) + ")");
  return {first, last};
}

Range range(std::int64_t last) { return range(0, last); }

std::string Schedule::name() const {
  const auto with = [](const char* name, std::size_t p, const char* zero) {
    return std::string(name) + "(" + (p == 0 && zero ? zero : std::to_string(p)) + ")";
  };
  switch (kind_) {
    case Kind::static_blocks:
      return "static_blocks";
    case Kind::static_chunked:
      return with("static_chunked", parameter_, nullptr);
    case Kind::dynamic:
      return with("dynamic", parameter_, nullptr);
    case Kind::guided:
      return with("guided", parameter_, nullptr);
    case Kind::trapezoid:
      return "trapezoid(" + (parameter_ == 0 ? std::string("auto") : std::to_string(parameter_)) +
             ", " + std::to_string(second_parameter_) + ")";
    case Kind::factoring:
      return "factoring";
    case Kind::fixed_size:
      return "fixed_size";
    case Kind::adaptive_factoring:
      return "adaptive_factoring";
    case Kind::work_stealing:
      return with("work_stealing", parameter_, "auto");
    case Kind::adaptive_stealing:
      return "adaptive_stealing";
    case Kind::python:
      return with("python", parameter_, "auto");
    case Kind::automatic:
      return "automatic";
  }
  return "unknown";
}

}  // namespace forkpool
