// What a worker runs for a map. Each kind of map has a closure type holding the user's callable
// and pointers into the segment; the closure is copied as bytes into the segment and the worker
// calls its ClosureCode, functions instantiated for it in this same binary. The loop over a chunk
// is therefore fully typed (f is inlined); there is one indirect call per chunk, not per item,
// and none per chunk over constant chunks, whose whole loop is instantiated (constant_chunks.hpp).
#pragma once

#include <forkpool/detail/constant_chunks.hpp>
#include <forkpool/result_codec.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

namespace forkpool::detail {

// The code of a closure type. chunk runs items [first, last) in worker `worker`; a map_reduce
// folds them into the worker's partial `partial` (0 or 1) and writes the result into the other
// one (see Partial). constant_chunks is the worker's whole loop over a job's constant chunks.
struct ClosureCode {
  void (*chunk)(const void* closure, std::int64_t first, std::int64_t last, unsigned worker,
                unsigned partial) noexcept;
  ConstantChunksRun (*constant_chunks)(const void* closure, ConstantChunkJob& job,
                                       Commits commits) noexcept;
};

// A type-erased closure on the caller's stack, before it is copied into the segment.
struct JobCallable {
  const ClosureCode* code;
  const void* closure;
  std::size_t size;
  std::size_t align;
  bool each_item_once;  // a reduction: an item run twice would count twice
};

template <class Closure>
constexpr bool counts_each_item_once = requires {
  Closure::each_item_once;
};

// Called in a worker, inside a catch block: records the exception being handled as the map's
// error at item `index` (the first error of a map wins) and cancels the rest of the map.
void record_task_error(std::int64_t index) noexcept;

// In a worker: maps [p, p + bytes) of the shared segment into this process ahead of use, so that
// a large chunk costs one system call instead of a page fault per page (see segment.hpp).
void prefault_in_worker(const void* p, std::size_t bytes, bool write) noexcept;

template <class Closure>
void run_chunk(const void* closure, std::int64_t first, std::int64_t last, unsigned worker,
               unsigned partial) noexcept {
  static_cast<const Closure*>(closure)->run(first, last, worker, partial);
}

template <class Closure>
inline constexpr ClosureCode closure_code{&run_chunk<Closure>, &run_constant_chunks<Closure>};

template <class F>
constexpr bool callable_is_trivially_copyable() {
  static_assert(
      std::is_trivially_copyable_v<F>,
      "forkpool: the callable must be trivially copyable, because it is copied as bytes "
      "into shared memory for the worker processes. Capture only trivially copyable "
      "values or pointers (a std::vector or std::string captured by value is not); put "
      "data the workers need in a forkpool::SharedArray and capture its data() or span()");
  return std::is_trivially_copyable_v<F>;
}

template <class R>
constexpr bool result_is_storable() {
  static_assert(!std::is_void_v<R>,
                "forkpool: f returns void; use Pool::for_each for side effects");
  static_assert(std::is_void_v<R> || std::is_trivially_copyable_v<R> || EncodedResult<R>,
                "forkpool: a map result must be trivially copyable (the workers write it straight "
                "into shared memory) or have a forkpool::ResultCodec: std::string, "
                "std::basic_string and std::vector of a trivially copyable element have one; for "
                "another type, specialise forkpool::ResultCodec<R> with size, encode and decode "
                "(forkpool/result_codec.hpp). A reference result is not supported: return a value");
  return true;
}

template <class F, class Arg, bool = std::is_invocable_v<F&, Arg>>
struct ResultOf {
  static_assert(std::is_invocable_v<F&, Arg>,
                "forkpool: f cannot be called with an item: a map over a Range calls "
                "f(std::int64_t), a map over a span of T calls f(const T&)");
  using type = int;
};
template <class F, class Arg>
struct ResultOf<F, Arg, true> {
  using type = std::invoke_result_t<F&, Arg>;
};

template <class F>
using RangeResult =
    std::enable_if_t<callable_is_trivially_copyable<F>() &&
                         result_is_storable<typename ResultOf<F, std::int64_t>::type>(),
                     typename ResultOf<F, std::int64_t>::type>;
template <class F, class T>
using SpanResult = std::enable_if_t<callable_is_trivially_copyable<F>() &&
                                        result_is_storable<typename ResultOf<F, const T&>::type>(),
                                    typename ResultOf<F, const T&>::type>;

// One worker's share of a map_reduce, alone on its cache line(s). Two copies: a piece folds the
// current one with its items into the other, and the pool then makes that one current together
// with the piece's item count, in one atomic store (WorkerSlot in lib/control.hpp). A worker that
// dies mid-piece leaves the current copy intact, so every item counts exactly once.
template <class T>
struct alignas(64) Partial {
  std::optional<T> value[2];
};

template <class T, class Op>
void fold_into(Partial<T>& p, unsigned current, T&& piece_total, Op& op) {
  const std::optional<T>& from = p.value[current];
  std::optional<T>& to = p.value[current ^ 1];
  if (from)
    to = op(*from, std::move(piece_total));
  else
    to.emplace(std::move(piece_total));
}

// init combined with each worker's current partial; current[w] is 0 or 1.
template <class T, class Op>
T combine(std::span<const Partial<T>> partials, std::span<const unsigned> current, T init, Op op) {
  for (std::size_t w = 0; w < partials.size(); ++w)
    if (const std::optional<T>& v = partials[w].value[current[w]]) init = op(std::move(init), *v);
  return init;
}

// Runs body(i) for the job's items [lo, hi) in order; the first exception is the map's error at
// item index(i), and ends the chunk.
template <class Body, class Index = std::identity>
void for_each_item(std::int64_t lo, std::int64_t hi, Body body, Index index = {}) noexcept {
  for (std::int64_t i = lo; i < hi; ++i) {
    try {
      body(i);
    } catch (...) {
      record_task_error(index(i));
      return;
    }
  }
}

template <class F, class R>
struct RangeMap {
  F f;
  R* out;
  std::int64_t first;

  void run(std::int64_t lo, std::int64_t hi, unsigned, unsigned) const noexcept {
    F g = f;
    R* const to = out;
    const std::int64_t base = first;
    prefault_in_worker(to + (lo - base), sizeof(R) * static_cast<std::size_t>(hi - lo), true);
    for_each_item(lo, hi, [&g, to, base](std::int64_t i) {
      std::construct_at(to + (i - base), std::invoke(g, i));
    });
  }
};

template <class F, class T, class R>
struct SpanMap {
  F f;
  const T* in;
  R* out;

  void run(std::int64_t lo, std::int64_t hi, unsigned, unsigned) const noexcept {
    F g = f;
    const T* const from = in;
    R* const to = out;
    prefault_in_worker(from + lo, sizeof(T) * static_cast<std::size_t>(hi - lo), false);
    prefault_in_worker(to + lo, sizeof(R) * static_cast<std::size_t>(hi - lo), true);
    for_each_item(lo, hi, [&g, from, to](std::int64_t i) {
      std::construct_at(to + i, std::invoke(g, from[i]));
    });
  }
};

template <class F>
struct RangeForEach {
  static_assert(callable_is_trivially_copyable<F>());
  static_assert(std::is_invocable_v<F&, std::int64_t>,
                "forkpool: for_each calls f(std::int64_t) for every index of the range");
  F f;

  void run(std::int64_t lo, std::int64_t hi, unsigned, unsigned) const noexcept {
    F g = f;
    for_each_item(lo, hi, [&g](std::int64_t i) { std::invoke(g, i); });
  }
};

template <class T, class Op>
constexpr bool reduction_is_valid() {
  static_assert(std::is_trivially_copyable_v<T>,
                "forkpool: the map_reduce accumulator type T must be trivially copyable, because "
                "each worker's partial lives in shared memory");
  static_assert(callable_is_trivially_copyable<Op>());
  static_assert(std::is_invocable_r_v<T, Op&, T, T>,
                "forkpool: map_reduce's op must be callable as op(T, T) -> T");
  return true;
}

// Folds items [lo, hi) of an indexable source: item(i) gives f's value for index i.
template <class T, class Op, class Item>
void reduce_chunk(std::int64_t lo, std::int64_t hi, Op op, Item item, Partial<T>& partial,
                  unsigned current) noexcept {
  std::int64_t i = lo;
  try {
    T acc = static_cast<T>(item(i));
    for (++i; i < hi; ++i) acc = op(std::move(acc), static_cast<T>(item(i)));
    fold_into(partial, current, std::move(acc), op);
  } catch (...) {
    record_task_error(i);
  }
}

template <class F, class T, class Op>
struct RangeReduce {
  static_assert(callable_is_trivially_copyable<F>() && reduction_is_valid<T, Op>());
  static constexpr bool each_item_once = true;
  F f;
  Op op;
  Partial<T>* partials;

  void run(std::int64_t lo, std::int64_t hi, unsigned worker, unsigned current) const noexcept {
    F g = f;
    reduce_chunk<T>(
        lo, hi, op, [&g](std::int64_t i) { return std::invoke(g, i); }, partials[worker], current);
  }
};

template <class F, class E, class T, class Op>
struct SpanReduce {
  static_assert(callable_is_trivially_copyable<F>() && reduction_is_valid<T, Op>());
  static constexpr bool each_item_once = true;
  F f;
  Op op;
  const E* in;
  Partial<T>* partials;

  void run(std::int64_t lo, std::int64_t hi, unsigned worker, unsigned current) const noexcept {
    F g = f;
    const E* items = in;
    prefault_in_worker(items + lo, sizeof(E) * static_cast<std::size_t>(hi - lo), false);
    reduce_chunk<T>(
        lo, hi, op, [&g, items](std::int64_t i) { return std::invoke(g, items[i]); },
        partials[worker], current);
  }
};

}  // namespace forkpool::detail
