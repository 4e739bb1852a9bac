// How the parent and the workers wait for each other: a short yielding poll, then a futex.
//
// Futex wait and wake on a 32-bit word in the shared segment. These are *shared* futexes (no
// FUTEX_PRIVATE_FLAG): the kernel keys them by the physical page, so a wake from the parent
// reaches a worker in another process. std::atomic::wait cannot do this (libstdc++ uses private
// futexes and a per-process waiter table).
#pragma once

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace forkpool::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
              std::atomic<std::uint32_t>::is_always_lock_free);

// Sleeps while `word` holds `expected`, for at most `timeout`. Returns false on time-out; true
// when woken, when the value differed, or on a signal (callers re-check their condition).
inline bool futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) {
  const std::timespec ts{static_cast<std::time_t>(timeout.count() / 1'000'000'000),
                         static_cast<long>(timeout.count() % 1'000'000'000)};
  const long rc = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected,
                          &ts, nullptr, 0);
  return rc == 0 || errno != ETIMEDOUT;
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int waiters = INT_MAX) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, waiters, nullptr, nullptr,
          0);
}

// Polls `ready` for up to `limit`, yielding the CPU between polls, before a caller goes to sleep:
// a wake-up through the kernel costs 5-10 us here, more than a small map. Yielding, not pausing:
// a pool usually has as many workers as CPUs, so the parent and the workers share the CPUs, and a
// busy spin would take a CPU from the very process being waited for. Measured on 2 cores with a
// warm Pool(2), a 16-item map took ~45 us with no poll, ~60 us with a 20 us pause-spin, and
// ~15 us with a 50 us yielding poll on both sides.
template <class Ready>
bool poll_yielding(Ready ready, std::chrono::nanoseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    sched_yield();
  }
}

}  // namespace forkpool::detail
