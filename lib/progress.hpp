// A map's progress, for Options::progress and Options::on_progress. The parent computes it from
// the workers' commit counts (WorkerSlot::commit, written once per piece of about a millisecond)
// while it waits for the map, so the workers do nothing extra for it.
#pragma once

#include <forkpool/forkpool.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>

namespace forkpool::detail {

class ProgressReporter {
 public:
  using Clock = std::chrono::steady_clock;
  // At most one report per interval while the map runs (10 a second), and the final one.
  static constexpr auto kInterval = std::chrono::milliseconds(100);

  // Reports nothing unless `options` ask for it; the bar only when stderr is a terminal.
  ProgressReporter(const Options& options, std::uint64_t total);
  ~ProgressReporter();  // after a map that threw: ends the bar's line
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  bool active() const { return draw_ || callback_ != nullptr; }
  // How long the parent may sleep before the next report is due.
  std::chrono::milliseconds until_due() const;
  // Reports `done` items if the last report is kInterval old. False when on_progress threw: the
  // caller cancels the map, and rethrow_callback_error() then throws what it threw.
  bool update(std::uint64_t done);
  void rethrow_callback_error() const;
  // The map succeeded: the final report, with done == total.
  void finish();

 private:
  Progress at(std::uint64_t done, Clock::time_point now) const;
  void report(const Progress& p, bool final);

  const std::function<void(const Progress&)>* callback_;
  bool draw_;
  bool line_open_ = false;  // a bar is drawn and its line not ended
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  Clock::time_point start_;
  Clock::time_point last_;
  std::exception_ptr callback_error_;
};

// The bar for `p`, after Python's tqdm:
// " 45%|#############                 | 4500/10000 [00:03<00:04, 1234.5 items/s]".
std::string progress_bar(const Progress& p);

}  // namespace forkpool::detail
