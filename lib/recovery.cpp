#include "recovery.hpp"

#include <forkpool/detail/chunking.hpp>

#include <algorithm>

namespace forkpool::detail {
namespace {

// Subsets of up to this many candidates are searched; more would take too long to tell apart.
constexpr std::size_t kMaxSearched = 16;

bool disjoint(std::span<const LostSpan> spans, std::uint32_t subset) {
  for (std::size_t i = 0; i < spans.size(); ++i)
    for (std::size_t j = i + 1; j < spans.size(); ++j)
      if ((subset >> i & 1) && (subset >> j & 1) && spans[i].first < spans[j].last &&
          spans[j].first < spans[i].last)
        return false;
  return true;
}

}  // namespace

SlotState read_slot(const WorkerSlot& slot, const ChunkRange& range) {
  return {slot.claim_first.load(std::memory_order_acquire),
          slot.claim_last.load(std::memory_order_acquire),
          slot.claim_base.load(std::memory_order_acquire),
          commit_count(slot.commit.load(std::memory_order_acquire)), range.units()};
}

std::vector<LostSpan> lost_candidates(const Job& job, std::uint64_t next,
                                      std::span<const SlotState> slots,
                                      std::span<const unsigned> dead) {
  const std::int64_t job_last = job.first + static_cast<std::int64_t>(job.count);
  const std::int64_t unclaimed =
      job.kind == Schedule::Kind::dynamic || job.kind == Schedule::Kind::guided
          ? job.first + static_cast<std::int64_t>(std::min(next, job.count))
          : job_last;
  std::vector<LostSpan> out;
  const auto add = [&](std::int64_t first, std::int64_t last, unsigned w) {
    first = std::max(first, job.first);
    last = std::min({last, job_last, std::max(unclaimed, first)});
    if (first < last) out.push_back({first, last, w});
  };
  for (unsigned w : dead) {
    const SlotState& s = slots[w];
    // A torn announce (the worker died while writing it) can only be a false candidate.
    if (s.committed >= s.claim_base && s.claim_first <= s.claim_last) {
      const std::uint64_t done = s.committed - s.claim_base;
      const auto size = static_cast<std::uint64_t>(s.claim_last - s.claim_first);
      if (done < size) add(s.claim_first + static_cast<std::int64_t>(done), s.claim_last, w);
    }
    if (job.kind == Schedule::Kind::work_stealing && !s.range.empty()) {
      const Block b{std::uint64_t{s.range.first} * job.unit,
                    std::min(job.count, std::uint64_t{s.range.last} * job.unit)};
      add(job.first + static_cast<std::int64_t>(b.first),
          job.first + static_cast<std::int64_t>(b.last), w);
    }
  }
  if (unclaimed < job_last && !dead.empty()) out.push_back({unclaimed, job_last, dead.front()});
  return out;
}

std::optional<std::vector<LostSpan>> exact_loss(std::span<const LostSpan> candidates,
                                                std::uint64_t missing) {
  if (candidates.size() > kMaxSearched) return std::nullopt;
  std::optional<std::uint32_t> found;
  for (std::uint32_t subset = 0; subset < (std::uint32_t{1} << candidates.size()); ++subset) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < candidates.size(); ++i)
      if (subset >> i & 1) sum += candidates[i].size();
    if (sum != missing || !disjoint(candidates, subset)) continue;
    if (found) return std::nullopt;
    found = subset;
  }
  if (!found) return std::nullopt;
  std::vector<LostSpan> out;
  for (std::size_t i = 0; i < candidates.size(); ++i)
    if (*found >> i & 1) out.push_back(candidates[i]);
  return out;
}

}  // namespace forkpool::detail
