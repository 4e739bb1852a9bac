// Streaming results, as Python's Pool.imap and Pool.imap_unordered: Pool::imap and
// Pool::imap_unordered return an input range that yields results while the map runs.
//
//   for (std::int64_t sq : pool.imap([](std::int64_t x) { return x * x; }, forkpool::range(10)))
//     std::cout << sq << ' ';                            // 0 1 4 9 ... 81, in input order
//   for (auto [i, r] : pool.imap_unordered(f, lines))    // as they finish, with their index
//
// Memory is bounded, unlike Python's (which reads its whole input at once): the input is read
// lazily and the workers run at most ImapOptions::ahead chunks of ImapOptions::chunksize items
// ahead of the reader, so a slow reader holds back the workers rather than piling up results.
// How it works: detail/stream.hpp.
#pragma once

#include <forkpool/detail/stream.hpp>
#include <forkpool/schedule.hpp>

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>

namespace forkpool {

struct ImapOptions {
  // Items per chunk: a worker claims this many at a time (Schedule::dynamic(chunksize), unless a
  // Schedule is given). Python's imap default is 1; raise it for items faster than a few us.
  std::size_t chunksize = 1;
  // Chunks the workers may run ahead of the reader: the stream's rings hold ahead x chunksize
  // items. 0 picks max(2 x processes, 4096 / chunksize), about 4096 items.
  std::size_t ahead = 0;
};

// An imap_unordered result: f's value for the item at `index` (the index a map over the same
// input would write it at: the integer itself for a Range, the position for other inputs).
template <class R>
struct Indexed {
  std::int64_t index;
  R value;
};

// The range imap (ImapRange<R, true>: f's results R, in input order) and imap_unordered
// (ImapRange<R, false>: Indexed<R>, as they finish) return: move-only, and read once. Its
// iterator is an input iterator; begin() waits for the first result. An exception a map would throw
// (TaskError, BrokenPool, Timeout, Cancelled) is thrown by begin() or ++ and ends the range. The
// range must not outlive its Pool; destroying it before its end stops the map, waiting for the
// items running (at most a piece, about a millisecond of work, each), and leaves the pool usable.
template <class R, bool InOrder>
class ImapRange {
  struct State;

 public:
  using value_type = std::conditional_t<InOrder, R, Indexed<R>>;

  class iterator {
   public:
    using value_type = typename ImapRange::value_type;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;

    iterator() = default;
    const value_type& operator*() const { return *range_->current; }
    const value_type* operator->() const { return &*range_->current; }
    iterator& operator++() {
      range_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& i, std::default_sentinel_t) {
      return !i.range_->current;
    }

   private:
    friend class ImapRange;
    explicit iterator(State* range) : range_(range) {}
    State* range_ = nullptr;
  };

  explicit ImapRange(std::unique_ptr<detail::StreamCore> core)
      : state_(std::make_unique<State>(std::move(core))) {}

  iterator begin() {
    if (!state_->begun) {
      state_->begun = true;
      state_->advance();
    }
    return iterator(state_.get());
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  // On the heap, so that iterators stay valid when the range is moved.
  struct State {
    explicit State(std::unique_ptr<detail::StreamCore> c) : core(std::move(c)) {}
    void advance() {
      current.reset();
      const std::int64_t k = core->next();
      if (k < 0) return;
      const R result = *static_cast<const R*>(core->result(k));
      if constexpr (InOrder)
        current.emplace(result);
      else
        current.emplace(value_type{core->index_of(k), result});
    }
    std::unique_ptr<detail::StreamCore> core;
    std::optional<value_type> current;
    bool begun = false;
  };

  std::unique_ptr<State> state_;
};

namespace detail {

inline StreamCore::Shape stream_shape(bool ordered, const ImapOptions& o, std::optional<Schedule> s,
                                      std::int64_t index_offset, std::size_t result_size,
                                      std::size_t result_align) {
  return {ordered, o.chunksize, o.ahead, s, index_offset, 0, 1, result_size, result_align};
}

template <bool Ordered, class F>
auto range_stream(Pool& pool, F f, std::int64_t first, std::int64_t last, const ImapOptions& o,
                  std::optional<Schedule> s) {
  using R = RangeResult<F>;
  return ImapRange<R, Ordered>(std::make_unique<RangeStream<F, R>>(
      pool, f, first, last, stream_shape(Ordered, o, s, first, sizeof(R), alignof(R))));
}

template <bool Ordered, class F, class In>
auto view_stream(Pool& pool, F f, In&& in, const ImapOptions& o, std::optional<Schedule> s) {
  using T = std::remove_cv_t<std::ranges::range_value_t<std::remove_reference_t<In>&>>;
  static_assert(std::is_trivially_copyable_v<T>,
                "forkpool: imap's input items must be trivially copyable, because they are "
                "copied as bytes into shared memory for the workers");
  using R = SpanResult<F, T>;
  return ImapRange<R, Ordered>(std::make_unique<ViewStream<F, In, R>>(
      pool, f, std::forward<In>(in), stream_shape(Ordered, o, s, 0, sizeof(R), alignof(R))));
}

}  // namespace detail
}  // namespace forkpool
