#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>

namespace forkpool::detail {
namespace {

constexpr int kBarWidth = 30;

// "mm:ss", or "h:mm:ss" from an hour.
std::string clock_time(std::chrono::nanoseconds t) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(t).count();
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

void write_all(const std::string& s) {
  std::size_t at = 0;
  while (at < s.size()) {
    const ssize_t n = ::write(STDERR_FILENO, s.data() + at, s.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed or full: the bar is not worth failing the map for
    at += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::string progress_bar(const Progress& p) {
  const double fraction =
      p.total == 0 ? 1.0 : static_cast<double>(p.done) / static_cast<double>(p.total);
  const int filled = std::clamp(static_cast<int>(fraction * kBarWidth), 0, kBarWidth);
  char head[64];
  std::snprintf(head, sizeof head, "%3d%%|", static_cast<int>(std::floor(fraction * 100)));
  char tail[160];
  std::snprintf(tail, sizeof tail, "| %llu/%llu [%s<%s, %.1f items/s]",
                static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
                clock_time(p.elapsed).c_str(), p.eta ? clock_time(*p.eta).c_str() : "?",
                p.items_per_second);
  return head + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(kBarWidth - filled), ' ') + tail;
}

ProgressReporter::ProgressReporter(const Options& options, std::uint64_t total)
    : callback_(options.on_progress ? &options.on_progress : nullptr),
      draw_(options.progress && isatty(STDERR_FILENO) == 1),
      total_(total),
      start_(Clock::now()),
      last_(start_) {}

ProgressReporter::~ProgressReporter() {
  if (line_open_) write_all("\n");
}

std::chrono::milliseconds ProgressReporter::until_due() const {
  return std::max(std::chrono::milliseconds(1),
                  std::chrono::ceil<std::chrono::milliseconds>(last_ + kInterval - Clock::now()));
}

Progress ProgressReporter::at(std::uint64_t done, Clock::time_point now) const {
  const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_);
  const double seconds = std::chrono::duration<double>(elapsed).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  std::optional<std::chrono::nanoseconds> eta;
  if (done == total_)
    eta = std::chrono::nanoseconds::zero();
  else if (rate > 0)
    eta = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(static_cast<double>(total_ - done) / rate));
  return {done, total_, elapsed, rate, eta};
}

bool ProgressReporter::update(std::uint64_t done) {
  const Clock::time_point now = Clock::now();
  if (now - last_ < kInterval) return true;
  last_ = now;
  // A re-run item (after a worker died) commits twice, and a report never goes backwards.
  done_ = std::max(done_, std::min(done, total_));
  try {
    report(at(done_, now), false);
  } catch (...) {
    callback_error_ = std::current_exception();
    callback_ = nullptr;
    return false;
  }
  return true;
}

void ProgressReporter::rethrow_callback_error() const {
  if (callback_error_) std::rethrow_exception(callback_error_);
}

void ProgressReporter::finish() {
  done_ = total_;
  report(at(total_, Clock::now()), true);
}

void ProgressReporter::report(const Progress& p, bool final) {
  if (draw_) {
    // Back to the line's start, the bar, and the rest of the line erased.
    std::string line = "\r";
    line += progress_bar(p);
    line += final ? "\x1b[K\n" : "\x1b[K";
    write_all(line);
    line_open_ = !final;
  }
  if (callback_ != nullptr) (*callback_)(p);
}

}  // namespace forkpool::detail
