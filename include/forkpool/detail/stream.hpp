// The machinery of Pool::imap and imap_unordered (imap.hpp): a stream runs its input as a
// sequence of ordinary maps, one per window of items, through rings in the segment.
//
// The rings hold `capacity` = ahead x chunksize items; item k lives in slot k % capacity of the
// input ring (when the input is not in the segment already), of the result ring, and of `ready`.
// A window is started only over slots the reader has freed: it ends at most `capacity` items past
// the first item not read yet. So the workers never run more than `capacity` items ahead of the
// reader, and the parent never reads more than that from the input. A window starts when the
// last one has finished and at least half the ring is free (or the reader has caught up), so the
// workers compute one window while the reader consumes the one before.
//
// Inside a window the workers publish as they go:
//  - per item: the result, then ready[slot] = k + 1 (release). A slot's value names its item, so
//    it never needs resetting, and a re-run of an item (recovery) publishes the same value again;
//  - per piece (StreamMap::run call, about a millisecond of items): `done` += the piece's items,
//    a record [first, last) in the completion log (imap_unordered only), and a wake-up of the
//    reader if it sleeps. The log is a ring of seqlock records (Boehm, "Can seqlocks get along
//    with programming language memory models?", MSPC 2012), so a worker never waits for the
//    reader; records the reader missed are made up by a sweep of the window's `ready` flags
//    once the window is finished.
// A window that loses items to a dead worker, or stops (a TaskError, cancel(), a timeout), is
// finished by the pool as a map is (recovery rounds, errors); the reader calls that once every item
// of the window is published, or when it waits and the pool says the window needs it.
#pragma once

#include <forkpool/detail/closures.hpp>
#include <forkpool/detail/segment.hpp>
#include <forkpool/schedule.hpp>

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

namespace forkpool {
class Pool;
}  // namespace forkpool

namespace forkpool::detail {

template <class In>
concept StreamableRange = std::ranges::input_range<In> &&
    (std::is_lvalue_reference_v<In> || std::move_constructible<std::remove_cvref_t<In>>);

// The words the workers and the reader share, each on its own cache line.
struct StreamShared {
  alignas(64) std::atomic<std::uint64_t> done{0};      // items published in the window running
  alignas(64) std::atomic<std::uint32_t> progress{0};  // futex word: bumped after each piece
  std::atomic<std::uint32_t> reader_waiting{0};
  alignas(64) std::atomic<std::uint64_t> log_next{0};  // completion records written
};

// One piece of items [first, last) that a worker finished (imap_unordered). `seq` is the
// record's number + 1 once written, 0 while a worker writes it.
struct PieceRecord {
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::int64_t> first{0};
  std::atomic<std::int64_t> last{0};
};

// Where a stream's workers publish (all in the segment); part of every stream closure.
struct StreamBuffers {
  StreamShared* shared;
  std::atomic<std::int64_t>* ready;  // [capacity]
  PieceRecord* log;                  // [capacity]; nullptr for imap (in order)
  std::uint64_t capacity;
};

// In a worker, after a piece: items [first, last) are ready (last < the piece's end when f threw).
void publish_piece(const StreamBuffers& b, std::int64_t first, std::int64_t last) noexcept;

// What f is called with for item k in ring slot `slot`, and the index a TaskError names.
struct StreamRangeItems {
  std::int64_t first;
  std::int64_t operator()(std::int64_t k, std::uint64_t) const { return first + k; }
  std::int64_t index(std::int64_t k) const { return first + k; }
};
template <class T>
struct StreamArrayItems {  // an input already in the segment
  const T* items;
  const T& operator()(std::int64_t k, std::uint64_t) const { return items[k]; }
  std::int64_t index(std::int64_t k) const { return k; }
};
template <class T>
struct StreamRingItems {  // an input copied into the input ring as the stream advances
  const T* ring;
  const T& operator()(std::int64_t, std::uint64_t slot) const { return ring[slot]; }
  std::int64_t index(std::int64_t k) const { return k; }
};

template <class F, class Items, class R>
struct StreamMap {
  F f;
  Items items;
  R* out;  // [capacity]
  StreamBuffers buffers;

  void run(std::int64_t lo, std::int64_t hi, unsigned, unsigned) const noexcept {
    F g = f;
    const std::uint64_t capacity = buffers.capacity;
    std::uint64_t slot = static_cast<std::uint64_t>(lo) % capacity;
    std::int64_t k = lo;
    for (; k < hi; ++k) {
      try {
        std::construct_at(out + slot, std::invoke(g, items(k, slot)));
      } catch (...) {
        record_task_error(items.index(k));
        break;
      }
      buffers.ready[slot].store(k + 1, std::memory_order_release);
      if (++slot == capacity) slot = 0;
    }
    publish_piece(buffers, lo, k);
  }
};

// The reader's side of a stream, whatever its input and result types: windows, waiting, order,
// and the pool's calls. A subclass fills the input ring (pull) and makes the closure.
class StreamCore {
 public:
  struct Shape {
    bool ordered;
    std::size_t chunksize;
    std::size_t ahead;  // 0: automatic
    std::optional<Schedule> schedule;
    std::int64_t index_offset;  // added to an item's position to give its index (a Range's first)
    std::size_t input_size, input_align;  // of the input ring's items; 0 when there is no ring
    std::size_t result_size, result_align;
  };

  // Takes the pool (waiting for another thread's call) and makes the rings.
  StreamCore(Pool& pool, const Shape& shape);
  // Stops the window running, if any, waits for it, and gives the pool back.
  virtual ~StreamCore();
  StreamCore(const StreamCore&) = delete;
  StreamCore& operator=(const StreamCore&) = delete;

  // The position of the next result (in input order for imap, as they finish for
  // imap_unordered), or -1 at the end. Throws what a map throws; after that, -1.
  std::int64_t next();
  std::int64_t index_of(std::int64_t k) const { return k + shape_.index_offset; }
  const void* result(std::int64_t k) const;

  static bool in_segment(Pool& pool, const void* p);

 protected:
  std::uint64_t capacity() const { return capacity_; }
  void* input_ring() const { return input_; }
  void* result_ring() const { return results_; }
  StreamBuffers buffers() const { return {shared_, ready_, log_, capacity_}; }
  // Copies the subclass's closure into the segment and starts the first window.
  template <class Closure>
  void start(const Closure& closure) {
    static_assert(std::is_trivially_copyable_v<Closure>);
    start(&closure_code<Closure>, &closure, sizeof(Closure), alignof(Closure));
  }

 private:
  // Reads up to n input items, positions first, first + 1, ..., into the input ring (if any);
  // returns how many there were (fewer at the end of the input).
  virtual std::uint64_t pull(std::int64_t first, std::uint64_t n) = 0;

  struct Block {  // segment memory, freed with the stream
    void* p;
    std::size_t bytes;
  };
  void* allocate(std::size_t bytes, std::size_t align, const char* what);
  void start(const ClosureCode* code, const void* closure, std::size_t size, std::size_t align);
  std::int64_t next_in_order();
  std::int64_t next_finished();
  bool window_published() const;
  void refill();
  void finish();
  void sweep_window();
  bool read_log(std::pair<std::int64_t, std::int64_t>& piece, bool final);
  bool log_has_record() const;
  void release() noexcept;
  template <class Ready>
  void wait(Ready ready);
  bool ready(std::int64_t k) const;
  bool take(std::int64_t k);

  Pool& pool_;
  std::shared_ptr<Segment> segment_;
  Shape shape_;
  Schedule schedule_;
  std::uint64_t capacity_ = 0;
  std::vector<Block> blocks_;
  StreamShared* shared_ = nullptr;
  std::atomic<std::int64_t>* ready_ = nullptr;
  PieceRecord* log_ = nullptr;
  void* input_ = nullptr;
  void* results_ = nullptr;
  const ClosureCode* code_ = nullptr;
  const void* closure_ = nullptr;
  bool open_ = false;  // holds the pool

  static constexpr std::int64_t kNoLimit = std::numeric_limits<std::int64_t>::max();
  std::int64_t low_ = 0;      // every item before it has been read
  std::int64_t started_ = 0;  // items before it are in a window, running or finished
  std::int64_t pulled_ = 0;   // items read from the input
  std::int64_t input_end_ = kNoLimit;
  std::int64_t limit_ = kNoLimit;  // no window goes past it (a TaskError's item)
  std::exception_ptr error_;       // thrown when the reader reaches limit_
  bool running_ = false;
  bool reset_stop_ = true;  // the next window clears the pool's stop flag
  bool failed_ = false;
  std::int64_t window_first_ = 0, window_last_ = 0;

  // imap_unordered: records read from the log, the piece being read, and what was read.
  std::uint64_t log_read_ = 0;
  std::deque<std::pair<std::int64_t, std::int64_t>> backlog_;
  std::int64_t piece_first_ = 0, piece_last_ = 0;
  std::vector<std::int64_t> taken_;  // [capacity]: k + 1 once item k was read
};

// A stream over a Range: f(first + k), no input ring.
template <class F, class R>
class RangeStream final : public StreamCore {
 public:
  RangeStream(Pool& pool, F f, std::int64_t first, std::int64_t last, Shape shape)
      : StreamCore(pool, shape), size_(last - first) {
    start(StreamMap<F, StreamRangeItems, R>{f, {first}, static_cast<R*>(result_ring()), buffers()});
  }

 private:
  std::uint64_t pull(std::int64_t first, std::uint64_t n) override {
    return std::min(n, static_cast<std::uint64_t>(size_ - first));
  }
  std::int64_t size_;
};

template <class In>
constexpr bool kContiguousInput =
    std::ranges::contiguous_range<In&>&& std::ranges::sized_range<In&>;

// The input a ViewStream reads: a pointer to it when it was passed as an lvalue (it must outlive
// the stream), else the input itself, moved in. Held in a base class so that it is in place
// before StreamCore sizes the rings: `direct` when it is contiguous and in the segment (a
// SharedArray, or a span of one), so that the workers read it where it is.
template <class In>
struct HeldInput {
  using Input = std::remove_reference_t<In>;
  static constexpr bool kPointer = std::is_lvalue_reference_v<In>;

  HeldInput(Pool& pool, In&& in) : held(hold(std::forward<In>(in))) {
    if constexpr (kContiguousInput<Input>)
      direct = StreamCore::in_segment(pool, std::ranges::data(input()));
  }
  // The stream's shape, with an input ring unless the input is read where it is.
  StreamCore::Shape with_ring(StreamCore::Shape shape) const {
    using T = std::remove_cv_t<std::ranges::range_value_t<Input&>>;
    if (!direct) {
      shape.input_size = sizeof(T);
      shape.input_align = alignof(T);
    }
    return shape;
  }
  Input& input() {
    if constexpr (kPointer)
      return *held;
    else
      return held;
  }

  static auto hold(In&& in) {
    if constexpr (kPointer)
      return &in;
    else
      return std::remove_cv_t<Input>(std::move(in));
  }
  std::conditional_t<kPointer, Input*, std::remove_cv_t<Input>> held;
  bool direct = false;
};

// A stream over any input range of trivially copyable T: f(const T&).
template <class F, class In, class R>
class ViewStream final : private HeldInput<In>, public StreamCore {
  using Input = std::remove_reference_t<In>;
  using T = std::remove_cv_t<std::ranges::range_value_t<Input&>>;
  static constexpr bool kContiguous = kContiguousInput<Input>;

 public:
  ViewStream(Pool& pool, F f, In&& in, Shape shape)
      : HeldInput<In>(pool, std::forward<In>(in)),
        StreamCore(pool, HeldInput<In>::with_ring(shape)) {
    if constexpr (kContiguous) {
      if (this->direct) {
        start(StreamMap<F, StreamArrayItems<T>, R>{
            f, {std::ranges::data(this->input())}, static_cast<R*>(result_ring()), buffers()});
        return;
      }
    }
    start(StreamMap<F, StreamRingItems<T>, R>{
        f, {static_cast<const T*>(input_ring())}, static_cast<R*>(result_ring()), buffers()});
  }

 private:
  std::uint64_t pull(std::int64_t first, std::uint64_t n) override {
    Input& input = this->input();
    if constexpr (kContiguous) {
      const auto size = static_cast<std::uint64_t>(std::ranges::size(input));
      n = std::min(n, size - static_cast<std::uint64_t>(first));
      if (this->direct) return n;
      T* ring = static_cast<T*>(input_ring());
      const auto* in = std::ranges::data(input) + first;
      const std::uint64_t slot = static_cast<std::uint64_t>(first) % capacity();
      const std::uint64_t before_wrap = std::min(n, capacity() - slot);
      std::copy_n(in, before_wrap, ring + slot);
      std::copy_n(in + before_wrap, n - before_wrap, ring);
      return n;
    } else {
      // Advances past an item only when the next one is wanted, so that an input which reads
      // on ++ (a stream, a generator) is read no further than the window.
      T* ring = static_cast<T*>(input_ring());
      std::uint64_t slot = static_cast<std::uint64_t>(first) % capacity();
      if (!it_) it_.emplace(std::ranges::begin(input));
      std::uint64_t got = 0;
      for (; got < n; ++got) {
        if (advance_) ++*it_;
        advance_ = false;
        if (*it_ == std::ranges::end(input)) break;
        ring[slot] = *(*it_);
        advance_ = true;
        if (++slot == capacity()) slot = 0;
      }
      return got;
    }
  }

  std::optional<std::ranges::iterator_t<Input&>> it_;
  bool advance_ = false;
};

}  // namespace forkpool::detail
