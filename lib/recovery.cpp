#include "recovery.hpp"

#include <forkpool/detail/chunking.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

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

bool disjoint_from(std::span<const LostSpan> spans, std::uint32_t subset,
                   std::span<const LostSpan> others) {
  for (std::size_t i = 0; i < spans.size(); ++i)
    if (subset >> i & 1)
      for (const LostSpan& o : others)
        if (spans[i].first < o.last && o.first < spans[i].last) return false;
  return true;
}

}  // namespace

SlotState read_slot(const WorkerSlot& slot, const ChunkRange& range, const Job& job) {
  const std::uint64_t committed = commit_count(slot.commit.load(std::memory_order_acquire));
  if (!has_constant_chunks(job.rule.kind)) {
    const ClaimRecord& r = slot.claims[slot.current_claim.load(std::memory_order_acquire)];
    return {r.first.load(std::memory_order_relaxed), r.last.load(std::memory_order_relaxed),
            r.base.load(std::memory_order_relaxed), committed, range.units()};
  }
  // The later of the two records, whole (ClaimRecord): its chunk is the worker's n-th.
  const std::uint64_t recorded[2] = {slot.claims[0].recorded.load(std::memory_order_acquire),
                                     slot.claims[1].recorded.load(std::memory_order_acquire)};
  const unsigned later = recorded[1] > recorded[0] ? 1 : 0;
  const ClaimRecord& r = slot.claims[later];
  const std::uint64_t n = recorded[later] >> 32;
  const std::uint64_t chunk_first = recorded[later] & 0xFFFFFFFFu;
  const std::uint64_t job_base = r.base.load(std::memory_order_relaxed);
  if (n == 0) return {job.first, job.first, job_base, committed, range.units()};
  const auto item = [&job](std::uint64_t unit) {
    return job.first + static_cast<std::int64_t>(std::min(job.count, unit * job.unit));
  };
  return {item(chunk_first),
          item(chunk_first + job.rule.chunk),
          job_base + (n - 1) * job.rule.chunk * job.unit,
          committed,
          range.units(),
          n,
          r.sum.load(std::memory_order_relaxed),
          r.sum_squares.load(std::memory_order_relaxed)};
}

namespace {

bool counter_kind(Schedule::Kind k) {
  using K = Schedule::Kind;
  return k == K::dynamic || k == K::guided || k == K::trapezoid || k == K::factoring ||
         k == K::fixed_size || k == K::adaptive_factoring || k == K::python;
}

bool range_kind(Schedule::Kind k) {
  using K = Schedule::Kind;
  return k == K::work_stealing || k == K::adaptive_stealing || k == K::automatic;
}

// Static schedules: worker w runs its own chunks in order, so the first `done` items of them are
// finished and every other one is lost: the rest of chunk k, then chunks k + 1, k + 2, ... of the
// worker, which are every (P * stride)-th chunk of the job from chunk k + 1's start.
void add_static_rest(const Job& job, unsigned w, std::uint64_t done, std::vector<LostSpan>& out) {
  const ClaimRule& rule = job.rule;
  const auto item = [&job](std::uint64_t unit) { return std::min(job.count, unit * job.unit); };
  const auto at = [&job](std::uint64_t offset) {
    return job.first + static_cast<std::int64_t>(offset);
  };
  if (rule.kind == Schedule::Kind::static_blocks) {
    const Block u = static_block(rule.units, rule.workers, w);
    if (item(u.first) + done < item(u.last))
      out.push_back({at(item(u.first) + done), at(item(u.last)), w, true});
    return;
  }
  // Every chunk of the worker but its last is a full one.
  const std::uint64_t chunk_items = rule.chunk * job.unit;
  const std::uint64_t k = done / chunk_items;
  const Block u = static_chunk(rule.units, rule.chunk, rule.workers, w, k, rule.chunk_stride);
  if (u.empty()) return;
  if (item(u.first) + done % chunk_items < item(u.last))
    out.push_back({at(item(u.first) + done % chunk_items), at(item(u.last)), w, true});
  const Block later =
      static_chunk(rule.units, rule.chunk, rule.workers, w, k + 1, rule.chunk_stride);
  if (!later.empty())
    out.push_back({at(item(later.first)), at(job.count), w, true, chunk_items,
                   rule.workers * rule.chunk_stride});
}

// Sums over the first n chunks of `chunk` units of c + 1 and (c + 1)^2 (mod 2^64), c = k chunk
// being chunk k's first unit: what the records of a job in which nobody died add up to. The sums
// of k and k^2 over k < n are divided before they are multiplied out, so that they are exact mod
// 2^64 too.
std::uint64_t sum_below(std::uint64_t n) {
  if (n == 0) return 0;
  std::uint64_t a = n, b = n - 1;
  (a % 2 == 0 ? a : b) /= 2;
  return a * b;
}
std::uint64_t sum_of_squares_below(std::uint64_t n) {
  if (n == 0) return 0;
  std::uint64_t a = n, b = n - 1, c = 2 * n - 1;
  (a % 2 == 0 ? a : b) /= 2;
  (a % 3 == 0 ? a : b % 3 == 0 ? b : c) /= 3;
  return a * b * c;
}
std::uint64_t sum_of_firsts(std::uint64_t n, std::uint64_t chunk) {
  return chunk * sum_below(n) + n;
}
std::uint64_t sum_of_squared_firsts(std::uint64_t n, std::uint64_t chunk) {
  return chunk * chunk * sum_of_squares_below(n) + 2 * chunk * sum_below(n) + n;
}

// The x and y, 1 <= y < x < 2^32, with x + y = sum and x^2 + y^2 = squares (mod 2^64); none when
// no such pair exists. (x - y)^2 = 2 squares - sum^2 is below 2^64, so exact mod 2^64.
std::optional<std::pair<std::uint64_t, std::uint64_t>> two_from_sums(std::uint64_t sum,
                                                                     std::uint64_t squares) {
  if (sum >= (std::uint64_t{1} << 33)) return std::nullopt;
  const std::uint64_t d2 = 2 * squares - sum * sum;
  auto d = static_cast<std::uint64_t>(std::sqrt(static_cast<long double>(d2)));
  while (d > 0 && (d > 0xFFFFFFFFu || d * d > d2)) --d;
  while (d < 0xFFFFFFFFu && (d + 1) * (d + 1) <= d2) ++d;
  if (d * d != d2 || d == 0 || d >= sum || (sum - d) % 2 != 0) return std::nullopt;
  return std::pair{(sum + d) / 2, (sum - d) / 2};
}

// Constant chunks: the chunks that were handed out and that no worker's record holds, because
// their workers died between the fetch_add and the record (see the top of recovery.hpp).
void add_unrecorded(const Job& job, std::uint64_t next_unit, std::span<const SlotState> slots,
                    std::span<const unsigned> dead, std::vector<LostSpan>& out) {
  const std::uint64_t chunk = job.rule.chunk;
  const std::uint64_t handed_out = ceil_div(next_unit, chunk);
  std::uint64_t recorded = 0, sum = sum_of_firsts(handed_out, chunk),
                squares = sum_of_squared_firsts(handed_out, chunk);
  for (const SlotState& s : slots) {
    recorded += s.chunks;
    sum -= s.sum;
    squares -= s.sum_squares;
  }
  if (recorded >= handed_out) return;
  const auto item = [&job](std::uint64_t unit) {
    return job.first + static_cast<std::int64_t>(std::min(job.count, unit * job.unit));
  };
  const auto chunk_at = [&](std::uint64_t first_unit) {
    return LostSpan{item(first_unit), item(first_unit + chunk), dead.front(), true};
  };
  const auto is_chunk = [&](std::uint64_t first_unit) {
    return first_unit % chunk == 0 && first_unit < next_unit;
  };
  const std::uint64_t missing = handed_out - recorded;
  if (missing == 1 && sum >= 1 && is_chunk(sum - 1)) {
    out.push_back(chunk_at(sum - 1));
    return;
  }
  if (missing == 2)
    if (const auto xy = two_from_sums(sum, squares);
        xy && is_chunk(xy->first - 1) && is_chunk(xy->second - 1)) {
      out.push_back(chunk_at(xy->first - 1));
      out.push_back(chunk_at(xy->second - 1));
      return;
    }
  // Each unrecorded chunk comes after its worker's last record, below the counter.
  std::int64_t from = job.first + static_cast<std::int64_t>(job.count);
  for (unsigned w : dead)
    from = std::min(from, slots[w].chunks == 0 ? job.first : slots[w].claim_last);
  if (from < item(next_unit)) out.push_back({from, item(next_unit), dead.front(), false});
}

}  // namespace

std::vector<LostSpan> lost_candidates(const Job& job, std::uint64_t next,
                                      std::span<const SlotState> slots,
                                      std::span<const unsigned> dead) {
  const Schedule::Kind kind = job.rule.kind;
  const std::int64_t job_last = job.first + static_cast<std::int64_t>(job.count);
  const std::int64_t unclaimed =
      counter_kind(kind) ? job.first + static_cast<std::int64_t>(std::min(next, job.count))
                         : job_last;
  std::vector<LostSpan> out;
  const auto add = [&](std::int64_t first, std::int64_t last, unsigned w, bool certain) {
    first = std::max(first, job.first);
    last = std::min({last, job_last, std::max(unclaimed, first)});
    if (first < last) out.push_back({first, last, w, certain});
  };
  for (unsigned w : dead) {
    const SlotState& s = slots[w];
    if (kind == Schedule::Kind::static_blocks || kind == Schedule::Kind::static_chunked) {
      if (s.committed >= s.claim_base) add_static_rest(job, w, s.committed - s.claim_base, out);
      continue;
    }
    // A constant chunk's record was written after its claim took effect: lost for sure.
    if (s.committed >= s.claim_base && s.claim_first <= s.claim_last) {
      const std::uint64_t done = s.committed - s.claim_base;
      const auto size = static_cast<std::uint64_t>(s.claim_last - s.claim_first);
      if (done < size)
        add(s.claim_first + static_cast<std::int64_t>(done), s.claim_last, w,
            has_constant_chunks(kind));
    }
    if (range_kind(kind) && !s.range.empty()) {
      const Block b{std::uint64_t{s.range.first} * job.unit,
                    std::min(job.count, std::uint64_t{s.range.last} * job.unit)};
      add(job.first + static_cast<std::int64_t>(b.first),
          job.first + static_cast<std::int64_t>(b.last), w, true);
    }
  }
  if (has_constant_chunks(kind) && !dead.empty())
    add_unrecorded(job, ceil_div(std::min(next, job.count), job.unit), slots, dead, out);
  if (unclaimed < job_last && !dead.empty())
    out.push_back({unclaimed, job_last, dead.front(), true});
  return out;
}

std::optional<std::vector<LostSpan>> exact_loss(std::span<const LostSpan> candidates,
                                                std::uint64_t missing) {
  std::vector<LostSpan> out, uncertain;
  for (const LostSpan& c : candidates) {
    if (!c.certain) {
      uncertain.push_back(c);
      continue;
    }
    if (c.size() > missing) return std::nullopt;
    missing -= c.size();
    out.push_back(c);
  }
  if (uncertain.size() > kMaxSearched) return std::nullopt;
  std::optional<std::uint32_t> found;
  for (std::uint32_t subset = 0; subset < (std::uint32_t{1} << uncertain.size()); ++subset) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < uncertain.size(); ++i)
      if (subset >> i & 1) sum += uncertain[i].size();
    if (sum != missing || !disjoint(uncertain, subset) || !disjoint_from(uncertain, subset, out))
      continue;
    if (found) return std::nullopt;
    found = subset;
  }
  if (!found) return std::nullopt;
  for (std::size_t i = 0; i < uncertain.size(); ++i)
    if (*found >> i & 1) out.push_back(uncertain[i]);
  return out;
}

}  // namespace forkpool::detail
