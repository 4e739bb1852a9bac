// How a map's index space is cut into chunks and handed to the workers: the portfolio of loop
// scheduling techniques. N is the map's item count, P the number of workers, R the items not yet
// claimed. Every rule is a pure function in detail/chunking.hpp, shared by the pool and by the
// simulator (forkpool/simulator.hpp); the algorithms that hand the chunks out are described at
// the top of detail/claims.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace forkpool {

class Schedule {
 public:
  enum class Kind : std::uint8_t {
    static_blocks,
    static_chunked,
    dynamic,
    guided,
    trapezoid,
    factoring,
    fixed_size,
    adaptive_factoring,
    work_stealing,
    adaptive_stealing,
    python,
    automatic,
  };

  // ---- Static: decided before the map starts, no balancing at all.

  // One contiguous block of about N/P items per worker (OpenMP schedule(static)).
  static Schedule static_blocks() { return Schedule(Kind::static_blocks); }
  // Chunks of `chunk` items dealt round-robin: worker w runs chunks w, w + P, w + 2P, ...
  // (OpenMP schedule(static, chunk)).
  static Schedule static_chunked(std::size_t chunk) {
    return Schedule(Kind::static_chunked, positive(chunk, "static_chunked", "chunk"));
  }

  // ---- Self-scheduling: every chunk is claimed from one shared counter.

  // Each claim takes the next `chunk` items (SS, Tang & Yew 1986; OpenMP schedule(dynamic)).
  static Schedule dynamic(std::size_t chunk) {
    return Schedule(Kind::dynamic, positive(chunk, "dynamic", "chunk"));
  }
  // Guided self-scheduling (GSS, Polychronopoulos & Kuck 1987): ceil(R/P), at least `min_chunk`.
  static Schedule guided(std::size_t min_chunk = 1) {
    return Schedule(Kind::guided, positive(min_chunk, "guided", "min_chunk"));
  }
  // Trapezoid self-scheduling (TSS, Tzen & Ni 1993): chunk sizes fall linearly from `first` to
  // `last`: n = ceil(2N / (first + last)) chunks, chunk k = first - k * floor((first - last) /
  // (n - 1)), never below `last`. first = 0 means N / (2P), the paper's choice.
  static Schedule trapezoid(std::size_t first = 0, std::size_t last = 1) {
    positive(last, "trapezoid", "last");
    if (first != 0 && first < last)
      throw std::invalid_argument(
          "forkpool::Schedule::trapezoid: first must be 0 (N / 2P) or >= last, got first = " +
          std::to_string(first) + ", last = " + std::to_string(last));
    return Schedule(Kind::trapezoid, first, last);
  }
  // Factoring (FAC2, Hummel, Schonberg & Flynn 1992): batches of P equal chunks, batch k's chunks
  // ceil(N / (2^(k+1) P)) items: each batch hands out half of what was left.
  static Schedule factoring() { return Schedule(Kind::factoring); }
  // Fixed-size chunking without profiling (mFSC, the portfolio of LB4OMP, after Kruskal & Weiss
  // 1985): one chunk size for the whole map, floor(0.55 + T ln 2 / ln T) with T = ceil(N / P).
  static Schedule fixed_size() { return Schedule(Kind::fixed_size); }
  // Adaptive factoring (AF, Banicescu & Liu 2000). Each worker measures the mean mu_i and the
  // variance sigma_i^2 of its items' run time as it goes, and claims
  //   C_i = (D + 2TR - sqrt(D^2 + 4DTR)) / (2 mu_i),  D = sum_j sigma_j^2 / mu_j,
  //   T = (sum_j 1 / mu_j)^-1,
  // over all P workers, the ones not measured yet taken to be like the average measured one.
  // Until it has measured two chunks, a worker claims probe chunks of ceil(N / (64 P)) items.
  static Schedule adaptive_factoring() { return Schedule(Kind::adaptive_factoring); }

  // ---- Work stealing: every worker owns a range; idle workers steal from the others.

  // The default. Each worker starts on its own contiguous block and claims 1/8 of what is left
  // in it at a time (at least `grain` items); a worker that runs dry steals the back half of
  // another worker's remaining range (steal-half, Hendler & Shavit 2002). grain = 0 picks it from
  // N and P (N / 256P).
  static Schedule work_stealing(std::size_t grain = 0) {
    return Schedule(Kind::work_stealing, grain);
  }
  // Splits only on demand (rayon's thief splitting, oneTBB's auto partitioner): each worker
  // starts on one of P blocks and claims from it only what it is about to run, a piece of about
  // a millisecond at the rate it measures, so a block is cut only when a thief takes half of it.
  // A claimed piece cannot be stolen, so near the end of its range a worker claims at most 1/8
  // of what is left (but no less than its items of about 20 microseconds).
  static Schedule adaptive_stealing() { return Schedule(Kind::adaptive_stealing); }

  // ---- For comparisons and for when you do not want to choose.

  // Exactly Python's Pool.map: chunks of `chunksize` items handed to whichever worker is free;
  // chunksize = 0 means Python's default, ceil(N / (4P)).
  static Schedule python(std::size_t chunksize = 0) { return Schedule(Kind::python, chunksize); }
  // Chooses from what it measures. Each worker starts as adaptive_stealing does, on its own
  // block, claiming pieces of about a millisecond at the rate it measures (the first piece is one
  // item, each next one at most 4 times larger). From that rate it sets its grain, the smallest
  // part of its range a thief may take, to its items of about 20 microseconds: cheap items are
  // never stolen a few at a time (a steal would cost more than it saves), and costly ones can
  // be stolen one by one; from a worker that has measured nothing yet (it has not started), a
  // thief takes at least its own grain. Near the end of its range it claims at most 1/8 of what
  // is left, down to a grain, as adaptive_stealing does. An even map is claimed in a few pieces
  // per millisecond of work, and an uneven one is balanced to within a few grains.
  static Schedule automatic() { return Schedule(Kind::automatic); }

  Kind kind() const noexcept { return kind_; }
  // static_chunked, dynamic: chunk; guided: min_chunk; trapezoid: first (0 = N / 2P);
  // work_stealing: grain (0 = automatic); python: chunksize (0 = Python's default); others: 0.
  std::size_t parameter() const noexcept { return parameter_; }
  // trapezoid: last; others: 0.
  std::size_t second_parameter() const noexcept { return second_parameter_; }
  std::string name() const;  // "dynamic(64)", "trapezoid(auto, 1)", "work_stealing(auto)", ...

  friend bool operator==(const Schedule&, const Schedule&) = default;

 private:
  explicit Schedule(Kind kind, std::size_t parameter = 0, std::size_t second_parameter = 0)
      : kind_(kind), parameter_(parameter), second_parameter_(second_parameter) {}

  static std::size_t positive(std::size_t value, const char* schedule, const char* argument) {
    if (value == 0)
      throw std::invalid_argument(std::string("forkpool::Schedule::") + schedule + ": " + argument +
                                  " must be >= 1");
    return value;
  }

  Kind kind_;
  std::size_t parameter_;
  std::size_t second_parameter_;
};

}  // namespace forkpool
