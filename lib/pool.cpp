// Pool: forking the workers, handing them jobs, and the pool's lifetime.
#include "control.hpp"
#include "scheduler.hpp"
#include "wait.hpp"
#include "worker.hpp"

#include <forkpool/forkpool.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <new>
#include <string>
#include <system_error>

namespace forkpool {
namespace {

// The parent polls this long for a map to finish before it sleeps (see poll_yielding).
constexpr auto kFinishPoll = std::chrono::microseconds(50);
// While it sleeps on a map, the parent checks this often that no worker has died.
constexpr auto kLivenessCheck = std::chrono::milliseconds(50);
constexpr unsigned kProcessesPerCpu = 64;
constexpr std::uint64_t kMaxItems = std::uint64_t{1} << 62;

std::string describe_exit(int status) {
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "stopped";
}

// Reaps `pid`; the status, or -1 if it was already reaped (SIGCHLD set to SIG_IGN reaps early).
int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

// glibc 2.36's <sys/pidfd.h> declares pidfd_open without C linkage; call the kernel directly.
int open_pidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

unsigned checked_processes(unsigned processes) {
  if (processes == 0)
    throw std::invalid_argument(
        "forkpool::Pool: processes must be at least 1 (got 0); Pool() uses cpu_count()");
  return processes;
}

}  // namespace

struct Pool::Impl {
  Impl(const Options& o, unsigned processes);
  ~Impl();

  void fork_workers();
  void publish(const detail::Job& job);
  void wait_until_done();
  void check_workers_alive();
  void shut_down();
  void kill_and_reap();

  Options options;
  unsigned workers;
  pid_t owner = detail::this_process();
  std::shared_ptr<detail::Segment> segment;
  detail::Control* control = nullptr;
  detail::ChunkRange* ranges = nullptr;
  std::vector<pid_t> pids;
  std::vector<int> pidfds;
  std::atomic<bool> closed{false};
  std::mutex mutex;  // one map, close or terminate at a time
};

Pool::Impl::Impl(const Options& o, unsigned processes)
    : options(o), workers(processes), segment(std::make_shared<detail::Segment>(o.segment_bytes)) {
  options.processes = processes;
  control = new (segment->allocate(sizeof(detail::Control), alignof(detail::Control),
                                   "the pool's control block")) detail::Control(processes);
  ranges =
      new (segment->allocate(sizeof(detail::ChunkRange) * processes, alignof(detail::ChunkRange),
                             "the pool's chunk ranges")) detail::ChunkRange[processes];
}

Pool::Impl::~Impl() {
  segment->deallocate(ranges, sizeof(detail::ChunkRange) * workers);
  segment->deallocate(control, sizeof(detail::Control));
}

void Pool::Impl::fork_workers() {
  // Buffered output would be written once by each process (HAZARDS.md 5).
  std::cout.flush();
  std::clog.flush();
  std::fflush(nullptr);
  const detail::WorkerStart base{segment.get(),
                                 control,
                                 ranges,
                                 0,
                                 owner,
                                 gettid() == owner,
                                 control->generation.load(std::memory_order_relaxed)};
  pids.reserve(workers);
  pidfds.reserve(workers);
  for (unsigned w = 0; w < workers; ++w) {
    const pid_t pid = fork();
    if (pid == 0) {
      detail::WorkerStart start = base;
      start.index = w;
      detail::worker_main(start);
    }
    const int fd = pid > 0 ? open_pidfd(pid) : -1;
    if (pid > 0) pids.push_back(pid);
    if (fd < 0) {
      const int err = errno;
      kill_and_reap();
      throw std::system_error(err, std::generic_category(),
                              "forkpool::Pool: could not start worker " + std::to_string(w) +
                                  " of " + std::to_string(workers) +
                                  (pid < 0 ? " (fork)" : " (pidfd_open)") +
                                  "; the workers already started were stopped");
    }
    pidfds.push_back(fd);
  }
}

void Pool::Impl::publish(const detail::Job& job) {
  control->job = job;
  control->done.store(0, std::memory_order_relaxed);
  control->cancelled.store(0, std::memory_order_relaxed);
  detail::prepare_schedule(*control, ranges);
  control->generation.fetch_add(1, std::memory_order_seq_cst);
  if (control->sleepers.load(std::memory_order_seq_cst) != 0)
    detail::futex_wake(control->generation);
}

void Pool::Impl::wait_until_done() {
  const auto finished = [this] { return control->done.load(std::memory_order_acquire) == workers; };
  if (detail::poll_yielding(finished, kFinishPoll)) return;
  for (;;) {
    const std::uint32_t d = control->done.load(std::memory_order_acquire);
    if (d == workers) return;
    if (!detail::futex_wait(control->done, d, kLivenessCheck)) check_workers_alive();
  }
}

void Pool::Impl::check_workers_alive() {
  std::vector<pollfd> fds(workers);
  for (unsigned w = 0; w < workers; ++w) fds[w] = {pidfds[w], POLLIN, 0};
  if (poll(fds.data(), fds.size(), 0) <= 0) return;
  for (unsigned w = 0; w < workers; ++w) {
    if (!(fds[w].revents & POLLIN)) continue;
    const pid_t pid = pids[w];
    const int status = reap(pid);
    pids[w] = -1;
    closed = true;
    kill_and_reap();
    throw BrokenPool("forkpool: worker " + std::to_string(w) + " (pid " + std::to_string(pid) +
                     ") " + (status < 0 ? "exited" : describe_exit(status)) +
                     " during a map; the pool has been terminated");
  }
}

void Pool::Impl::shut_down() {
  if (closed) return;
  closed = true;
  control->shutdown.store(1, std::memory_order_release);
  control->generation.fetch_add(1, std::memory_order_seq_cst);
  detail::futex_wake(control->generation);
}

void Pool::Impl::kill_and_reap() {
  for (pid_t pid : pids)
    if (pid > 0) kill(pid, SIGKILL);
  for (pid_t& pid : pids) {
    if (pid > 0) reap(pid);
    pid = -1;
  }
  for (int fd : pidfds) ::close(fd);
  pidfds.clear();
}

Pool::Pool() : Pool(Options{}) {}

Pool::Pool(unsigned processes) : Pool(Options{.processes = checked_processes(processes)}) {}

Pool::Pool(Options options) {
  const unsigned n = options.processes == 0 ? cpu_count() : options.processes;
  if (n > max_processes())
    throw std::invalid_argument("forkpool::Pool: processes = " + std::to_string(n) +
                                " exceeds the maximum of " + std::to_string(max_processes()) +
                                " (64 x cpu_count(), and below RLIMIT_NPROC)");
  impl_ = std::make_unique<Impl>(options, n);
  // After impl_ is set: a worker's copy of this Pool must see an owner that is not itself, so
  // that a nested map is reported as such.
  impl_->fork_workers();
}

Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&& other) noexcept {
  if (this != &other) {
    if (impl_) {
      close();
      join();
    }
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Pool::~Pool() {
  if (!impl_ || impl_->owner != detail::this_process()) return;
  close();
  join();
}

unsigned Pool::max_processes() {
  unsigned limit = kProcessesPerCpu * cpu_count();
  rlimit r{};
  if (getrlimit(RLIMIT_NPROC, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
    limit = static_cast<unsigned>(std::min<rlim_t>(limit, r.rlim_cur > 1 ? r.rlim_cur - 1 : 1));
  return limit;
}

unsigned Pool::size() const { return impl_ ? impl_->workers : 0; }

std::vector<pid_t> Pool::pids() const { return impl_ ? impl_->pids : std::vector<pid_t>{}; }

const Options& Pool::options() const {
  static const Options moved_from{};
  return impl_ ? impl_->options : moved_from;
}

void Pool::close() {
  if (!impl_) return;
  const std::lock_guard lock(impl_->mutex);
  impl_->shut_down();
}

void Pool::join() {
  if (!impl_) return;
  const std::lock_guard lock(impl_->mutex);
  if (!impl_->closed)
    throw std::logic_error(
        "forkpool::Pool::join: the pool is still running; call close() or "
        "terminate() first");
  for (pid_t& pid : impl_->pids) {
    if (pid > 0) reap(pid);
    pid = -1;
  }
  for (int fd : impl_->pidfds) ::close(fd);
  impl_->pidfds.clear();
}

void Pool::terminate() {
  if (!impl_) return;
  const std::lock_guard lock(impl_->mutex);
  impl_->closed = true;
  impl_->kill_and_reap();
}

void Pool::check_usable() const {
  if (!impl_) throw PoolClosed("forkpool: this Pool was moved from");
  if (impl_->owner != detail::this_process())
    throw std::logic_error(
        "forkpool: a Pool can only be used by the process that created it; maps inside a "
        "worker (nested maps) are not supported");
  if (impl_->closed) throw PoolClosed("forkpool: the pool is closed (close() or terminate())");
}

std::size_t Pool::count(Range r) const {
  check_usable();
  if (r.first > r.last)
    throw std::invalid_argument("forkpool::Pool: range [" + std::to_string(r.first) + ", " +
                                std::to_string(r.last) + ") has first > last");
  const std::uint64_t n = static_cast<std::uint64_t>(r.last) - static_cast<std::uint64_t>(r.first);
  if (n >= kMaxItems)
    throw std::invalid_argument("forkpool::Pool: range [" + std::to_string(r.first) + ", " +
                                std::to_string(r.last) + ") has " + std::to_string(n) +
                                " items; at most 2^62 - 1 are supported");
  return n;
}

void Pool::check_array_size(std::size_t n, std::size_t element_size, const char* what) const {
  if (element_size != 0 && n > impl_->segment->size() / element_size)
    throw SegmentFull("forkpool: the shared segment cannot hold " + std::string(what) + ": " +
                      std::to_string(n) + " elements of " + std::to_string(element_size) +
                      " bytes need more than its " + std::to_string(impl_->segment->size()) +
                      " bytes; raise Options::segment_bytes");
}

const std::shared_ptr<detail::Segment>& Pool::segment() const { return impl_->segment; }

void Pool::run_job(const detail::JobCallable& callable, Range r, Schedule s) {
  const std::uint64_t n = count(r);
  if (n == 0) return;
  Impl& p = *impl_;
  const std::lock_guard lock(p.mutex);
  if (p.closed) throw PoolClosed("forkpool: the pool is closed (close() or terminate())");

  void* closure = p.control->closure;
  void* allocated = nullptr;
  if (callable.size > detail::kInlineClosureBytes || callable.align > 64)
    closure = allocated = p.segment->allocate(callable.size, callable.align, "the map's callable");
  const struct Release {
    detail::Segment& segment;
    void* block;
    std::size_t bytes;
    ~Release() { segment.deallocate(block, bytes); }
  } release{*p.segment, allocated, callable.size};
  std::memcpy(closure, callable.closure, callable.size);

  p.publish(detail::make_job(callable, closure, r.first, n, s, p.workers));
  p.wait_until_done();
  if (p.control->cancelled.load(std::memory_order_acquire)) {
    const detail::TaskErrorSlot& e = p.control->error;
    throw TaskError(e.index, e.type, e.message);
  }
}

}  // namespace forkpool
