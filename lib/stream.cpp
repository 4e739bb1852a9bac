// The reader's side of a stream (Pool::imap, imap_unordered) and the workers' publication; the
// design is described at the top of include/forkpool/detail/stream.hpp.
//
// Memory order. A worker writes an item's result, then its ready flag (release); the reader
// loads the flag (acquire) before it reads the result. `done` is a count of items the workers add
// to with release read-modify-writes, which form one release sequence: a reader that loads
// the window's full count (acquire) sees every flag and result of the window. Log records are
// seqlocks (see publish_piece). The reader sleeps on `progress` with the same Dekker-style
// handshake as the pool's parent (seq_cst on both sides): either a worker sees reader_waiting and
// wakes it, or the reader sees the new progress value before it sleeps. Everything the workers
// wrote in a window reaches the reader anyway when the pool finishes the window (pool.cpp).
#include "wait.hpp"

#include <forkpool/forkpool.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace forkpool::detail {
namespace {

// The reader polls this long for a result before it sleeps (see poll_yielding).
constexpr auto kReadPoll = std::chrono::microseconds(50);
// A sleeping reader wakes at least this often to ask the pool whether the window needs finishing
// (a worker died, it was stopped, its deadline passed); the end of each piece wakes it sooner.
constexpr auto kReadSleep = std::chrono::milliseconds(1);
// ImapOptions::ahead = 0 keeps about this many items in the rings (and at least 2 chunks per
// worker): enough to make a window's start and finish (tens of microseconds) cheap per item.
constexpr std::size_t kAutomaticRingItems = 4096;
constexpr std::uint64_t kMaxRingItems = std::uint64_t{1} << 40;

Schedule window_schedule(const StreamCore::Shape& shape) {
  if (shape.chunksize == 0)
    throw std::invalid_argument("forkpool::Pool::imap: ImapOptions::chunksize must be at least 1");
  return shape.schedule.value_or(Schedule::dynamic(shape.chunksize));
}

std::uint64_t ring_items(const StreamCore::Shape& shape, unsigned workers) {
  const std::uint64_t chunk = shape.chunksize;
  const std::uint64_t ahead =
      shape.ahead != 0 ? shape.ahead
                       : std::max<std::uint64_t>(2 * std::uint64_t{workers},
                                                 (kAutomaticRingItems + chunk - 1) / chunk);
  if (chunk > kMaxRingItems || ahead > kMaxRingItems / chunk)
    throw std::invalid_argument(
        "forkpool::Pool::imap: ImapOptions::ahead x ImapOptions::chunksize (" +
        std::to_string(ahead) + " x " + std::to_string(chunk) + ") must be at most 2^40 items");
  return ahead * chunk;
}

}  // namespace

void publish_piece(const StreamBuffers& b, std::int64_t first, std::int64_t last) noexcept {
  StreamShared& s = *b.shared;
  if (last > first) {
    if (b.log != nullptr) {
      // A seqlock write: seq = 0, the fields, seq = number + 1 (release). The fields are release
      // stores, not relaxed ones behind a release fence (GCC's TSan rejects atomic_thread_fence):
      // a reader that acquires a field of a newer write then sees seq no longer equal to this
      // record's number, so a reader that reads the same whole seq before and after the fields
      // read this record's fields.
      const std::uint64_t n = s.log_next.fetch_add(1, std::memory_order_relaxed);
      PieceRecord& r = b.log[n % b.capacity];
      r.seq.store(0, std::memory_order_relaxed);
      r.first.store(first, std::memory_order_release);
      r.last.store(last, std::memory_order_release);
      r.seq.store(n + 1, std::memory_order_release);
    }
    s.done.fetch_add(static_cast<std::uint64_t>(last - first), std::memory_order_release);
  }
  s.progress.fetch_add(1, std::memory_order_seq_cst);
  if (s.reader_waiting.load(std::memory_order_seq_cst) != 0) futex_wake(s.progress);
}

StreamCore::StreamCore(Pool& pool, const Shape& shape)
    : pool_(pool),
      segment_(pool.segment()),
      shape_(shape),
      schedule_(window_schedule(shape)),
      capacity_(ring_items(shape, pool.size())) {
  pool_.open_stream();
  open_ = true;
  try {
    shared_ = new (allocate(sizeof(StreamShared), alignof(StreamShared), "a stream's counters"))
        StreamShared;
    ready_ = new (allocate(sizeof(std::atomic<std::int64_t>) * capacity_,
                           alignof(std::atomic<std::int64_t>), "a stream's ready flags"))
        std::atomic<std::int64_t>[capacity_] {};
    if (!shape_.ordered) {
      log_ = new (allocate(sizeof(PieceRecord) * capacity_, alignof(PieceRecord),
                           "a stream's completion log")) PieceRecord[capacity_];
      taken_.assign(capacity_, 0);
    }
    if (shape_.input_size != 0)
      input_ = allocate(shape_.input_size * capacity_, shape_.input_align, "a stream's input ring");
    results_ =
        allocate(shape_.result_size * capacity_, shape_.result_align, "a stream's result ring");
  } catch (...) {
    release();
    throw;
  }
}

StreamCore::~StreamCore() { release(); }

void StreamCore::release() noexcept {
  if (open_) pool_.close_stream();
  open_ = false;
  for (auto b = blocks_.rbegin(); b != blocks_.rend(); ++b) segment_->deallocate(b->p, b->bytes);
  blocks_.clear();
}

bool StreamCore::in_segment(Pool& pool, const void* p) { return pool.segment()->contains(p); }

void* StreamCore::allocate(std::size_t bytes, std::size_t align, const char* what) {
  blocks_.reserve(blocks_.size() + 1);
  void* p = segment_->allocate(bytes, align, what);
  blocks_.push_back({p, bytes});
  return p;
}

void StreamCore::start(const ClosureCode* code, const void* closure, std::size_t size,
                       std::size_t align) {
  void* copy = allocate(size, align, "a stream's callable");
  std::memcpy(copy, closure, size);
  code_ = code;
  closure_ = copy;
  refill();
}

const void* StreamCore::result(std::int64_t k) const {
  return static_cast<const std::byte*>(results_) +
         static_cast<std::uint64_t>(k) % capacity_ * shape_.result_size;
}

bool StreamCore::ready(std::int64_t k) const {
  return ready_[static_cast<std::uint64_t>(k) % capacity_].load(std::memory_order_acquire) == k + 1;
}

bool StreamCore::window_published() const {
  return running_ && shared_->done.load(std::memory_order_acquire) ==
                         static_cast<std::uint64_t>(window_last_ - window_first_);
}

std::int64_t StreamCore::next() {
  if (failed_) return -1;
  try {
    if (window_published()) finish();
    refill();
    return shape_.ordered ? next_in_order() : next_finished();
  } catch (...) {
    failed_ = true;
    throw;
  }
}

// Starts the next window when none runs and at least half the ring is free: the items from
// started_ up to capacity past the first item not read yet, read from the input first.
void StreamCore::refill() {
  if (running_) return;
  const std::int64_t end = std::min(limit_, input_end_);
  if (started_ >= end) return;
  const auto room = static_cast<std::uint64_t>(low_ - started_) + capacity_;
  if (2 * room < capacity_) return;
  std::int64_t last = started_ + static_cast<std::int64_t>(
                                     std::min(room, static_cast<std::uint64_t>(end - started_)));
  if (last > pulled_) {
    const auto wanted = static_cast<std::uint64_t>(last - pulled_);
    const std::uint64_t got = pull(pulled_, wanted);
    pulled_ += static_cast<std::int64_t>(got);
    if (got < wanted) input_end_ = last = pulled_;
  }
  if (last <= started_) return;
  shared_->done.store(0, std::memory_order_relaxed);  // published by start_window
  pool_.start_window(code_, closure_, Range{started_, last}, schedule_, reset_stop_);
  reset_stop_ = false;
  running_ = true;
  window_first_ = started_;
  window_last_ = started_ = last;
}

// Waits for the window's job, and its recovery rounds, as a map does. A TaskError is kept for
// when the reader reaches it.
void StreamCore::finish() {
  running_ = false;
  try {
    pool_.finish_window();
  } catch (const TaskError& e) {
    error_ = std::current_exception();
    if (shape_.ordered) {
      // As Python: every result before the failing item, then the error. The items before it
      // that the stop left unfinished run again in the next windows; their flags are cleared so
      // that the reader waits for the re-run rather than read a slot it is writing.
      limit_ = std::max(low_, std::min(limit_, e.index() - shape_.index_offset));
      started_ = low_;
      while (started_ < limit_ && ready(started_)) ++started_;
      for (std::int64_t k = started_; k < window_last_; ++k)
        ready_[static_cast<std::uint64_t>(k) % capacity_].store(0, std::memory_order_relaxed);
      reset_stop_ = true;
    } else {
      limit_ = window_last_;  // no more windows: what finished is read, then the error
    }
  }
  if (!shape_.ordered) sweep_window();
}

template <class Ready>
void StreamCore::wait(Ready ready) {
  if (poll_yielding(ready, kReadPoll)) return;
  for (;;) {
    const std::uint32_t seen = shared_->progress.load(std::memory_order_seq_cst);
    if (ready()) return;
    shared_->reader_waiting.store(1, std::memory_order_seq_cst);
    if (shared_->progress.load(std::memory_order_seq_cst) == seen)
      futex_wait(shared_->progress, seen, kReadSleep);
    shared_->reader_waiting.store(0, std::memory_order_relaxed);
    if (ready()) return;
    if (pool_.window_needs_finish()) {
      finish();
      return;
    }
  }
}

std::int64_t StreamCore::next_in_order() {
  for (;;) {
    if (low_ >= std::min(limit_, input_end_)) {
      if (running_) {
        finish();
        continue;
      }
      if (error_ && low_ >= limit_) std::rethrow_exception(error_);
      return -1;
    }
    if (low_ < started_ && ready(low_)) return low_++;
    if (running_) {
      if (window_published())
        finish();
      else
        wait([this] { return ready(low_) || window_published(); });
    }
    refill();
  }
}

// Reads the next completion record into `piece` ({0, 0} for one that was overwritten before it
// was read: the sweep makes up for it). With `final` (no worker is running), a record that is
// not whole will never be: its worker died writing it.
bool StreamCore::read_log(std::pair<std::int64_t, std::int64_t>& piece, bool final) {
  const std::uint64_t written = shared_->log_next.load(std::memory_order_acquire);
  if (log_read_ >= written) return false;
  log_read_ = std::max(log_read_, written > capacity_ ? written - capacity_ : 0);
  const PieceRecord& r = log_[log_read_ % capacity_];
  const std::uint64_t seq = r.seq.load(std::memory_order_acquire);
  piece = {0, 0};
  if (seq == log_read_ + 1) {
    // Acquire loads (not an acquire fence, which GCC's TSan rejects): the second load of seq
    // cannot move before them, and sees at least the seq = 0 of any write whose field they read.
    piece = {r.first.load(std::memory_order_acquire), r.last.load(std::memory_order_acquire)};
    if (r.seq.load(std::memory_order_relaxed) != seq) piece = {0, 0};
  } else if (seq <= log_read_ && !final) {
    return false;  // not written yet, or being written
  }
  ++log_read_;
  return true;
}

// Whether read_log would read a record now (a record being written does not count: its worker
// may have died writing it).
bool StreamCore::log_has_record() const {
  const std::uint64_t written = shared_->log_next.load(std::memory_order_acquire);
  if (log_read_ >= written) return false;
  if (written - log_read_ > capacity_) return true;
  return log_[log_read_ % capacity_].seq.load(std::memory_order_acquire) > log_read_;
}

// After a window finished: the records left in the log, then every item of the window in order,
// for the items whose records were overwritten or that a recovery round ran again.
void StreamCore::sweep_window() {
  std::pair<std::int64_t, std::int64_t> piece;
  while (read_log(piece, true))
    if (piece.first < piece.second) backlog_.push_back(piece);
  backlog_.emplace_back(window_first_, window_last_);
}

bool StreamCore::take(std::int64_t k) {
  const auto slot = static_cast<std::uint64_t>(k) % capacity_;
  if (k < low_ || !ready(k) || taken_[slot] == k + 1) return false;
  taken_[slot] = k + 1;
  while (low_ < started_ && taken_[static_cast<std::uint64_t>(low_) % capacity_] == low_ + 1)
    ++low_;
  return true;
}

std::int64_t StreamCore::next_finished() {
  std::pair<std::int64_t, std::int64_t> piece;
  for (;;) {
    while (piece_first_ < piece_last_)
      if (const std::int64_t k = piece_first_++; take(k)) return k;
    if (!backlog_.empty()) {
      std::tie(piece_first_, piece_last_) = backlog_.front();
      backlog_.pop_front();
    } else if (running_) {
      if (read_log(piece, false))
        std::tie(piece_first_, piece_last_) = piece;
      else if (window_published())
        finish();
      else
        wait([this] { return log_has_record() || window_published(); });
    } else {
      refill();
      if (running_) continue;
      if (error_) std::rethrow_exception(error_);
      return -1;
    }
  }
}

}  // namespace forkpool::detail
