#include "dispatcher.hpp"

#include "control.hpp"
#include "library_thread.hpp"
#include "wait.hpp"
#include "worker.hpp"

#include <forkpool/forkpool.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <utility>

namespace forkpool::detail {
namespace {

// Submits run together in one map: at most this many, so that the batch's tables (2.3 KiB of
// error slot per task, touched only by a task that throws) stay small.
constexpr std::size_t kMaxBatch = 4096;

// How long a waiter for a future, and the idle dispatcher, poll before they sleep: the next call
// often follows at once (apply in a loop), and a wake-up through the kernel costs more than that
// on a loaded machine (see poll_yielding in wait.hpp).
constexpr auto kHandOffPoll = std::chrono::microseconds(50);

// One submitted task in a batch's table, in the segment.
struct TaskEntry {
  TaskFn run;
  const void* call;
  void* result;
};

enum TaskState : std::uint32_t { kNotFinished = 0, kReturned = 1, kThrew = 2 };

// A batch of submits as a map's closure: item i runs task i. The parent reads `states` only once
// the job is over: after the workers' release of WorkerSlot::finished, or after reaping the ones
// that died, so relaxed stores suffice.
struct TaskBatch {
  const TaskEntry* entries;
  std::atomic<std::uint32_t>* states;
  TaskErrorSlot* errors;

  void run(std::int64_t lo, std::int64_t hi, unsigned, unsigned) const noexcept {
    for (std::int64_t i = lo; i < hi; ++i) {
      const TaskEntry& e = entries[i];
      states[i].store(e.run(e.call, e.result, errors[i]) ? kReturned : kThrew,
                      std::memory_order_relaxed);
    }
  }
};

// `n` T in the segment, for the time of one batch.
template <class T>
class SegmentBlock {
 public:
  SegmentBlock(Segment& segment, std::size_t n, std::size_t align, const char* what)
      : segment_(segment),
        bytes_(n * sizeof(T)),
        data_(static_cast<T*>(segment.allocate(bytes_, align, what))) {}
  ~SegmentBlock() { segment_.deallocate(data_, bytes_); }
  SegmentBlock(const SegmentBlock&) = delete;
  SegmentBlock& operator=(const SegmentBlock&) = delete;
  T* get() const noexcept { return data_; }

 private:
  Segment& segment_;
  std::size_t bytes_;
  T* data_;
};

}  // namespace

void Completion::set(std::exception_ptr error) noexcept {
  {
    const std::lock_guard lock(mutex_);
    if (done_.load(std::memory_order_relaxed)) return;
    error_ = std::move(error);
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

// done_ is stored (release) after error_, under the mutex: a reader that sees it true without
// the mutex (acquire) sees error_ too, and error_ never changes again.
bool Completion::ready() const { return done_.load(std::memory_order_acquire); }

void Completion::wait() const {
  if (poll_yielding([this] { return ready(); }, kHandOffPoll)) return;
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return ready(); });
}

bool Completion::wait_for(std::chrono::nanoseconds timeout) const {
  if (ready()) return true;
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return ready(); });
}

std::exception_ptr Completion::error() const { return ready() ? error_ : nullptr; }

bool is_ready(const Completion& c) { return c.ready(); }
void wait(const Completion& c) { c.wait(); }
bool wait_for(const Completion& c, std::chrono::nanoseconds timeout) { return c.wait_for(timeout); }
void rethrow_error(const Completion& c) {
  if (std::exception_ptr e = c.error()) std::rethrow_exception(e);
}

void throw_not_ready(std::chrono::nanoseconds timeout) {
  const std::string within = timeout.count() % 1'000'000 == 0
                                 ? std::to_string(timeout.count() / 1'000'000) + " ms"
                                 : std::to_string(timeout.count()) + " ns";
  throw FutureTimeout("forkpool::Future::get: the result was not ready within " + within +
                      "; the task keeps running and the future is still valid");
}

std::size_t equal_lengths(std::initializer_list<std::size_t> lengths) {
  const std::size_t n = *lengths.begin();
  if (std::all_of(lengths.begin(), lengths.end(), [n](std::size_t m) { return m == n; })) return n;
  std::string got;
  for (std::size_t m : lengths) got += (got.empty() ? "" : ", ") + std::to_string(m);
  throw std::invalid_argument(
      "forkpool::Pool::starmap: the inputs must have the same length (got " + got + ")");
}

Dispatcher::Dispatcher(Host host, std::shared_ptr<Segment> segment)
    : host_(std::move(host)), segment_(std::move(segment)), owner_(this_process()) {
  thread_ = start_library_thread([this] { loop(); });
}

Dispatcher::~Dispatcher() {
  if (thread_ && owner_ == this_process()) terminate();
  join();
}

std::shared_ptr<Completion> Dispatcher::push(AsyncOp op) {
  auto done = std::make_shared<Completion>();
  {
    const std::lock_guard lock(mutex_);
    if (closing_ || terminating_)
      throw PoolClosed("forkpool: the pool is closed (close() or terminate())");
    queue_.push_back({std::move(op), done});
    pushed_.fetch_add(1, std::memory_order_relaxed);
  }
  wake_.notify_one();
  return done;
}

void Dispatcher::close() {
  {
    const std::lock_guard lock(mutex_);
    closing_ = true;
  }
  wake_.notify_one();
}

void Dispatcher::terminate() {
  std::deque<Queued> abandoned;
  {
    const std::lock_guard lock(mutex_);
    terminating_ = true;
    abandoned.swap(queue_);
  }
  wake_.notify_one();
  host_.cancel();
  const std::exception_ptr closed = std::make_exception_ptr(
      PoolClosed("forkpool: the pool was terminated before this call ran (terminate())"));
  for (Queued& q : abandoned) finish(q, closed);
}

void Dispatcher::join() {
  const std::lock_guard lock(join_mutex_);
  if (!thread_) return;
  // In a process forked from the owner, the thread does not exist: forget it.
  if (owner_ != this_process()) {
    static_cast<void>(thread_.release());
    return;
  }
  thread_->join();
  thread_.reset();
}

void Dispatcher::loop() {
  for (;;) {
    std::vector<Queued> calls;
    const std::uint64_t seen = pushed_.load(std::memory_order_relaxed);
    {
      std::unique_lock lock(mutex_);
      if (queue_.empty() && !closing_ && !terminating_) {
        lock.unlock();
        poll_yielding([&] { return pushed_.load(std::memory_order_relaxed) != seen; },
                      kHandOffPoll);
        lock.lock();
      }
      wake_.wait(lock, [this] { return !queue_.empty() || closing_ || terminating_; });
      if (terminating_) return;
      if (queue_.empty()) break;
      // A map_async alone; or the submits at the front, in order, up to kMaxBatch.
      calls.reserve(std::min(queue_.size(), kMaxBatch));
      do {
        calls.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } while (calls.front().op.task != nullptr && calls.size() < kMaxBatch && !queue_.empty() &&
               queue_.front().op.task != nullptr);
    }
    if (calls.front().op.task != nullptr)
      run_tasks(calls);
    else
      run_map(calls.front());
  }
  host_.shut_down();
}

// Before the completion: a Future that then takes a map's result array must own it alone.
void Dispatcher::finish(Queued& call, std::exception_ptr error) noexcept {
  call.op.input.reset();
  call.op.output.reset();
  call.done->set(std::move(error));
}

void Dispatcher::run_map(Queued& call) {
  const AsyncOp& op = call.op;
  try {
    host_.run(JobCallable{op.code, op.closure.get(), op.size, op.align, op.each_item_once},
              op.first, op.last, op.schedule);
    segment_->prefault(op.out, op.out_bytes, false);
    finish(call, nullptr);
  } catch (...) {
    finish(call, std::current_exception());
  }
}

void Dispatcher::run_tasks(std::vector<Queued>& tasks) {
  const std::size_t n = tasks.size();
  try {
    // The tasks' calls, packed one after another with their alignment.
    std::vector<std::size_t> at(n);
    std::size_t bytes = 0, align = 1;
    for (std::size_t i = 0; i < n; ++i) {
      const AsyncOp& op = tasks[i].op;
      align = std::max(align, op.align);
      bytes = (bytes + op.align - 1) / op.align * op.align;
      at[i] = bytes;
      bytes += op.size;
    }
    const SegmentBlock<std::byte> calls(*segment_, bytes, align, "the calls of submitted tasks");
    const SegmentBlock<TaskEntry> entries(*segment_, n, alignof(TaskEntry),
                                          "the table of submitted tasks");
    const SegmentBlock<std::atomic<std::uint32_t>> states(
        *segment_, n, alignof(std::atomic<std::uint32_t>), "the states of submitted tasks");
    const SegmentBlock<TaskErrorSlot> errors(*segment_, n, alignof(TaskErrorSlot),
                                             "the error slots of submitted tasks");
    for (std::size_t i = 0; i < n; ++i) {
      const AsyncOp& op = tasks[i].op;
      std::memcpy(calls.get() + at[i], op.closure.get(), op.size);
      entries.get()[i] = {op.task, calls.get() + at[i], op.result};
      new (states.get() + i) std::atomic<std::uint32_t>(kNotFinished);
    }
    const TaskBatch batch{entries.get(), states.get(), errors.get()};
    std::exception_ptr failure;
    try {
      host_.run(
          JobCallable{&closure_code<TaskBatch>, &batch, sizeof batch, alignof(TaskBatch), false}, 0,
          static_cast<std::int64_t>(n), Schedule::dynamic(1));
    } catch (...) {
      failure = std::current_exception();
    }
    for (std::size_t i = 0; i < n; ++i) {
      switch (states.get()[i].load(std::memory_order_relaxed)) {
        case kReturned:
          finish(tasks[i], nullptr);
          break;
        case kThrew: {
          const TaskErrorSlot& e = errors.get()[i];
          finish(tasks[i], std::make_exception_ptr(TaskError(e.type, e.message)));
          break;
        }
        default:  // the map failed before this task finished
          finish(tasks[i], failure);
      }
    }
  } catch (...) {
    // The tables did not fit in the segment, or memory ran out: the tasks not done yet fail.
    for (Queued& t : tasks) finish(t, std::current_exception());
  }
}

}  // namespace forkpool::detail

namespace forkpool {

std::shared_ptr<detail::Completion> Pool::enqueue(detail::AsyncOp op) {
  return dispatcher().push(std::move(op));
}

}  // namespace forkpool
