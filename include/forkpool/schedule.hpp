// How a map's index space is cut into chunks and handed to the workers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace forkpool {

class Schedule {
 public:
  enum class Kind : std::uint8_t { static_blocks, dynamic, guided, work_stealing };

  // One contiguous block of about N/P items per worker; no balancing at all.
  static Schedule static_blocks() { return Schedule(Kind::static_blocks, 0); }
  // Self-scheduling: each worker takes the next `chunk` items from one shared counter.
  static Schedule dynamic(std::size_t chunk) {
    if (chunk == 0) throw std::invalid_argument("forkpool::Schedule::dynamic: chunk must be >= 1");
    return Schedule(Kind::dynamic, chunk);
  }
  // Guided self-scheduling (GSS, Polychronopoulos & Kuck 1987): each take is ceil(R/P) of the R
  // items remaining, never fewer than `min_chunk`.
  static Schedule guided(std::size_t min_chunk = 1) {
    if (min_chunk == 0)
      throw std::invalid_argument("forkpool::Schedule::guided: min_chunk must be >= 1");
    return Schedule(Kind::guided, min_chunk);
  }
  // The default. Each worker starts on its own contiguous block and takes chunks from its front;
  // a worker that runs dry steals the back half of another worker's remaining range. `grain` is
  // the smallest chunk taken or stolen, in items; 0 picks it from N and P.
  static Schedule work_stealing(std::size_t grain = 0) {
    return Schedule(Kind::work_stealing, grain);
  }

  Kind kind() const noexcept { return kind_; }
  // dynamic: chunk; guided: min_chunk; work_stealing: grain (0 = automatic); static_blocks: 0.
  std::size_t parameter() const noexcept { return parameter_; }
  std::string name() const;  // "dynamic(64)", "work_stealing(auto)", ...

  friend bool operator==(const Schedule&, const Schedule&) = default;

 private:
  Schedule(Kind kind, std::size_t parameter) : kind_(kind), parameter_(parameter) {}

  Kind kind_;
  std::size_t parameter_;
};

}  // namespace forkpool
