// Futex wait and wake on a 32-bit word in the shared segment. These are *shared* futexes (no
// FUTEX_PRIVATE_FLAG): the kernel keys them by the physical page, so a wake from the parent
// reaches a worker in another process. std::atomic::wait cannot do this (libstdc++ uses private
// futexes and a per-process waiter table).
#pragma once

#include <linux/futex.h>
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
  const long rc = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT,
                          expected, &ts, nullptr, 0);
  return rc == 0 || errno != ETIMEDOUT;
}

inline void futex_wake(std::atomic<std::uint32_t>& word, int waiters = INT_MAX) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, waiters, nullptr,
          nullptr, 0);
}

}  // namespace forkpool::detail
