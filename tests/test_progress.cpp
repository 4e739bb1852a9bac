// Options::progress and Options::on_progress: the bar on a terminal (a pseudo-terminal here),
// nothing when stderr is not one, and the callback's guarantees.
#include <forkpool/forkpool.hpp>

#include "progress.hpp"
#include "test_util.hpp"

#include <gtest/gtest.h>

#include <poll.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using forkpool::Options;
using forkpool::Pool;
using forkpool::Progress;
using forkpool::Schedule;
using forkpool_test::map_works;
using forkpool_test::occurrences;
using forkpool_test::spin_for_us;
using namespace std::chrono_literals;

// About 300 ms on two workers: long enough for a few reports.
constexpr std::int64_t kItems = 600;
std::int64_t slow_square(std::int64_t i) {
  spin_for_us(1000);
  return i * i;
}

TEST(ProgressBar, LooksLikeTqdm) {
  EXPECT_EQ(forkpool::detail::progress_bar({450, 1000, 3s, 150.0, 3670ms}),
            " 45%|#############                 | 450/1000 [00:03<00:03, 150.0 items/s]");
  EXPECT_EQ(forkpool::detail::progress_bar({0, 10, 0s, 0.0, std::nullopt}),
            "  0%|                              | 0/10 [00:00<?, 0.0 items/s]");
  EXPECT_EQ(forkpool::detail::progress_bar({10, 10, 3725s, 0.5, 0s}),
            "100%|##############################| 10/10 [1:02:05<00:00, 0.5 items/s]");
}

TEST(OnProgress, IsMonotonicRateLimitedAndEndsAtTheTotal) {
  std::vector<Progress> reports;
  Pool pool(Options{.processes = 2,
                    .schedule = Schedule::dynamic(4),
                    .on_progress = [&reports](const Progress& p) { reports.push_back(p); }});
  const auto start = std::chrono::steady_clock::now();
  const auto out = pool.map(slow_square, forkpool::range(kItems));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(out[kItems - 1], (kItems - 1) * (kItems - 1));
  ASSERT_GE(reports.size(), 2u);  // at least one while it ran, and the final one
  EXPECT_LE(reports.size(), static_cast<std::size_t>(elapsed / 100ms) + 1);
  for (std::size_t k = 0; k < reports.size(); ++k) {
    EXPECT_EQ(reports[k].total, static_cast<std::uint64_t>(kItems));
    EXPECT_LE(reports[k].done, reports[k].total);
    if (k == 0) continue;
    EXPECT_GE(reports[k].done, reports[k - 1].done);
    if (k + 1 < reports.size()) {
      EXPECT_GE(reports[k].elapsed - reports[k - 1].elapsed, 100ms);
    }
  }
  EXPECT_GT(reports.front().done, 0u);
  EXPECT_LT(reports.front().done, static_cast<std::uint64_t>(kItems));
  EXPECT_TRUE(reports.front().eta.has_value());
  EXPECT_GT(reports.front().items_per_second, 0.0);
  EXPECT_EQ(reports.back().done, static_cast<std::uint64_t>(kItems));
  EXPECT_EQ(reports.back().eta, std::chrono::nanoseconds::zero());

  // Every kind of map reports, a fast one only its final report.
  reports.clear();
  EXPECT_EQ(pool.map_reduce([](std::int64_t i) { return i; }, forkpool::range(100), std::int64_t{0},
                            std::plus<>{}),
            4950);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].done, 100u);
  reports.clear();
  pool.for_each(forkpool::range(0), [](std::int64_t) {});
  EXPECT_TRUE(reports.empty());  // an empty map reports nothing
}

TEST(OnProgress, ThatThrowsCancelsTheMapAndReachesTheCaller) {
  Pool pool(Options{.processes = 2, .on_progress = [](const Progress& p) {
                      if (p.done < p.total) throw std::runtime_error("enough");
                    }});
  const auto start = std::chrono::steady_clock::now();
  try {
    static_cast<void>(pool.map(slow_square, forkpool::range(5 * kItems)));
    ADD_FAILURE() << "the map did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "enough");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);  // cancelled, not run to the end
  EXPECT_TRUE(map_works(pool));
}

// Runs a map with Options::progress in a child whose stderr is `fd`.
void map_with_progress_bar(int fd) {
  dup2(fd, STDERR_FILENO);
  Pool pool(Options{.processes = 2, .progress = true});
  const auto out = pool.map(slow_square, forkpool::range(kItems));
  _exit(out[kItems - 1] == (kItems - 1) * (kItems - 1) ? 0 : 1);
}

TEST(ProgressOption, DrawsABarOnATerminal) {
  int master = -1;
  std::fflush(nullptr);
  const auto start = std::chrono::steady_clock::now();
  const pid_t child = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(child, 0);
  if (child == 0) map_with_progress_bar(STDERR_FILENO);
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{master, POLLIN, 0};
    if (poll(&p, 1, 20000) <= 0) break;
    const ssize_t n = read(master, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EIO: every process holding the terminal has closed it
    out.append(buf, static_cast<std::size_t>(n));
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  close(master);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  const std::size_t draws = occurrences(out, "%|");
  EXPECT_GE(draws, 2u) << out;  // a bar while it ran, and the final line
  EXPECT_LE(draws, static_cast<std::size_t>(elapsed / 100ms) + 1) << out;
  // The final line; the terminal turns "\n" into "\r\n".
  EXPECT_CONTAINS(out, "100%|##############################| 600/600 [");
  EXPECT_EQ(out.substr(out.size() - 2), "\r\n") << out;
  EXPECT_EQ(occurrences(out, "\n"), 1u) << out;
}

TEST(ProgressOption, DrawsNothingWhenStderrIsNotATerminal) {
  const auto r = forkpool_test::run_in_child(map_with_progress_bar);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.status;
  EXPECT_EQ(r.output, "");
}

}  // namespace
