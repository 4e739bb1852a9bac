// Helpers shared by the pool tests: what /proc says about processes, descriptors and mappings,
// and a busy wait that stands for real work in a map.
#pragma once

#include <forkpool/forkpool.hpp>

#include <gtest/gtest.h>

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

// EXPECT that string `hay` contains `needle` (GoogleMock's HasSubstr without GoogleMock).
#define EXPECT_CONTAINS(hay, needle)                          \
  EXPECT_NE(std::string(hay).find(needle), std::string::npos) \
      << "\"" << (hay) << "\" does not contain \"" << (needle) << "\""

namespace forkpool {
// How GoogleTest prints a Schedule parameter (found by argument-dependent lookup).
inline void PrintTo(const Schedule& s, std::ostream* os) { *os << s.name(); }
}  // namespace forkpool

namespace forkpool_test {

// A GoogleTest name for a schedule: "dynamic(7)" -> "dynamic_7".
inline std::string schedule_test_name(const forkpool::Schedule& s) {
  std::string name;
  for (char c : s.name()) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  while (!name.empty() && name.back() == '_') name.pop_back();
  return name;
}

// Every kind of schedule, with its defaults and with explicit parameters: the pool tests run
// every map, map_reduce, for_each, recovery, error and statistics test against each of them.
// Test_chunking.cpp checks that every Schedule::Kind is here.
inline const forkpool::Schedule kEverySchedule[] = {forkpool::Schedule::static_blocks(),
                                                    forkpool::Schedule::static_chunked(3),
                                                    forkpool::Schedule::dynamic(1),
                                                    forkpool::Schedule::dynamic(7),
                                                    forkpool::Schedule::guided(),
                                                    forkpool::Schedule::guided(5),
                                                    forkpool::Schedule::trapezoid(),
                                                    forkpool::Schedule::trapezoid(50, 5),
                                                    forkpool::Schedule::factoring(),
                                                    forkpool::Schedule::fixed_size(),
                                                    forkpool::Schedule::adaptive_factoring(),
                                                    forkpool::Schedule::work_stealing(),
                                                    forkpool::Schedule::work_stealing(3),
                                                    forkpool::Schedule::adaptive_stealing(),
                                                    forkpool::Schedule::python(),
                                                    forkpool::Schedule::python(5),
                                                    forkpool::Schedule::automatic()};

// Whether every chunk of `s` is claimed from the shared counter (self-scheduling), from the
// workers' ranges (work stealing), or decided before the map (static).
inline bool counter_schedule(const forkpool::Schedule& s) {
  using K = forkpool::Schedule::Kind;
  switch (s.kind()) {
    case K::dynamic:
    case K::guided:
    case K::trapezoid:
    case K::factoring:
    case K::fixed_size:
    case K::adaptive_factoring:
    case K::python:
      return true;
    default:
      return false;
  }
}
inline bool stealing_schedule(const forkpool::Schedule& s) {
  using K = forkpool::Schedule::Kind;
  return s.kind() == K::work_stealing || s.kind() == K::adaptive_stealing ||
         s.kind() == K::automatic;
}
inline bool static_schedule(const forkpool::Schedule& s) {
  return !counter_schedule(s) && !stealing_schedule(s);
}

// A map whose result is easy to check; returns whether it was right.
inline bool map_works(forkpool::Pool& pool, std::int64_t n = 10000) {
  const auto out = pool.map([](std::int64_t i) { return i * i; }, forkpool::range(n));
  if (out.size() != static_cast<std::size_t>(n)) return false;
  for (std::int64_t k = 0; k < n; ++k)
    if (out[static_cast<std::size_t>(k)] != k * k) return false;
  return true;
}

// Busy-waits for `us` microseconds of wall time (stands for an item's work).
inline void spin_for_us(std::int64_t us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// The fields of /proc/<pid>/stat after the command name: [0] is the state, [1] the ppid, and
// utime/stime are [11]/[12]. Empty if the process does not exist.
inline std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// True while /proc/<pid> exists (a zombie still counts: it has not been reaped).
inline bool process_exists(pid_t pid) { return !stat_fields(pid).empty(); }

// The process state letter ('R', 'S', 'Z', ...), or 0 if it does not exist.
inline char process_state(pid_t pid) {
  const auto f = stat_fields(pid);
  return f.empty() || f[0].empty() ? 0 : f[0][0];
}

// utime + stime of a process, in clock ticks.
inline std::optional<std::uint64_t> cpu_ticks(pid_t pid) {
  const auto f = stat_fields(pid);
  if (f.size() < 13) return std::nullopt;
  return std::stoull(f[11]) + std::stoull(f[12]);
}

// Pids of every process (zombies included) whose parent is `parent`.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  DIR* d = opendir("/proc");
  if (d == nullptr) return children;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || pid <= 0) continue;
    const auto f = stat_fields(static_cast<pid_t>(pid));
    if (f.size() > 1 && std::stol(f[1]) == parent) children.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return children;
}

inline std::size_t child_count() { return children_of(getpid()).size(); }

// Processes (and threads, as RLIMIT_NPROC counts them) whose owner is `uid`.
inline std::size_t processes_of_user(uid_t uid) {
  std::size_t n = 0;
  DIR* d = opendir("/proc");
  if (d == nullptr) return 0;
  while (const dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const std::string task = std::string("/proc/") + e->d_name + "/task";
    DIR* t = opendir(task.c_str());
    if (t == nullptr) continue;
    struct stat st {};
    const bool mine =
        stat((std::string("/proc/") + e->d_name).c_str(), &st) == 0 && st.st_uid == uid;
    while (const dirent* x = readdir(t))
      if (mine && x->d_name[0] != '.') ++n;
    closedir(t);
  }
  closedir(d);
  return n;
}

// Entries of a directory, without "." and ".." (0 if it cannot be read).
inline std::size_t entry_count(const char* directory) {
  std::size_t n = 0;
  DIR* d = opendir(directory);
  if (d == nullptr) return 0;
  while (const dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

// Entries of /proc/self/fd (including the one used to read it, which is the same every time).
inline std::size_t open_fd_count() { return entry_count("/proc/self/fd"); }

// Threads of this process.
inline std::size_t thread_count() { return entry_count("/proc/self/task"); }

inline std::size_t mapping_count() {
  std::ifstream in("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Shared mappings only (a pool's segment is one): lines of /proc/self/maps whose permissions end
// in 's'. Unlike mapping_count(), not disturbed by a sanitizer's allocator mapping memory.
inline std::size_t shared_mapping_count() {
  std::ifstream in("/proc/self/maps");
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    const auto space = line.find(' ');
    if (space != std::string::npos && space + 4 < line.size() && line[space + 4] == 's') ++n;
  }
  return n;
}

// Waits up to `timeout` for `done()` to hold; returns whether it did.
template <class Pred>
bool eventually(Pred done, std::chrono::milliseconds timeout = std::chrono::milliseconds(2000)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    usleep(1000);
  }
  return true;
}

// Runs `body` in a forked child of this (single-threaded) test process, with the child's
// stdout on a pipe; returns the child's exit status and what it wrote.
struct ChildResult {
  int status;          // as from waitpid; -1 if the child had to be killed after the deadline
  std::string output;  // what it (and anything that inherited the pipe) wrote
};

// Runs `body` in a forked child of this (single-threaded) test process and returns its exit
// status and what was written to the pipe whose write end `body` gets. Reading stops at end of
// file (every holder of the write end has closed it or died) or at the deadline.
inline ChildResult run_in_child(const std::function<void(int out_fd)>& body,
                                std::chrono::milliseconds deadline = std::chrono::seconds(20)) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, ""};
  std::fflush(nullptr);  // or the child would write our buffered output a second time
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    body(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::string out;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return {-1, out};
    }
    usleep(1000);
  }
  return {status, out};
}

// Catches the exception `body` throws, as E; fails if it throws nothing or something else.
template <class E, class Body>
std::optional<E> catch_as(Body body) {
  try {
    body();
  } catch (const E& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something else: " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "threw nothing";
  return std::nullopt;
}

// How many times `needle` occurs in `hay`.
inline std::size_t occurrences(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace forkpool_test
