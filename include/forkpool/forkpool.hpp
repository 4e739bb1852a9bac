// forkpool: Python's multiprocessing.Pool for C++, over one shared-memory segment.
//
//   forkpool::Pool pool;                                   // forks cpu_count() workers, once
//   auto squares = pool.map([](std::int64_t x) { return x * x; }, forkpool::range(1, 5001));
//   auto total = pool.map_reduce([](std::int64_t x) { return x * x; }, forkpool::range(1, 5001),
//                                std::int64_t{0}, std::plus<>{});
//   forkpool::Future<std::int64_t> f = pool.submit([](std::int64_t x) { return x * x; }, 7);
//
// The workers are processes forked when the Pool is built. They share one anonymous mapping made
// before the fork: the job, the chunk queues, the per-worker partial results and the result
// arrays all live there, so a map moves no bytes through pipes and serialises nothing.
//
// What crosses to the workers, and the rules that follow from it:
//  - The callable is copied as bytes into the segment and run in the worker through a function
//    instantiated for its type (every worker runs this same binary). It must be trivially
//    copyable: a function pointer, or a lambda capturing trivially copyable values or pointers.
//    Anything else (a lambda capturing a std::vector or std::string by value) is a compile error.
//  - A worker sees the parent's memory as it was when the Pool was built (copy-on-write). What
//    the parent writes later is invisible to it, unless it lives in the segment: put such data in
//    a SharedArray (Pool::shared_array), or build the Pool after the data is ready.
//  - Map inputs are trivially copyable; inputs that are not in the segment yet are copied into it
//    once per map. Trivially copyable results are written by the workers straight into the
//    SharedArray that map returns; std::string, std::vector<T> and other results with a
//    ResultCodec are encoded into the segment and come back as a std::vector<R>.
#pragma once

#include <forkpool/detail/async.hpp>
#include <forkpool/detail/closures.hpp>
#include <forkpool/detail/encoded_results.hpp>
#include <forkpool/detail/segment.hpp>
#include <forkpool/future.hpp>
#include <forkpool/imap.hpp>
#include <forkpool/progress.hpp>
#include <forkpool/result_codec.hpp>
#include <forkpool/schedule.hpp>
#include <forkpool/stats.hpp>
#include <forkpool/tasks.hpp>

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace forkpool {
namespace detail {
class Dispatcher;
}

// CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota when one is set.
unsigned cpu_count();

// The pool worker this code runs in: index 0..P-1 inside a worker, -1 in any other process.
struct ProcessInfo {
  pid_t pid;
  int index;
};
ProcessInfo current_process();

// A half-open range of indices [first, last), like Python's range(first, last).
struct Range {
  std::int64_t first;
  std::int64_t last;
};
Range range(std::int64_t first, std::int64_t last);  // throws std::invalid_argument if first > last
Range range(std::int64_t last);                      // [0, last)

// Run-time failures of a map; after each of them the pool is still usable unless said otherwise.
//  TaskError    f threw in a worker; what() names the item index, the exception's type and its
//               message. The rest of the map is cancelled.
//  BrokenPool   workers died and the items they were running could not be finished: they died
//               running the same items more than Options::retries times, or a worker could not
//               be started or its Options::initializer failed (then the pool is terminated).
//               what() names the pid, the signal, exit status or exception, and the items.
//  Timeout      the map ran past Options::timeout; workers still in it were killed and replaced.
//  Cancelled    Pool::cancel() was called while the map ran.
//  SegmentFull  the shared segment cannot hold what a map needs; what() says how much it needed.
//  FutureTimeout  Future::get(timeout) ran out: the task keeps running, the future stays valid.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct TaskError : Error {
  TaskError(std::int64_t index, std::string type, std::string message);
  TaskError(std::string type, std::string message);  // a submitted task's: index() is -1
  std::int64_t index() const noexcept { return index_; }
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::int64_t index_;
  std::string type_;
  std::string message_;
};
struct BrokenPool : Error {
  using Error::Error;
};
struct Timeout : Error {
  using Error::Error;
};
struct Cancelled : Error {
  using Error::Error;
};
struct SegmentFull : Error {
  using Error::Error;
};
struct FutureTimeout : Error {
  using Error::Error;
};
// The pool was used after close() or terminate() (or after being moved from).
struct PoolClosed : std::logic_error {
  using std::logic_error::logic_error;
};

struct Options {
  unsigned processes = 0;  // 0 means cpu_count()
  Schedule schedule = Schedule::work_stealing();
  // Bytes of address space reserved for the shared segment. Pages are committed only when
  // touched and given back when freed, so a large reservation costs nothing up front.
  std::size_t segment_bytes = std::size_t{8} << 30;
  // How many times the items a worker was running when it died (a crash, a kill, the OOM killer)
  // are run again on another worker before the map throws BrokenPool. Dead workers are always
  // replaced. map results and map_reduce totals are exact either way: a re-run item overwrites
  // its result, and a map_reduce counts each item once. f may run more than once for an item
  // whose worker died, so for_each side effects may repeat (under dynamic, fixed_size and
  // python, when three or more workers die at the same instant, for items near theirs too, and a
  // map_reduce then throws BrokenPool: see the README's "When workers die").
  unsigned retries = 1;
  // A deadline for each map, for_each and map_reduce: past it the call throws Timeout, and the
  // workers still running it are killed and replaced. Zero means none.
  std::chrono::nanoseconds timeout{0};
  // Time each worker's share of every map for Pool::last_stats() (two clock reads per worker and
  // map). The item, chunk and steal counts are kept either way.
  bool statistics = true;
  // Record every chunk each worker runs (its items and when it ran, two clock reads a chunk), up
  // to trace_capacity chunks per worker, in last_stats().chunks.
  bool trace_chunks = false;
  std::size_t trace_capacity = 4096;
  // Run once in every worker process after it is forked (replacements included), before its first
  // chunk: to open a per-process resource, seed a generator, ... Any callable: the worker is a fork
  // of the parent. The pool's constructor (or the call that replaced the worker) waits for it; if
  // it throws, exits or outlives Options::timeout, that call throws BrokenPool naming the worker
  // and the exception or exit status, and the pool is terminated.
  std::function<void()> initializer{};
  // A worker process that has run this many chunks (Python's tasks) exits at its next chunk
  // boundary and is replaced, the cure for code that leaks; 0 means no limit. Its unclaimed work is
  // run by the others or by its replacement; it never counts against retries.
  unsigned max_tasks_per_child = 0;
  // Draw a progress bar on stderr while a map runs (items, percent, rate, ETA; at most 10 redraws
  // a second, and a final line), when stderr is a terminal; nothing otherwise.
  bool progress = false;
  // Called with the map's progress at most 10 times a second while it runs, on the thread that
  // runs it, and once with done == total when it succeeds. If it throws, the map is cancelled and
  // the exception reaches the caller. It may call Pool::cancel(), no other member of the pool.
  std::function<void(const Progress&)> on_progress{};
  // Tasks (forkpool::spawn, TaskGroup): each worker's deque holds this many tasks (a power of two,
  // 2 to 2^24), and each worker's arena in the segment this many bytes of tasks waiting or
  // running (at least 4096; 0 means 16 MiB, or a sixteenth of segment_bytes shared by the
  // workers if that is less). A spawn that finds either full runs its task at once instead.
  std::size_t task_deque_capacity = 4096;
  std::size_t task_arena_bytes = 0;
};

// An array of trivially copyable T in a pool's shared segment: the workers see it at the same
// address, including everything the parent writes into it after the fork. Map results come back
// as one; Pool::shared_array makes one for inputs or tables that the parent fills after the fork.
// It keeps the segment alive, so it may outlive its Pool. Movable, not copyable (to_vector copies).
template <class T>
class SharedArray {
  static_assert(std::is_trivially_copyable_v<T>,
                "forkpool: a SharedArray element (a map result or input) must be trivially "
                "copyable, because it lives in shared memory and is copied as bytes");

 public:
  SharedArray() = default;
  SharedArray(SharedArray&& other) noexcept { swap(other); }
  SharedArray& operator=(SharedArray&& other) noexcept {
    SharedArray(std::move(other)).swap(*this);
    return *this;
  }
  ~SharedArray() {
    if (segment_) segment_->deallocate(data_, size_ * sizeof(T));
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }
  std::vector<T> to_vector() const { return std::vector<T>(begin(), end()); }
  operator std::vector<T>() const { return to_vector(); }

 private:
  friend class Pool;
  SharedArray(std::shared_ptr<detail::Segment> segment, std::size_t size, const char* what)
      : segment_(std::move(segment)),
        data_(static_cast<T*>(segment_->allocate(size * sizeof(T), alignof(T), what))),
        size_(size) {}
  void swap(SharedArray& other) noexcept {
    std::swap(segment_, other.segment_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }

  std::shared_ptr<detail::Segment> segment_;
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// A contiguous input for map: std::vector, std::span, SharedArray, std::array, ...
template <class In>
concept ContiguousInput = std::ranges::contiguous_range<const In> &&
    std::ranges::sized_range<const In> && !std::same_as<In, Range>;

template <class In>
using InputElement = std::remove_cv_t<std::ranges::range_value_t<const In>>;

// An input for imap and imap_unordered: a Range, or any input range of trivially copyable items
// (read lazily, as the stream advances).
template <class In>
concept StreamInput = std::same_as<std::remove_cvref_t<In>, Range> || detail::StreamableRange<In>;

// A pool of worker processes. Calls from several threads of the parent are serialised, one map at
// a time. A pool belongs to the process that built it: a map called inside one of its workers
// throws std::logic_error, which reaches the parent as a TaskError (nested maps are not supported).
class Pool {
 public:
  Pool();
  explicit Pool(unsigned processes);  // throws std::invalid_argument for 0 or too many
  explicit Pool(Options options);
  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  ~Pool();  // close() then join()

  // The maximum number of workers one Pool may have: 64 x cpu_count(), and below RLIMIT_NPROC.
  static unsigned max_processes();

  unsigned size() const;
  // The running workers' pids, by worker index: a worker that died while the pool was idle (it is
  // reaped at once) is replaced first (BrokenPool if its Options::initializer fails). Once the pool
  // is closed, only the workers not reaped yet; none after join() or terminate(). Waits for a map
  // running on another thread.
  std::vector<pid_t> pids() const;
  const Options& options() const;

  // results[k] = f(r.first + k), in index order: a SharedArray<R> when R is trivially copyable,
  // else a std::vector<R> decoded from the bytes the workers wrote (forkpool/result_codec.hpp).
  template <class F>
  auto map(F f, Range r) {
    return map(f, r, options().schedule);
  }
  template <class F>
  auto map(F f, Range r, Schedule s) {
    using R = detail::RangeResult<F>;
    if constexpr (!std::is_trivially_copyable_v<R>) {
      return map_encoded<R>(f, detail::RangeItems{r.first}, r, s);
    } else {
      auto out = allocate<R>(count(r), "the results of map");
      run(detail::RangeMap<F, R>{f, out.data(), r.first}, r, s);
      return ready_to_read(std::move(out));
    }
  }

  // results[k] = f(in[k]), in input order; the same result types as above.
  template <class F, ContiguousInput In>
  auto map(F f, const In& in) {
    return map(f, in, options().schedule);
  }
  template <class F, ContiguousInput In>
  auto map(F f, const In& in, Schedule s) {
    using T = InputElement<In>;
    using R = detail::SpanResult<F, T>;
    const SharedArray<T> copy = input_in_segment<T>(std::span<const T>(in));
    const T* items = items_in_segment(copy, in);
    if constexpr (!std::is_trivially_copyable_v<R>) {
      return map_encoded<R>(f, detail::SpanItems<T>{items}, input_range(in), s);
    } else {
      auto out = allocate<R>(std::ranges::size(in), "the results of map");
      run(detail::SpanMap<F, T, R>{f, items, out.data()}, input_range(in), s);
      return ready_to_read(std::move(out));
    }
  }

  // results[i] = f(a[i], b[i], ...) for inputs of equal length (std::invalid_argument otherwise),
  // in input order; Python's starmap over zip(a, b, ...). Inputs are copied as map's are.
  template <class F, ContiguousInput... Ins>
  requires(sizeof...(Ins) > 0) auto starmap(F f, const Ins&... ins) {
    const std::size_t n =
        detail::equal_lengths({static_cast<std::size_t>(std::ranges::size(ins))...});
    const std::tuple copies{
        input_in_segment<InputElement<Ins>>(std::span<const InputElement<Ins>>(ins))...};
    return std::apply(
        [&](const auto&... copy) {
          return map(detail::zip_items(f, items_in_segment(copy, ins)...),
                     Range{0, static_cast<std::int64_t>(n)});
        },
        copies);
  }

  // Python's apply_async: f(args...) runs in a worker, after the calls queued before it; the
  // future gives its result or its exception (future.hpp). f, args and the result are trivially
  // copyable (the result may be void). Submits queued together run as one map, in parallel.
  template <class F, class... Args>
  auto submit(F f, Args... args) {
    using R = detail::TaskResult<F, Args...>;
    detail::FutureValue<R> value;
    void* result = nullptr;
    if constexpr (!std::is_void_v<R>) {
      value.slot = std::make_shared<SharedArray<R>>(allocate<R>(1, "the result of a task"));
      result = value.slot->data();
    }
    detail::AsyncOp op = detail::task_op<R>(detail::bind_task(f, args...), result);
    if constexpr (!std::is_void_v<R>) op.output = value.slot;
    auto done = enqueue(std::move(op));
    return Future<R>(std::move(done), std::move(value));
  }
  template <class F, class... Args>
  auto apply_async(F f, Args... args) {
    return submit(f, args...);
  }
  // Python's apply: submit(f, args...).get().
  template <class F, class... Args>
  auto apply(F f, Args... args) {
    return submit(f, args...).get();
  }

  // map, run by the pool's dispatcher thread after the calls queued before it: the future gives
  // the SharedArray that map would return. An input not in the segment is copied now; one that
  // is (a SharedArray) is read where it is, so it must stay alive until the future is ready.
  template <class F>
  auto map_async(F f, Range r) {
    return map_async(f, r, options().schedule);
  }
  template <class F>
  auto map_async(F f, Range r, Schedule s) {
    using R = detail::RangeResult<F>;
    auto out = allocate<R>(count(r), "the results of map");
    const detail::RangeMap<F, R> closure{f, out.data(), r.first};
    return map_future(closure, r, s, std::move(out), nullptr);
  }
  template <class F, ContiguousInput In>
  auto map_async(F f, const In& in) {
    return map_async(f, in, options().schedule);
  }
  template <class F, ContiguousInput In>
  auto map_async(F f, const In& in, Schedule s) {
    using T = InputElement<In>;
    using R = detail::SpanResult<F, T>;
    SharedArray<T> copy = input_in_segment<T>(std::span<const T>(in));
    auto out = allocate<R>(std::ranges::size(in), "the results of map");
    const detail::SpanMap<F, T, R> closure{f, items_in_segment(copy, in), out.data()};
    return map_future(closure, input_range(in), s, std::move(out),
                      std::make_shared<const SharedArray<T>>(std::move(copy)));
  }

  // init op f(first) op f(first + 1) ... in no particular order: op must be associative and
  // commutative. Each worker folds its items into a private accumulator and publishes one
  // partial; the parent combines the P partials with init. No array of N results is made.
  template <class F, class T, class Op>
  T map_reduce(F f, Range r, T init, Op op) {
    return map_reduce(f, r, init, op, options().schedule);
  }
  template <class F, class T, class Op>
  T map_reduce(F f, Range r, T init, Op op, Schedule s) {
    auto partials = shared_array<detail::Partial<T>>(size());
    const auto current = run(detail::RangeReduce<F, T, Op>{f, op, partials.data()}, r, s);
    return detail::combine<T>(partials.span(), current, init, op);
  }
  template <class F, ContiguousInput In, class T, class Op>
  T map_reduce(F f, const In& in, T init, Op op) {
    return map_reduce(f, in, init, op, options().schedule);
  }
  template <class F, ContiguousInput In, class T, class Op>
  T map_reduce(F f, const In& in, T init, Op op, Schedule s) {
    using E = InputElement<In>;
    const SharedArray<E> copy = input_in_segment<E>(std::span<const E>(in));
    auto partials = shared_array<detail::Partial<T>>(size());
    const auto current =
        run(detail::SpanReduce<F, E, T, Op>{f, op, items_in_segment(copy, in), partials.data()},
            input_range(in), s);
    return detail::combine<T>(partials.span(), current, init, op);
  }

  // Results while the map runs, read lazily from `in` and at most ImapOptions::ahead chunks ahead
  // of the reader (imap.hpp): imap in input order, imap_unordered as they finish, with their
  // index. `in` is a Range (f(std::int64_t)) or any input range of trivially copyable T
  // (f(const T&)): a container, a view, a generator. The pool is busy until the stream ends.
  template <class F, StreamInput In>
  auto imap(F f, In&& in, ImapOptions o = {}) {
    return stream<true>(f, std::forward<In>(in), o, std::nullopt);
  }
  template <class F, StreamInput In>
  auto imap(F f, In&& in, Schedule s) {
    return stream<true>(f, std::forward<In>(in), ImapOptions{}, s);
  }
  template <class F, StreamInput In>
  auto imap(F f, In&& in, ImapOptions o, Schedule s) {
    return stream<true>(f, std::forward<In>(in), o, s);
  }
  template <class F, StreamInput In>
  auto imap_unordered(F f, In&& in, ImapOptions o = {}) {
    return stream<false>(f, std::forward<In>(in), o, std::nullopt);
  }
  template <class F, StreamInput In>
  auto imap_unordered(F f, In&& in, Schedule s) {
    return stream<false>(f, std::forward<In>(in), ImapOptions{}, s);
  }
  template <class F, StreamInput In>
  auto imap_unordered(F f, In&& in, ImapOptions o, Schedule s) {
    return stream<false>(f, std::forward<In>(in), o, s);
  }

  // f(i) for every i in r, for its side effects (on memory in the segment, files, ...).
  template <class F>
  void for_each(Range r, F f) {
    for_each(r, f, options().schedule);
  }
  template <class F>
  void for_each(Range r, F f, Schedule s) {
    run(detail::RangeForEach<F>{f}, r, s);
  }

  // An array of n value-initialised T in the segment, or a copy of `items`: memory the parent
  // may keep writing after the fork and the workers will see (the fix for the fork pitfall).
  template <class T>
  SharedArray<T> shared_array(std::size_t n) {
    auto a = allocate<T>(n, "a shared array");
    segment()->prefault(a.data(), a.size() * sizeof(T), true);
    std::uninitialized_value_construct(a.begin(), a.end());
    return a;
  }
  template <class T>
  SharedArray<T> shared_array(std::span<const T> items) {
    return copy_into_segment(items, "a shared array");
  }

  // No more calls; the queued submits and map_asyncs still run, then the workers exit once idle.
  void close();
  void join();  // wait for the queued calls and the workers (after close() or terminate())
  // Kill the workers now (SIGKILL) and reap them; queued submits and map_asyncs fail (PoolClosed).
  void terminate();

  // Stops the map running now, from another thread or a signal handler (it is
  // async-signal-safe): each worker stops after its current items, about a millisecond later at
  // most for items faster than that, and the map throws Cancelled. Does nothing when no map runs.
  void cancel() noexcept;

  // What the last map, map_reduce or for_each on this pool did: per worker items, chunks, steals,
  // busy and idle time; makespan, imbalance and scheduling operations (stats.hpp). Also after a
  // map that threw. Empty before the first map. A copy: another thread may start the next map.
  MapStats last_stats() const;

 private:
  struct Impl;

  std::size_t count(Range r) const;  // also checks r and that this pool is usable
  template <class In>
  Range input_range(const In& in) const {
    return Range{0, static_cast<std::int64_t>(std::ranges::size(in))};
  }
  template <class T>
  SharedArray<T> allocate(std::size_t n, const char* what) {
    check_usable();
    check_array_size(n, sizeof(T), what);
    return SharedArray<T>(segment(), n, what);
  }
  // Results the workers wrote, mapped into this process in one go before the caller reads them.
  template <class T>
  SharedArray<T> ready_to_read(SharedArray<T> a) {
    segment()->prefault(a.data(), a.size() * sizeof(T), false);
    return a;
  }
  template <class T>
  SharedArray<T> copy_into_segment(std::span<const T> items, const char* what) {
    auto a = allocate<T>(items.size(), what);
    segment()->prefault(a.data(), a.size() * sizeof(T), true);
    std::uninitialized_copy(items.begin(), items.end(), a.begin());
    return a;
  }
  // An empty array when `items` already lives in the segment (no copy needed), else a copy.
  template <class T>
  SharedArray<T> input_in_segment(std::span<const T> items) {
    check_usable();
    if (items.empty() || segment()->contains(items.data())) return SharedArray<T>();
    return copy_into_segment(items, "the input of map");
  }
  // A map whose results go through ResultCodec<R>, in rounds (detail/encoded_results.hpp).
  template <class R, class F, class Items>
  std::vector<R> map_encoded(F f, Items items, Range r, Schedule s) {
    using Closure = detail::EncodedMap<F, Items, R>;
    const std::size_t n = count(r);
    std::vector<R> results;
    results.reserve(n);
    std::vector<detail::PendingResult> pending;
    {
      detail::ResultRound round(segment(), r.first, n, size());
      run(Closure{f, items, round.places()}, r, s);
      pending = round.collect(  // items 0, 1, ... in order
          [&results](std::int64_t, auto bytes) {
            results.push_back(ResultCodec<R>::decode(bytes));
          },
          [&results](std::int64_t) { results.emplace_back(); });
    }
    while (!pending.empty()) {
      detail::ResultRound round(segment(), r.first, pending);
      run(Closure{f, items, round.places()}, range(round.jobs()), s);
      round.collect(
          [&results](std::int64_t item, auto bytes) {
            results[static_cast<std::size_t>(item)] = ResultCodec<R>::decode(bytes);
          },
          [](std::int64_t) {});
    }
    return results;
  }
  // The items a map reads: `in` itself, or its copy when input_in_segment made one.
  template <class T, class In>
  static const T* items_in_segment(const SharedArray<T>& copy, const In& in) {
    return copy.empty() ? std::ranges::data(in) : copy.data();
  }
  // Queues `op` for the dispatcher thread (started by the first call); what it sets when done.
  std::shared_ptr<detail::Completion> enqueue(detail::AsyncOp op);
  detail::Dispatcher& dispatcher();
  template <class Closure, class R>
  Future<SharedArray<R>> map_future(const Closure& closure, Range r, Schedule s, SharedArray<R> out,
                                    std::shared_ptr<const void> input) {
    detail::AsyncOp op = detail::map_op(closure, r.first, r.last, s);
    op.input = std::move(input);
    op.out = out.data();
    op.out_bytes = out.size() * sizeof(R);
    auto results = std::make_shared<SharedArray<R>>(std::move(out));
    op.output = results;
    return Future<SharedArray<R>>(enqueue(std::move(op)), {std::move(results)});
  }
  // For a map_reduce: which of its two partials is each worker's (see detail::Partial).
  template <class Closure>
  std::vector<unsigned> run(const Closure& closure, Range r, Schedule s) {
    static_assert(std::is_trivially_copyable_v<Closure>);
    return run_job(detail::JobCallable{&detail::closure_code<Closure>, &closure, sizeof(Closure),
                                       alignof(Closure), detail::counts_each_item_once<Closure>},
                   r, s);
  }

  std::vector<unsigned> run_job(const detail::JobCallable& job, Range r, Schedule s);

  template <bool Ordered, class F, class In>
  auto stream(F f, In&& in, ImapOptions o, std::optional<Schedule> s) {
    if constexpr (std::same_as<std::remove_cvref_t<In>, Range>) {
      count(in);
      return detail::range_stream<Ordered>(*this, f, in.first, in.last, o, s);
    } else {
      check_usable();
      return detail::view_stream<Ordered>(*this, f, std::forward<In>(in), o, s);
    }
  }
  // A stream's calls (detail/stream.hpp): one map per window, started and finished apart; the
  // pool serves nothing else from open_stream to close_stream.
  friend class detail::StreamCore;
  void open_stream();
  void close_stream() noexcept;
  void start_window(const detail::ClosureCode* code, const void* closure, Range r, Schedule s,
                    bool reset_stop);
  bool window_needs_finish();
  void finish_window();
  void check_usable() const;
  void check_array_size(std::size_t n, std::size_t element_size, const char* what) const;
  const std::shared_ptr<detail::Segment>& segment() const;

  std::unique_ptr<Impl> impl_;
};

}  // namespace forkpool
