// A map's progress, as Options::on_progress receives it (Options::progress draws it on stderr).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace forkpool {

struct Progress {
  std::uint64_t done;                // items finished so far, at most total
  std::uint64_t total;               // items in the map
  std::chrono::nanoseconds elapsed;  // since the map started
  double items_per_second;           // done / elapsed; 0 before the first item finishes
  // Time left at the current rate; nullopt before the first item finishes, zero at the end.
  std::optional<std::chrono::nanoseconds> eta;
};

}  // namespace forkpool
