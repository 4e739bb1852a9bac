// Pool: forking the workers, handing them jobs, replacing the ones that die, and the pool's
// lifetime. How the items a dead worker lost are found: recovery.hpp.
#include "control.hpp"
#include "dispatcher.hpp"
#include "library_thread.hpp"
#include "progress.hpp"
#include "recovery.hpp"
#include "scheduler.hpp"
#include "tasks.hpp"
#include "wait.hpp"
#include "worker.hpp"

#include <forkpool/forkpool.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>

namespace forkpool {
namespace {

using Clock = std::chrono::steady_clock;

// The parent polls this long for a job to finish before it sleeps (see poll_yielding).
constexpr auto kFinishPoll = std::chrono::microseconds(50);
// Past a map's deadline, workers get this long to stop at a piece boundary before they are killed.
constexpr auto kStopGrace = std::chrono::milliseconds(100);
constexpr unsigned kProcessesPerCpu = 64;
constexpr std::uint64_t kMaxItems = std::uint64_t{1} << 62;
constexpr std::size_t kMaxTrace = std::size_t{1} << 24;  // chunk records per worker
constexpr std::size_t kMaxTaskDeque = std::size_t{1} << 24;
constexpr std::size_t kMinTaskArena = 4096;
constexpr std::size_t kDefaultTaskArena = std::size_t{16} << 20;

std::string describe_exit(int status) {
  if (status < 0) return "exited (its status was taken by someone else)";
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")" +
           (sig == SIGKILL ? " (kill -9, a timeout, or the out-of-memory killer)" : "");
  }
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

std::string items(std::int64_t first, std::int64_t last) {
  return "[" + std::to_string(first) + ", " + std::to_string(last) + ")";
}

// Held by the forking thread around a fork, and released on both sides of it.
//  - stdout and stderr locked: a worker flushes them, and a lock that another thread of the
//    parent held at the fork would stay locked in the child forever (HAZARDS.md 4).
//  - The terminal's signals blocked: a worker ignores them (worker.cpp), but until it has said so
//    it has the parent's dispositions, and a Ctrl-C in that window would kill it. The worker
//    unblocks them once it ignores them.
class ForkGuard {
 public:
  ForkGuard() {
    sigset_t terminal;
    sigemptyset(&terminal);
    for (int sig : {SIGINT, SIGQUIT, SIGHUP}) sigaddset(&terminal, sig);
    pthread_sigmask(SIG_BLOCK, &terminal, &mask_);
    flockfile(stdout);
    flockfile(stderr);
  }
  ~ForkGuard() {
    funlockfile(stderr);
    funlockfile(stdout);
    pthread_sigmask(SIG_SETMASK, &mask_, nullptr);
  }
  ForkGuard(const ForkGuard&) = delete;
  ForkGuard& operator=(const ForkGuard&) = delete;

 private:
  sigset_t mask_;
};

}  // namespace

struct Pool::Impl {
  // A worker that died, as the parent found it.
  struct Death {
    unsigned worker;
    pid_t pid;
    int status;
    bool retired;  // it exited after Options::max_tasks_per_child chunks, losing nothing claimed
  };

  Impl(const Options& o, unsigned processes);
  ~Impl();

  void start_worker(unsigned w);
  void fork_workers();
  void await_initializers(const std::vector<unsigned>& started);
  // What a map could not finish: spans still lost after the retries, and the deaths that lost
  // them; or, for a map_reduce, no spans when the lost items could not be told apart.
  struct Unfinished {
    std::vector<detail::LostSpan> lost;
    std::vector<Death> deaths;
  };
  std::vector<unsigned> run_callable(const detail::JobCallable& callable, std::int64_t first,
                                     std::uint64_t n, Schedule s);
  detail::Dispatcher* existing_dispatcher();
  // A map in two halves, so that a stream (Pool::imap) can read results while its window runs:
  // start_map publishes the map's job; finish_map waits for it and runs the recovery rounds,
  // which with deadline_per_job get Options::timeout each rather than the map's deadline.
  void start_map(const detail::Job& map_job, bool reset_stop);
  Unfinished finish_map(const detail::Job& map_job, bool each_item_once, bool deadline_per_job);
  std::uint32_t publish_job(const detail::Job& job);
  void complete_job(std::uint32_t generation, Clock::time_point deadline);
  Clock::time_point deadline_from_now() const;
  // The pool's mutex, once no stream is open (a stream keeps the pool busy between its calls).
  std::unique_lock<std::mutex> acquire();
  bool finished(std::uint32_t generation) const;
  bool wait_for_job(std::uint32_t generation, Clock::time_point deadline);
  void collect_deaths(std::vector<pollfd>& fds, std::size_t first_pidfd);
  void record_death(unsigned w, int status);
  void replace_dead_workers();
  void check_idle_workers();
  std::uint64_t committed() const;
  [[noreturn]] void throw_stop(std::uint32_t stop) const;
  [[noreturn]] void throw_tasks_lost(const std::vector<Death>& dead,
                                     const detail::Job& map_job) const;
  [[noreturn]] void throw_unfinished(const Unfinished& u, const detail::Job& map_job) const;
  void shut_down();
  void cancel() noexcept;
  void kill_and_reap();
  void start_monitor();
  void wake_monitor();
  void stop_monitor();
  void watch_idle_workers(std::vector<pollfd>& fds);
  void start_statistics();
  void collect_statistics(const detail::Job& map_job, Clock::duration makespan) noexcept;
  // Sets last_stats when a map ends, normally or by an exception.
  struct Statistics {
    Impl& p;
    const detail::Job& job;
    Clock::time_point start;
    ~Statistics() { p.collect_statistics(job, Clock::now() - start); }
  };

  Options options;
  unsigned workers;
  pid_t owner = detail::this_process();
  std::shared_ptr<detail::Segment> segment;
  detail::Control* control = nullptr;
  detail::ChunkRange* ranges = nullptr;
  detail::WorkerSlot* slots = nullptr;
  detail::SharedItemTime* times = nullptr;
  detail::ChunkTrace* trace = nullptr;  // Options::trace_chunks
  MapStats stats;
  detail::ProgressReporter* progress = nullptr;  // the running map's, when it reports progress
  int wake_fd = -1;
  std::vector<pid_t> pids;          // -1: not running (dead, not replaced yet, or reaped)
  std::vector<int> pidfds;          // -1 where pids is
  std::vector<Death> deaths;        // reaped (during a job, or while idle), not replaced yet
  std::atomic<bool> closed{false};  // no more calls: close() or terminate()
  bool stopped = false;             // the workers were told to exit, or killed
  std::mutex mutex;  // one map, close or terminate at a time; guards pids, pidfds, deaths, stopped
  Clock::time_point deadline;        // of the map running
  std::uint32_t map_generation = 0;  // its first job's

  // A stream (Pool::imap) holds the pool from its start to its end, between its own calls too:
  // acquire() waits for it on `idle`, or throws on the stream's own thread.
  bool streaming = false;
  std::thread::id stream_thread;
  std::condition_variable idle;
  // The stream's window running, if window.count > 0.
  detail::Job window{nullptr, nullptr, 0, 0, 1, Schedule::static_blocks(), {}};
  Clock::time_point window_start;

  // A thread that reaps workers dying while the pool is idle (the map's thread does it during a
  // map). It only reaps: replacements are forked by the next call, on the caller's thread, or on
  // the dispatcher's for a call the program queued (a fork from a thread of the library's, at any
  // moment, would make the fork-safety rule unpredictable). None when the thread could not be
  // made (RLIMIT_NPROC counts threads).
  std::unique_ptr<std::thread> monitor;
  std::mutex monitor_mutex;  // for stop_monitor
  int monitor_wake = -1;     // an eventfd: look again (a new worker), or stop
  std::atomic<bool> monitor_stop{false};

  // Runs submit and map_async calls (dispatcher.hpp); made by the first of them.
  std::mutex dispatcher_mutex;
  std::unique_ptr<detail::Dispatcher> dispatcher;
  std::atomic<bool> terminating{false};  // terminate() was called: queued calls do not start
};

Pool::Impl::Impl(const Options& o, unsigned processes)
    : options(o),
      workers(processes),
      segment(std::make_shared<detail::Segment>(o.segment_bytes)),
      pids(processes, -1),
      pidfds(processes, -1) {
  options.processes = processes;
  deaths.reserve(processes);  // a slot dies at most once before it is replaced
  control = new (segment->allocate(sizeof(detail::Control), alignof(detail::Control),
                                   "the pool's control block")) detail::Control(processes);
  ranges =
      new (segment->allocate(sizeof(detail::ChunkRange) * processes, alignof(detail::ChunkRange),
                             "the pool's chunk ranges")) detail::ChunkRange[processes];
  slots =
      new (segment->allocate(sizeof(detail::WorkerSlot) * processes, alignof(detail::WorkerSlot),
                             "the pool's worker slots")) detail::WorkerSlot[processes];
  times = new (segment->allocate(sizeof(detail::SharedItemTime) * processes,
                                 alignof(detail::SharedItemTime), "the pool's item times"))
      detail::SharedItemTime[processes];
  control->times = times;
  control->statistics = options.statistics;
  control->tasks = detail::make_task_pool(
      *segment, processes, options.task_deque_capacity,
      options.task_arena_bytes != 0
          ? options.task_arena_bytes
          : std::min(kDefaultTaskArena, options.segment_bytes / 16 / processes));
  if (options.trace_chunks) {
    control->trace_capacity = static_cast<std::uint32_t>(options.trace_capacity);
    trace = new (segment->allocate(sizeof(detail::ChunkTrace) * processes * options.trace_capacity,
                                   alignof(detail::ChunkTrace), "the pool's chunk trace"))
        detail::ChunkTrace[processes * options.trace_capacity];
  }
  wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0)
    throw std::system_error(errno, std::generic_category(), "forkpool::Pool: eventfd");
}

Pool::Impl::~Impl() {
  dispatcher.reset();
  stop_monitor();
  if (monitor_wake >= 0) ::close(monitor_wake);
  if (wake_fd >= 0) ::close(wake_fd);
  if (trace != nullptr)
    segment->deallocate(trace, sizeof(detail::ChunkTrace) * workers * options.trace_capacity);
  detail::free_task_pool(*segment, control->tasks);
  segment->deallocate(times, sizeof(detail::SharedItemTime) * workers);
  segment->deallocate(slots, sizeof(detail::WorkerSlot) * workers);
  segment->deallocate(ranges, sizeof(detail::ChunkRange) * workers);
  segment->deallocate(control, sizeof(detail::Control));
}

// Forks the worker for slot w; it waits for the next job published after this call.
void Pool::Impl::start_worker(unsigned w) {
  // Buffered output would be written once by each process (HAZARDS.md 5). Only the standard
  // streams, the ones a worker flushes (worker.cpp): fflush(nullptr) would also wait for any
  // FILE that another thread keeps locked.
  std::cout.flush();
  std::clog.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  const detail::WorkerStart start{
      .segment = segment.get(),
      .control = control,
      .ranges = ranges,
      .slots = slots,
      .wake_fd = wake_fd,
      .index = w,
      .parent = owner,
      .die_with_parent = gettid() == owner,
      .generation = control->generation.load(std::memory_order_relaxed),
      .initializer = options.initializer ? &options.initializer : nullptr,
      .max_tasks = options.max_tasks_per_child};
  // Until the new worker has run the initializer, it has not finished the last job.
  slots[w].finished.store(start.generation - 1, std::memory_order_relaxed);
  slots[w].retired.store(0, std::memory_order_relaxed);
  pid_t pid;
  {
    const ForkGuard guard;
    pid = fork();
    if (pid == 0) {
      funlockfile(stderr);
      funlockfile(stdout);
      detail::worker_main(start);
    }
  }
  const int err = errno;
  const int fd = pid > 0 ? open_pidfd(pid) : -1;
  if (fd < 0) {
    const int open_err = errno;
    if (pid > 0) {
      kill(pid, SIGKILL);
      reap(pid);
    }
    throw std::system_error(pid < 0 ? err : open_err, std::generic_category(),
                            pid < 0 ? "fork" : "pidfd_open");
  }
  pids[w] = pid;
  pidfds[w] = fd;
  wake_monitor();  // to watch the new worker too
}

void Pool::Impl::fork_workers() {
  std::vector<unsigned> started;
  for (unsigned w = 0; w < workers; ++w) {
    try {
      start_worker(w);
    } catch (const std::system_error& e) {
      kill_and_reap();
      throw std::system_error(e.code(), "forkpool::Pool: could not start worker " +
                                            std::to_string(w) + " of " + std::to_string(workers) +
                                            " (" + e.what() +
                                            "); the workers already started were stopped");
    }
    started.push_back(w);
  }
  await_initializers(started);
}

// With an Options::initializer: waits until the workers just started have run it (each then
// reports the job of the generation it was forked at finished). One that throws, exits or outlives
// Options::timeout would fail the same way in every replacement, so the pool is terminated.
void Pool::Impl::await_initializers(const std::vector<unsigned>& started) {
  if (!options.initializer) return;
  const std::uint32_t generation = control->generation.load(std::memory_order_relaxed);
  const bool ready = wait_for_job(generation, deadline_from_now());
  const auto death_of = [this](unsigned w) {
    return std::find_if(deaths.begin(), deaths.end(),
                        [w](const Death& d) { return d.worker == w; });
  };
  const auto failed = std::find_if(started.begin(), started.end(),
                                   [&](unsigned w) { return death_of(w) != deaths.end(); });
  if (ready && failed == started.end()) return;
  // Which worker to name: the first whose initializer threw, else the first that died in it,
  // else one still running it at the deadline.
  unsigned w = 0;
  if (const std::uint32_t thrower = control->initializer_failed.load(std::memory_order_relaxed))
    w = thrower - 1;
  else if (failed != started.end())
    w = *failed;
  else
    w = *std::find_if(started.begin(), std::prev(started.end()), [&](unsigned x) {
      return slots[x].finished.load(std::memory_order_acquire) != generation;
    });
  const auto death = death_of(w);
  const pid_t pid = death != deaths.end() ? death->pid : pids[w];
  const bool died = death != deaths.end();
  const int status = died ? death->status : 0;
  deaths.clear();
  closed = true;
  kill_and_reap();  // after which the thrower's message is complete
  std::string what = "forkpool: Options::initializer failed in worker " + std::to_string(w) +
                     " (pid " + std::to_string(pid) + "): ";
  if (control->initializer_failed.load(std::memory_order_relaxed) != 0)
    what += std::string("it threw ") + control->initializer_error.type + ": " +
            control->initializer_error.message;
  else if (died)
    what += "the worker " + describe_exit(status) + " in it";
  else
    what += "it did not finish within Options::timeout";
  throw BrokenPool(what + "; the pool has been terminated");
}

bool Pool::Impl::finished(std::uint32_t generation) const {
  for (unsigned w = 0; w < workers; ++w)
    if (pids[w] > 0 && slots[w].finished.load(std::memory_order_acquire) != generation)
      return false;
  return true;
}

void Pool::Impl::record_death(unsigned w, int status) {
  const bool retired = slots[w].retired.load(std::memory_order_relaxed) != 0;
  deaths.push_back({w, pids[w], status, retired});
  detail::tasks_worker_died(*control, w, retired);
  ::close(pidfds[w]);
  pids[w] = -1;
  pidfds[w] = -1;
}

// The workers whose pidfd poll() found readable have exited: reap them.
void Pool::Impl::collect_deaths(std::vector<pollfd>& fds, std::size_t first_pidfd) {
  for (std::size_t i = first_pidfd; i < fds.size(); ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
    for (unsigned w = 0; w < workers; ++w)
      if (pidfds[w] == fds[i].fd) record_death(w, reap(pids[w]));
  }
}

// Waits until every live worker has finished the job of `generation`, reaping the ones that die.
// False if the deadline came first.
bool Pool::Impl::wait_for_job(std::uint32_t generation, Clock::time_point deadline) {
  if (detail::poll_yielding([&] { return finished(generation); }, kFinishPoll)) return true;
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign(1, {wake_fd, POLLIN, 0});
    for (int fd : pidfds)
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    control->parent_waiting.store(1, std::memory_order_seq_cst);
    if (finished(generation)) break;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    int timeout_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1000));
    if (progress != nullptr)
      timeout_ms = std::min(timeout_ms, static_cast<int>(progress->until_due().count()));
    const int n = poll(fds.data(), fds.size(), timeout_ms);
    control->parent_waiting.store(0, std::memory_order_relaxed);
    std::uint64_t wakes;
    while (read(wake_fd, &wakes, sizeof wakes) > 0) {
    }
    if (n > 0) collect_deaths(fds, 1);
    if (progress != nullptr && !progress->update(committed())) {
      std::uint32_t running = detail::kRunning;  // on_progress threw: stop the map
      control->stop.compare_exchange_strong(running, detail::kCancelled, std::memory_order_relaxed);
    }
    if (finished(generation)) return true;
    if (Clock::now() >= deadline) return false;
  }
  control->parent_waiting.store(0, std::memory_order_relaxed);
  return true;
}

std::uint32_t Pool::Impl::publish_job(const detail::Job& job) {
  control->job = job;
  detail::prepare_schedule(*control, ranges, slots);
  const std::uint32_t generation = control->generation.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (control->sleepers.load(std::memory_order_seq_cst) != 0)
    detail::futex_wake(control->generation);
  return generation;
}

void Pool::Impl::complete_job(std::uint32_t generation, Clock::time_point deadline) {
  if (wait_for_job(generation, deadline)) return;
  // Past the deadline: stop the job; kill the workers that do not stop at a piece boundary.
  std::uint32_t running = detail::kRunning;
  control->stop.compare_exchange_strong(running, detail::kTimedOut, std::memory_order_relaxed);
  if (wait_for_job(generation, Clock::now() + kStopGrace)) return;
  for (unsigned w = 0; w < workers; ++w) {
    if (pids[w] <= 0 || slots[w].finished.load(std::memory_order_acquire) == generation) continue;
    kill(pids[w], SIGKILL);
    record_death(w, reap(pids[w]));
  }
}

std::unique_lock<std::mutex> Pool::Impl::acquire() {
  std::unique_lock lock(mutex);
  if (streaming && stream_thread == std::this_thread::get_id())
    throw std::logic_error(
        "forkpool: this thread is reading a stream (Pool::imap or imap_unordered) of this pool; "
        "the pool serves one call at a time, so this call would wait for the stream forever: "
        "finish or destroy the stream first");
  idle.wait(lock, [this] { return !streaming; });
  return lock;
}

std::uint64_t Pool::Impl::committed() const {
  std::uint64_t sum = 0;
  for (unsigned w = 0; w < workers; ++w)
    sum += detail::commit_count(slots[w].commit.load(std::memory_order_acquire));
  return sum;
}

Clock::time_point Pool::Impl::deadline_from_now() const {
  return options.timeout > std::chrono::nanoseconds::zero()
             ? Clock::now() + std::chrono::duration_cast<Clock::duration>(options.timeout)
             : Clock::time_point::max();
}

void Pool::Impl::start_map(const detail::Job& map_job, bool reset_stop) {
  deadline = deadline_from_now();
  for (unsigned w = 0; w < workers; ++w) slots[w].commit.store(0, std::memory_order_relaxed);
  start_statistics();
  if (reset_stop) control->stop.store(detail::kRunning, std::memory_order_relaxed);
  map_generation = publish_job(map_job);
}

// Finishes a map: its job, then, round after round, jobs for the items dead workers lost, until
// none are lost or they have been run options.retries more times.
Pool::Impl::Unfinished Pool::Impl::finish_map(const detail::Job& map_job, bool each_item_once,
                                              bool deadline_per_job) {
  std::vector<detail::LostSpan> todo{
      {map_job.first, map_job.first + static_cast<std::int64_t>(map_job.count), 0, true}};
  // Rounds that ran items again because a worker died; retirements (max_tasks_per_child) lose
  // only unclaimed work and do not count.
  unsigned retried = 0;
  for (bool first_round = true;; first_round = false) {
    Unfinished u;
    for (const detail::LostSpan& span : todo) {
      // A strided span keeps the map's unit, so that its chunks are the map's chunks.
      const detail::Job job =
          span.stride > 1 ? detail::make_job(map_job.code, map_job.closure, span.first,
                                             static_cast<std::uint64_t>(span.last - span.first),
                                             Schedule::static_chunked(span.chunk), workers,
                                             map_job.unit, span.stride)
                          : detail::make_job(map_job.code, map_job.closure, span.first, span.size(),
                                             map_job.schedule, workers);
      if (first_round)
        complete_job(map_generation, deadline);
      else
        complete_job(publish_job(job), deadline_per_job ? deadline_from_now() : deadline);
      if (!deaths.empty()) {
        std::vector<detail::SlotState> states;
        for (unsigned w = 0; w < workers; ++w)
          states.push_back(detail::read_slot(slots[w], ranges[w], job));
        std::vector<unsigned> dead;
        for (const Death& d : deaths) dead.push_back(d.worker);
        const auto candidates = detail::lost_candidates(
            job, std::uint64_t{detail::counter_next_unit(job.rule, control->counter)} * job.unit,
            states, dead);
        u.lost.insert(u.lost.end(), candidates.begin(), candidates.end());
        u.deaths.insert(u.deaths.end(), deaths.begin(), deaths.end());
        replace_dead_workers();
      }
      if (control->stop.load(std::memory_order_relaxed) != detail::kRunning) break;
    }
    if (const std::uint32_t stop = control->stop.load(std::memory_order_acquire)) {
      if (stop == detail::kTaskLost) throw_tasks_lost(u.deaths, map_job);
      throw_stop(stop);
    }
    if (each_item_once) {
      const std::uint64_t done = committed();
      auto exact =
          done <= map_job.count ? detail::exact_loss(u.lost, map_job.count - done) : std::nullopt;
      if (!exact) return {{}, std::move(u.deaths)};
      u.lost = std::move(*exact);
    }
    if (u.lost.empty()) return u;
    if (std::any_of(u.deaths.begin(), u.deaths.end(), [](const Death& d) { return !d.retired; })) {
      if (retried == options.retries) return u;
      ++retried;
    }
    todo = std::move(u.lost);
  }
}

void Pool::Impl::start_statistics() {
  for (unsigned w = 0; w < workers; ++w) {
    slots[w].tally = {};
    slots[w].traced = 0;
  }
  control->trace = trace;
  control->map_start_nanoseconds =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// After a map, with every worker finished or dead: the tallies they published become last_stats.
void Pool::Impl::collect_statistics(const detail::Job& map_job, Clock::duration makespan) noexcept {
  try {
    MapStats m;
    m.schedule = map_job.schedule;
    m.makespan = std::chrono::duration_cast<std::chrono::nanoseconds>(makespan);
    std::chrono::nanoseconds busiest{0}, total_busy{0};
    for (unsigned w = 0; w < workers; ++w) {
      // A slot's commit count covers every process that ran in it during the map, a worker
      // that died included; its tally, only the jobs its processes finished.
      const detail::WorkerTally& t = slots[w].tally;
      const std::uint64_t items =
          detail::commit_count(slots[w].commit.load(std::memory_order_acquire));
      const std::chrono::nanoseconds busy{t.busy_nanoseconds};
      m.workers.push_back({items, t.chunks, t.steal_attempts, t.steals, busy,
                           std::max(std::chrono::nanoseconds::zero(), m.makespan - busy)});
      m.items += items;
      m.scheduling_operations += t.operations;
      busiest = std::max(busiest, busy);
      total_busy += busy;
      if (trace == nullptr) continue;
      const std::uint32_t traced = slots[w].traced;
      m.chunks_truncated |= t.chunks > traced;
      for (std::uint32_t i = 0; i < traced; ++i) {
        const detail::ChunkTrace& c = trace[std::size_t{w} * options.trace_capacity + i];
        m.chunks.push_back({w, c.first, c.items, std::chrono::nanoseconds(c.start_nanoseconds),
                            std::chrono::nanoseconds(c.nanoseconds)});
      }
    }
    if (total_busy.count() > 0)
      m.imbalance =
          static_cast<double>(busiest.count()) * workers / static_cast<double>(total_busy.count()) -
          1;
    std::sort(m.chunks.begin(), m.chunks.end(),
              [](const ChunkRecord& a, const ChunkRecord& b) { return a.start < b.start; });
    stats = std::move(m);
  } catch (...) {
    stats = MapStats{};  // out of memory: no statistics rather than no result
  }
}

// Forks a replacement for each dead worker, and for any that dies while they run the initializer.
void Pool::Impl::replace_dead_workers() {
  while (!deaths.empty()) {
    std::vector<unsigned> started;
    for (const Death& d : deaths) {
      try {
        start_worker(d.worker);
      } catch (const std::system_error& e) {
        deaths.clear();
        closed = true;
        kill_and_reap();
        throw BrokenPool("forkpool: could not replace a dead worker: worker " +
                         std::to_string(d.worker) + " (" + e.what() +
                         "); the pool has been terminated");
      }
      started.push_back(d.worker);
    }
    deaths.clear();
    await_initializers(started);
  }
}

// Workers that died while the pool was idle (killed from outside): reap and replace them.
void Pool::Impl::check_idle_workers() {
  std::vector<pollfd> fds;
  for (int fd : pidfds)
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  if (poll(fds.data(), fds.size(), 0) > 0) collect_deaths(fds, 0);
  replace_dead_workers();
}

void Pool::Impl::throw_stop(std::uint32_t stop) const {
  switch (stop) {
    case detail::kTaskError: {
      const detail::TaskErrorSlot& e = control->error;
      throw TaskError(e.index, e.type, e.message);
    }
    case detail::kCancelled:
      throw Cancelled("forkpool: the map was cancelled (Pool::cancel())");
    default:
      throw Timeout(
          "forkpool: the map did not finish within Options::timeout (" +
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout).count()) +
          " ms); the workers still running it were killed and replaced");
  }
}

void Pool::Impl::throw_tasks_lost(const std::vector<Death>& dead,
                                  const detail::Job& map_job) const {
  const std::string who = dead.empty() ? "a worker died"
                                       : "worker " + std::to_string(dead.back().worker) + " (pid " +
                                             std::to_string(dead.back().pid) + ") " +
                                             describe_exit(dead.back().status);
  throw BrokenPool("forkpool: " + who +
                   " while the map's tasks were running; tasks are not run again, so the map "
                   "stopped (the dead worker was replaced); map over items " +
                   items(map_job.first, map_job.first + static_cast<std::int64_t>(map_job.count)));
}

void Pool::Impl::throw_unfinished(const Unfinished& u, const detail::Job& map_job) const {
  std::string what = "forkpool: ";
  // A slot may have died more than once in the last round: name a crash rather than a retirement.
  const auto death_of_slot = [&u](unsigned w) {
    const auto crash = std::find_if(u.deaths.rbegin(), u.deaths.rend(),
                                    [w](const Death& d) { return d.worker == w && !d.retired; });
    return crash != u.deaths.rend() ? crash
                                    : std::find_if(u.deaths.rbegin(), u.deaths.rend(),
                                                   [w](const Death& d) { return d.worker == w; });
  };
  const auto death_of = [&death_of_slot](unsigned w) {
    const auto d = death_of_slot(w);
    return "worker " + std::to_string(w) + " (pid " + std::to_string(d->pid) + ") " +
           (d->retired ? std::string("retired (Options::max_tasks_per_child)")
                       : describe_exit(d->status));
  };
  const auto crash =
      std::find_if(u.deaths.rbegin(), u.deaths.rend(), [](const Death& d) { return !d.retired; });
  if (u.lost.empty()) {
    what += death_of(crash != u.deaths.rend() ? crash->worker : u.deaths.back().worker) +
            " during a map_reduce, and the items lost could not be told apart from the ones "
            "finished, so no result is returned";
  } else {
    const auto lost_by_crash =
        std::find_if(u.lost.begin(), u.lost.end(),
                     [&](const detail::LostSpan& l) { return !death_of_slot(l.worker)->retired; });
    const detail::LostSpan& first = lost_by_crash != u.lost.end() ? *lost_by_crash : u.lost.front();
    what += death_of(first.worker) + " while running items " + items(first.first, first.last);
    if (first.stride > 1)
      what += " (one chunk of " + std::to_string(first.chunk) + " items in every " +
              std::to_string(first.stride) + ")";
    if (u.lost.size() > 1) what += " (and " + std::to_string(u.lost.size() - 1) + " more spans)";
    what += "; they had been run " +
            (options.retries == 0 ? "once" : std::to_string(options.retries + 1) + " times") +
            " (Options::retries = " + std::to_string(options.retries) +
            "); the dead workers were replaced";
  }
  throw BrokenPool(what + "; map over items " +
                   items(map_job.first, map_job.first + static_cast<std::int64_t>(map_job.count)));
}

void Pool::Impl::shut_down() {
  closed = true;
  if (stopped) return;
  stopped = true;
  control->shutdown.store(1, std::memory_order_release);
  control->generation.fetch_add(1, std::memory_order_seq_cst);
  detail::futex_wake(control->generation);
}

void Pool::Impl::kill_and_reap() {
  stopped = true;
  for (pid_t pid : pids)
    if (pid > 0) kill(pid, SIGKILL);
  for (unsigned w = 0; w < workers; ++w) {
    if (pids[w] > 0) reap(pids[w]);
    if (pidfds[w] >= 0) ::close(pidfds[w]);
    pids[w] = -1;
    pidfds[w] = -1;
  }
}

void Pool::Impl::start_monitor() {
  monitor_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (monitor_wake < 0) return;
  try {
    // Its poll set is allocated here, at its largest: the monitor itself never allocates, so it
    // never gets a malloc arena of its own.
    std::vector<pollfd> fds;
    fds.reserve(workers + 1);
    monitor = detail::start_library_thread(
        [this, fds = std::move(fds)]() mutable { watch_idle_workers(fds); });
  } catch (const std::system_error&) {
    // Without it, a worker that dies while the pool is idle is reaped by the next call.
  }
}

void Pool::Impl::wake_monitor() {
  if (monitor_wake < 0) return;
  const std::uint64_t one = 1;
  while (write(monitor_wake, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

// Not holding `mutex`: the monitor may be waiting for it.
void Pool::Impl::stop_monitor() {
  const std::lock_guard lock(monitor_mutex);
  if (!monitor) return;
  // In a process forked from the owner, the thread does not exist: forget it.
  if (owner != detail::this_process()) {
    static_cast<void>(monitor.release());
    return;
  }
  monitor_stop = true;
  wake_monitor();
  monitor->join();
  monitor.reset();
}

void Pool::Impl::watch_idle_workers(std::vector<pollfd>& fds) {
  for (;;) {
    {
      const std::lock_guard lock(mutex);
      if (monitor_stop) return;
      for (unsigned w = 0; w < workers; ++w) {
        int status = 0;
        if (pids[w] > 0 && waitpid(pids[w], &status, WNOHANG) == pids[w]) record_death(w, status);
      }
      fds.assign(1, {monitor_wake, POLLIN, 0});
      for (int fd : pidfds)
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    // Woken by a death, by a new worker (wake_monitor), or by a descriptor closed meanwhile (a
    // map reaped its worker: POLLNVAL); the next round, under the mutex, sees the pool as it is.
    poll(fds.data(), fds.size(), -1);
    std::uint64_t wakes;
    while (read(monitor_wake, &wakes, sizeof wakes) > 0) {
    }
  }
}

Pool::Pool() : Pool(Options{}) {}

Pool::Pool(unsigned processes) : Pool(Options{.processes = checked_processes(processes)}) {}

Pool::Pool(Options options) {
  const unsigned n = options.processes == 0 ? cpu_count() : options.processes;
  if (n > max_processes())
    throw std::invalid_argument("forkpool::Pool: processes = " + std::to_string(n) +
                                " exceeds the maximum of " + std::to_string(max_processes()) +
                                " (64 x cpu_count(), and below RLIMIT_NPROC)");
  if (options.timeout < std::chrono::nanoseconds::zero())
    throw std::invalid_argument("forkpool::Pool: Options::timeout must be >= 0 (0 means none)");
  if (!detail::valid_deque_capacity(options.task_deque_capacity) ||
      options.task_deque_capacity > kMaxTaskDeque)
    throw std::invalid_argument(
        "forkpool::Pool: Options::task_deque_capacity must be a power of two in [2, 2^24] (got " +
        std::to_string(options.task_deque_capacity) + ")");
  if (options.task_arena_bytes != 0 && options.task_arena_bytes < kMinTaskArena)
    throw std::invalid_argument("forkpool::Pool: Options::task_arena_bytes must be at least " +
                                std::to_string(kMinTaskArena) + " (got " +
                                std::to_string(options.task_arena_bytes) + ")");
  if (options.trace_chunks && (options.trace_capacity == 0 || options.trace_capacity > kMaxTrace))
    throw std::invalid_argument("forkpool::Pool: Options::trace_capacity must be in [1, " +
                                std::to_string(kMaxTrace) + "] when trace_chunks is set (got " +
                                std::to_string(options.trace_capacity) + ")");
  impl_ = std::make_unique<Impl>(options, n);
  // After impl_ is set: a worker's copy of this Pool must see an owner that is not itself, so
  // that a nested map is reported as such.
  impl_->fork_workers();
  impl_->start_monitor();
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

std::vector<pid_t> Pool::pids() const {
  if (!impl_) return {};
  const auto running = [this] {
    std::vector<pid_t> out;
    for (pid_t pid : impl_->pids)
      if (pid > 0) out.push_back(pid);
    return out;
  };
  // In another process (a worker), this is a copy of the owner's Pool: its mutex may be locked.
  if (impl_->owner != detail::this_process()) return running();
  const auto lock = impl_->acquire();
  if (!impl_->closed) impl_->check_idle_workers();
  return running();
}

const Options& Pool::options() const {
  static const Options moved_from{};
  return impl_ ? impl_->options : moved_from;
}

void Pool::close() {
  if (!impl_) return;
  impl_->closed = true;
  // With a dispatcher, its queue runs first; it then shuts the workers down itself.
  if (detail::Dispatcher* d = impl_->existing_dispatcher()) return d->close();
  const auto lock = impl_->acquire();
  impl_->shut_down();
}

void Pool::join() {
  if (!impl_) return;
  if (!impl_->closed)
    throw std::logic_error(
        "forkpool::Pool::join: the pool is still running; call close() or "
        "terminate() first");
  if (detail::Dispatcher* d = impl_->existing_dispatcher()) d->join();
  impl_->stop_monitor();
  const auto lock = impl_->acquire();
  Impl& p = *impl_;
  for (unsigned w = 0; w < p.workers; ++w) {
    if (p.pids[w] > 0) reap(p.pids[w]);
    if (p.pidfds[w] >= 0) ::close(p.pidfds[w]);
    p.pids[w] = -1;
    p.pidfds[w] = -1;
  }
}

void Pool::terminate() {
  if (!impl_) return;
  impl_->closed = true;
  impl_->terminating = true;
  if (detail::Dispatcher* d = impl_->existing_dispatcher()) {
    d->terminate();
    d->join();
  }
  impl_->stop_monitor();
  const auto lock = impl_->acquire();
  impl_->kill_and_reap();
}

void Pool::cancel() noexcept {
  if (impl_) impl_->cancel();
}

void Pool::Impl::cancel() noexcept {
  std::uint32_t running = detail::kRunning;
  control->stop.compare_exchange_strong(running, detail::kCancelled, std::memory_order_relaxed);
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

MapStats Pool::last_stats() const {
  if (!impl_) return {};
  const auto lock = impl_->acquire();
  return impl_->stats;
}

std::vector<unsigned> Pool::run_job(const detail::JobCallable& callable, Range r, Schedule s) {
  const std::uint64_t n = count(r);
  const auto lock = impl_->acquire();
  if (impl_->closed) throw PoolClosed("forkpool: the pool is closed (close() or terminate())");
  return impl_->run_callable(callable, r.first, n, s);
}

// Under `mutex`, with the workers running.
std::vector<unsigned> Pool::Impl::run_callable(const detail::JobCallable& callable,
                                               std::int64_t first, std::uint64_t n, Schedule s) {
  Impl& p = *this;
  if (n == 0) {
    p.stats = MapStats{};
    p.stats.schedule = s;
    p.stats.workers.resize(p.workers);
    return std::vector<unsigned>(p.workers, 0);
  }
  p.check_idle_workers();
  detail::ProgressReporter progress(p.options, n);
  const struct ShowProgress {
    Impl& p;
    ~ShowProgress() { p.progress = nullptr; }
  } show_progress{p};
  if (progress.active()) p.progress = &progress;

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

  const detail::Job job = detail::make_job(callable.code, closure, first, n, s, p.workers);
  const Impl::Statistics statistics{p, job, Clock::now()};
  Impl::Unfinished u;
  try {
    p.start_map(job, true);
    u = p.finish_map(job, callable.each_item_once, false);
  } catch (const Cancelled&) {
    progress.rethrow_callback_error();
    throw;
  }
  if (!u.lost.empty() || (!u.deaths.empty() && callable.each_item_once && p.committed() != n))
    p.throw_unfinished(u, job);
  progress.finish();
  std::vector<unsigned> current;
  if (callable.each_item_once)
    for (unsigned w = 0; w < p.workers; ++w)
      current.push_back(detail::commit_slot(p.slots[w].commit.load(std::memory_order_acquire)));
  return current;
}

detail::Dispatcher* Pool::Impl::existing_dispatcher() {
  const std::lock_guard lock(dispatcher_mutex);
  return dispatcher.get();
}

detail::Dispatcher& Pool::dispatcher() {
  check_usable();
  Impl& p = *impl_;
  const std::lock_guard lock(p.dispatcher_mutex);
  // close() sets `closed` before it looks for a dispatcher: one made after that would never run.
  if (p.closed) throw PoolClosed("forkpool: the pool is closed (close() or terminate())");
  if (!p.dispatcher) {
    detail::Dispatcher::Host host{
        .run =
            [&p](const detail::JobCallable& callable, std::int64_t first, std::int64_t last,
                 Schedule s) {
              const auto lock = p.acquire();
              if (p.stopped || p.terminating)
                throw PoolClosed("forkpool: the pool was terminated before this call ran");
              p.run_callable(callable, first, static_cast<std::uint64_t>(last - first), s);
            },
        .shut_down =
            [&p] {
              const auto lock = p.acquire();
              p.shut_down();
            },
        .cancel = [&p] { p.cancel(); }};
    p.dispatcher = std::make_unique<detail::Dispatcher>(std::move(host), p.segment);
  }
  return *p.dispatcher;
}

// A stream (detail/stream.hpp) runs one map per window: open_stream takes the pool, each window
// is started and finished by separate calls, and close_stream gives the pool back.
void Pool::open_stream() {
  check_usable();
  Impl& p = *impl_;
  const auto lock = p.acquire();
  if (p.closed) throw PoolClosed("forkpool: the pool is closed (close() or terminate())");
  p.streaming = true;
  p.stream_thread = std::this_thread::get_id();
  p.window.count = 0;
}

void Pool::close_stream() noexcept {
  Impl& p = *impl_;
  {
    const std::lock_guard lock(p.mutex);
    if (p.window.count > 0) {
      // Abandoned (the stream was destroyed before its end): stop the window and wait for it.
      std::uint32_t running = detail::kRunning;
      p.control->stop.compare_exchange_strong(running, detail::kCancelled,
                                              std::memory_order_relaxed);
      try {
        p.finish_map(p.window, false, true);
      } catch (...) {
        // Nobody is left to report it to; a BrokenPool has terminated the pool already.
      }
      p.window.count = 0;
    }
    p.streaming = false;
  }
  p.idle.notify_all();
}

void Pool::start_window(const detail::ClosureCode* code, const void* closure, Range r, Schedule s,
                        bool reset_stop) {
  Impl& p = *impl_;
  const std::lock_guard lock(p.mutex);
  p.check_idle_workers();
  // A cancel() between two windows stops the stream.
  if (const std::uint32_t stop = p.control->stop.load(std::memory_order_relaxed);
      !reset_stop && stop)
    p.throw_stop(stop);
  p.window = detail::make_job(code, closure, r.first, static_cast<std::uint64_t>(r.last - r.first),
                              s, p.workers);
  p.window_start = Clock::now();
  p.start_map(p.window, reset_stop);
}

bool Pool::window_needs_finish() {
  Impl& p = *impl_;
  const std::lock_guard lock(p.mutex);
  if (p.control->stop.load(std::memory_order_relaxed) != detail::kRunning || !p.deaths.empty() ||
      Clock::now() >= p.deadline)
    return true;
  std::vector<pollfd> fds;
  for (int fd : p.pidfds)
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  return poll(fds.data(), fds.size(), 0) > 0 || p.finished(p.map_generation);
}

void Pool::finish_window() {
  Impl& p = *impl_;
  const std::lock_guard lock(p.mutex);
  const detail::Job job = p.window;
  p.window.count = 0;
  const Impl::Statistics statistics{p, job, p.window_start};
  const Impl::Unfinished u = p.finish_map(job, false, true);
  if (!u.lost.empty()) p.throw_unfinished(u, job);
}

}  // namespace forkpool
