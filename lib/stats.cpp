#include <forkpool/stats.hpp>

#include <cstdio>
#include <ostream>

namespace forkpool {
namespace {

double milliseconds(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; }

}  // namespace

std::uint64_t MapStats::total_chunks() const {
  std::uint64_t n = 0;
  for (const WorkerStats& w : workers) n += w.chunks;
  return n;
}

std::uint64_t MapStats::total_steals() const {
  std::uint64_t n = 0;
  for (const WorkerStats& w : workers) n += w.steals;
  return n;
}

std::string MapStats::table() const {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-7s %12s %10s %10s %10s %10s %10s\n", "worker", "items",
                "chunks", "steals", "tried", "busy ms", "idle ms");
  out += line;
  for (std::size_t w = 0; w < workers.size(); ++w) {
    const WorkerStats& s = workers[w];
    std::snprintf(line, sizeof line, "%-7zu %12llu %10llu %10llu %10llu %10.3f %10.3f\n", w,
                  static_cast<unsigned long long>(s.items),
                  static_cast<unsigned long long>(s.chunks),
                  static_cast<unsigned long long>(s.steals),
                  static_cast<unsigned long long>(s.steal_attempts), milliseconds(s.busy),
                  milliseconds(s.idle));
    out += line;
  }
  std::snprintf(line, sizeof line,
                "%s: %llu items, makespan %.3f ms, imbalance %.4f, %llu chunks, %llu steals, "
                "%llu scheduling operations\n",
                schedule.name().c_str(), static_cast<unsigned long long>(items),
                milliseconds(makespan), imbalance, static_cast<unsigned long long>(total_chunks()),
                static_cast<unsigned long long>(total_steals()),
                static_cast<unsigned long long>(scheduling_operations));
  out += line;
  return out;
}

std::ostream& operator<<(std::ostream& os, const MapStats& stats) { return os << stats.table(); }

}  // namespace forkpool
