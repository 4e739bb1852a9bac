// Thread-based stress of detail::TaskDeque, the bounded Chase-Lev deque the workers' tasks go
// through (lib/tasks.cpp): one owner pushing and popping, thieves stealing, on rings small enough
// to be full and to wrap around all the time. Threads stand in for processes, so
// ThreadSanitizer can watch it (HAZARDS.md 10). This file must not fork.
//
// Every item is counted when taken (by a pop, a steal, or by the owner when the ring was full);
// after each round every count must be exactly 1: none lost, none taken twice.
#include <forkpool/detail/task_deque.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using forkpool::detail::Steal;
using forkpool::detail::TaskDeque;

#if defined(__SANITIZE_THREAD__)
constexpr std::uint64_t kItems = 20000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr std::uint64_t kItems = 20000;
#else
constexpr std::uint64_t kItems = 400000;
#endif
#else
constexpr std::uint64_t kItems = 400000;
#endif

struct Round {
  std::uint64_t capacity;
  unsigned thieves;
  unsigned pops_per_push;  // 0: the owner only pushes (and takes what does not fit)
};

std::string round_name(const ::testing::TestParamInfo<Round>& info) {
  return "capacity" + std::to_string(info.param.capacity) + "_thieves" +
         std::to_string(info.param.thieves) + "_pops" + std::to_string(info.param.pops_per_push);
}

class TaskDequeStress : public ::testing::TestWithParam<Round> {};

TEST_P(TaskDequeStress, EveryItemIsTakenExactlyOnce) {
  const Round r = GetParam();
  std::vector<std::atomic<std::uint64_t>> ring(r.capacity);
  TaskDeque<std::uint64_t> deque(ring.data(), r.capacity);
  const auto taken = std::make_unique<std::atomic<std::uint32_t>[]>(kItems + 1);
  std::atomic<bool> owner_done{false};
  const auto take = [&taken](std::uint64_t item) {
    taken[item].fetch_add(1, std::memory_order_relaxed);
  };

  std::vector<std::thread> thieves;
  for (unsigned t = 0; t < r.thieves; ++t)
    thieves.emplace_back([&] {
      for (;;) {
        // Read before stealing: an owner done and a deque empty after it means nothing is left.
        const bool done = owner_done.load(std::memory_order_acquire);
        const auto s = deque.steal();
        if (s.outcome == Steal::success)
          take(s.item);
        else if (s.outcome == Steal::empty && done)
          return;
      }
    });

  for (std::uint64_t item = 1; item <= kItems; ++item) {
    if (!deque.try_push(item)) take(item);  // full: the owner runs it itself
    for (unsigned p = 0; p < r.pops_per_push && item % 3 == 0; ++p) {
      std::uint64_t popped = 0;
      if (deque.try_pop(popped)) take(popped);
    }
  }
  std::uint64_t popped = 0;
  while (deque.try_pop(popped)) take(popped);
  owner_done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();

  std::uint64_t wrong = 0;
  for (std::uint64_t item = 1; item <= kItems; ++item)
    if (taken[item].load(std::memory_order_relaxed) != 1) ++wrong;
  EXPECT_EQ(wrong, 0u) << "items lost or taken twice";
  EXPECT_TRUE(deque.empty());
}

INSTANTIATE_TEST_SUITE_P(Rounds, TaskDequeStress,
                         ::testing::Values(Round{2, 1, 1}, Round{2, 3, 2}, Round{4, 3, 0},
                                           Round{16, 2, 1}, Round{1024, 3, 1}, Round{1024, 1, 0}),
                         round_name);

// The race for the last item: the owner pushes one item and pops it at once, while thieves try
// to steal it; exactly one side gets each.
TEST(TaskDequeStressLastItem, OwnerAndThievesNeverBothTakeIt) {
  std::vector<std::atomic<std::uint64_t>> ring(2);
  TaskDeque<std::uint64_t> deque(ring.data(), 2);
  const auto taken = std::make_unique<std::atomic<std::uint32_t>[]>(kItems + 1);
  std::atomic<bool> owner_done{false};
  std::vector<std::thread> thieves;
  for (unsigned t = 0; t < 2; ++t)
    thieves.emplace_back([&] {
      while (!owner_done.load(std::memory_order_acquire)) {
        const auto s = deque.steal();
        if (s.outcome == Steal::success) taken[s.item].fetch_add(1, std::memory_order_relaxed);
      }
    });
  for (std::uint64_t item = 1; item <= kItems; ++item) {
    ASSERT_TRUE(deque.try_push(item));
    std::uint64_t popped = 0;
    if (deque.try_pop(popped)) taken[popped].fetch_add(1, std::memory_order_relaxed);
  }
  owner_done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  std::uint64_t wrong = 0;
  for (std::uint64_t item = 1; item <= kItems; ++item)
    if (taken[item].load(std::memory_order_relaxed) != 1) ++wrong;
  EXPECT_EQ(wrong, 0u);
}

}  // namespace
