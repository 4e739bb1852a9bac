// libFuzzer target over the scheduler's arithmetic: the chunk-size rules (detail/chunking.hpp),
// ChunkRange (detail/chunk_range.hpp) and every schedule's claims (detail/claimer.hpp).
// test_chunking.cpp checks chosen points; this searches the whole parameter space for what those
// points can miss: a size outside [1, remaining], a wrap-around near 2^62 items or 2^32 units, and
// a schedule that hands out an index twice, loses one or never finishes. The schedules run on one
// thread, whole claims in an order the input chooses (what can happen inside a claim's CAS is for
// the TSan stress tests).
#include <forkpool/detail/chunk_range.hpp>
#include <forkpool/detail/chunking.hpp>
#include <forkpool/detail/claimer.hpp>
#include <forkpool/detail/claims.hpp>

#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

namespace {

using forkpool::Schedule;
using forkpool::detail::af_chunk;
using forkpool::detail::af_probe_chunk;
using forkpool::detail::AfSums;
using forkpool::detail::auto_grain;
using forkpool::detail::Block;
using forkpool::detail::ceil_div;
using forkpool::detail::ChunkCounter;
using forkpool::detail::ChunkRange;
using forkpool::detail::Claimer;
using forkpool::detail::ClaimRule;
using forkpool::detail::factoring_chunk;
using forkpool::detail::fixed_size_chunk;
using forkpool::detail::guided_chunk;
using forkpool::detail::ItemTime;
using forkpool::detail::kAutoGrainsPerWorker;
using forkpool::detail::make_claim_rule;
using forkpool::detail::own_take;
using forkpool::detail::paced_grain;
using forkpool::detail::paced_take;
using forkpool::detail::python_chunksize;
using forkpool::detail::reset_schedule_state;
using forkpool::detail::ScheduleState;
using forkpool::detail::SharedItemTime;
using forkpool::detail::static_block;
using forkpool::detail::Steal;
using forkpool::detail::steal_amount;
using forkpool::detail::Stealer;
using forkpool::detail::trapezoid_chunk;
using forkpool::detail::trapezoid_rule;
using forkpool::detail::TrapezoidRule;
using forkpool::detail::UnitSpan;

using u64 = std::uint64_t;
using u128 = unsigned __int128;  // exact products of two u64

constexpr u64 kMaxU64 = ~u64{0};
constexpr u64 kMaxU32 = 0xFFFFFFFFu;
constexpr unsigned kMaxWorkers = 1024;
// The simulations hand out every chunk, so they keep to sizes that finish in milliseconds.
constexpr u64 kMaxSimulatedUnits = u64{1} << 20;
constexpr u64 kMaxStaticParts = 4096;

// A value in [lo, hi] with a uniformly chosen bit length: small cases, where most bugs show, come
// up as often as large ones, and a simulated run is short on average (its cost grows with P^2).
u64 log_uniform(FuzzedDataProvider& in, u64 lo, u64 hi) {
  const int bits = in.ConsumeIntegralInRange<int>(0, std::bit_width(hi));
  const u64 top = bits == 64 ? kMaxU64 : (u64{1} << bits) - 1;
  return in.ConsumeIntegralInRange<u64>(lo, std::clamp(top, lo, hi));
}

// `chunks` (reordered here) are non-empty and tile [first, last): none overlap, none is missing.
void check_tiling(std::vector<Block>& chunks, u64 first, u64 last) {
  std::sort(chunks.begin(), chunks.end(),
            [](const Block& a, const Block& b) { return a.first < b.first; });
  for (const Block& c : chunks) {
    CHECK(c.first == first && c.first < c.last);
    first = c.last;
  }
  CHECK(first == last);
}

// Every rule, anywhere in 64 bits; a grain or min_chunk is at least 1, as Schedule and make_job
// guarantee.
void rules(FuzzedDataProvider& in) {
  const auto remaining = in.ConsumeIntegralInRange<u64>(1, kMaxU64);
  const auto workers = in.ConsumeIntegralInRange<u64>(1, kMaxWorkers);
  const auto param = in.ConsumeIntegralInRange<u64>(1, kMaxU64);
  const auto divisor = in.ConsumeIntegralInRange<u64>(1, kMaxU64);

  const u128 q = ceil_div(remaining, divisor);
  CHECK(q * divisor >= remaining && q * divisor < u128{remaining} + divisor);

  const auto sized = [&](u64 n) { return n >= 1 && n <= remaining; };
  const u64 guided = guided_chunk(remaining, workers, param);
  CHECK(sized(guided) && guided >= std::min(remaining, param) &&
        u128{guided} * workers >= remaining);
  const u64 own = own_take(remaining, param);
  CHECK(sized(own) && own >= std::min(remaining, param));
  // A paced piece is at least one unit, at most the next piece and at most own_take.
  const auto piece = in.ConsumeIntegralInRange<u64>(1, kMaxU64);
  const u64 paced = paced_take(remaining, piece, param);
  CHECK(sized(paced) && paced <= piece && paced <= own);
  // A steal takes everything or leaves the victim at least a grain, and takes at least one.
  const u64 stolen = steal_amount(remaining, param);
  CHECK(sized(stolen) && (stolen == remaining || (stolen >= param && remaining - stolen >= param)));

  const u64 grain = auto_grain(remaining, workers);
  CHECK(grain >= 1 && (grain == 1 || u128{grain} * workers * kAutoGrainsPerWorker <= remaining));

  // The self-scheduling rules work in units: a map of `count` < 2^32 units, `left` not claimed.
  const u64 left = std::min(remaining, kMaxU32);
  const auto fits = [&](u64 n) { return n >= 1 && n <= left; };
  const auto count = in.ConsumeIntegralInRange<u64>(left, kMaxU32);
  const auto index = in.ConsumeIntegral<std::uint32_t>();
  const auto first = in.ConsumeIntegralInRange<u64>(0, kMaxU32);
  const TrapezoidRule t = trapezoid_rule(count, workers, first, param);
  CHECK(t.first >= 1 && t.last >= 1 && t.last <= t.first);
  CHECK(fits(trapezoid_chunk(t, index, left)));
  CHECK(fits(factoring_chunk(count, workers, index, left)));
  const u64 fixed = fixed_size_chunk(count, workers);
  CHECK(fixed >= 1 && fixed <= std::max<u64>(1, ceil_div(count, workers)));
  const u64 python = python_chunksize(count, workers);
  CHECK(python >= 1 && python <= count);
  CHECK(fits(af_probe_chunk(count, workers, left)));
  // Any estimates, as a worker may publish them (a mean > 0 for the worker itself).
  AfSums sums;
  const ItemTime self{static_cast<double>(in.ConsumeIntegralInRange<u64>(1, kMaxU64)) / 1e3,
                      static_cast<double>(in.ConsumeIntegral<u64>())};
  sums.add(self);
  sums.add({static_cast<double>(in.ConsumeIntegral<u64>()) / 1e3,
            static_cast<double>(in.ConsumeIntegral<u64>())});
  CHECK(sized(af_chunk(sums, self, remaining)));
  CHECK(paced_grain(in.ConsumeIntegral<u64>(), in.ConsumeIntegral<u64>()) >= 1);
}

// static_block: the parts tile [0, count) in order, the first count % parts one item longer.
void static_blocks(FuzzedDataProvider& in) {
  const auto count = in.ConsumeIntegral<u64>();
  const auto parts = in.ConsumeIntegralInRange<u64>(1, kMaxStaticParts);
  u64 next = 0;
  for (u64 w = 0; w < parts; ++w) {
    const Block b = static_block(count, parts, w);
    CHECK(b.first == next && b.first <= b.last &&
          b.last - b.first == count / parts + (w < count % parts ? 1 : 0));
    next = b.last;
  }
  CHECK(next == count);
}

// One ChunkRange anywhere in the 32-bit unit space, up to its full size: each take and steal is
// exactly the span its rule names, at its end of the range.
void chunk_range(FuzzedDataProvider& in) {
  const auto first = in.ConsumeIntegralInRange<u64>(0, ChunkRange::kMaxUnits);
  const auto last = in.ConsumeIntegralInRange<u64>(first, ChunkRange::kMaxUnits);
  const auto grain = in.ConsumeIntegralInRange<u64>(1, kMaxU64);
  ChunkRange range;
  range.reset({static_cast<std::uint32_t>(first), static_cast<std::uint32_t>(last)});
  u64 lo = first, hi = last;  // the model
  for (int op = 0; op < 64 && in.remaining_bytes() > 0; ++op) {
    CHECK(range.remaining() == hi - lo);
    if (in.ConsumeBool()) {
      const UnitSpan s = range.take_front([&](u64 r) { return own_take(r, grain); });
      const u64 n = lo == hi ? 0 : own_take(hi - lo, grain);
      CHECK(s.first == (n == 0 ? 0 : lo) && s.size() == n);
      lo += n;
    } else {
      const auto r = range.steal_back([&](u64 left) { return steal_amount(left, grain); });
      const u64 n = lo == hi ? 0 : steal_amount(hi - lo, grain);
      CHECK(r.outcome == (n == 0 ? Steal::empty : Steal::success) && r.span.size() == n &&
            (n == 0 || r.span.last == hi));
      hi -= n;
    }
  }
}

// Work stealing as lib/scheduler.cpp runs it: P Stealers over ranges initialised to the static
// blocks of `units`, placed anywhere in the 32-bit unit space; the input picks which worker takes
// its next step. A worker stops at its first empty span.
void work_stealing(FuzzedDataProvider& in) {
  const auto workers = static_cast<unsigned>(log_uniform(in, 1, kMaxWorkers));
  const u64 units = log_uniform(in, 0, kMaxSimulatedUnits);
  const auto base = in.ConsumeIntegralInRange<u64>(0, ChunkRange::kMaxUnits - units);
  const u64 grain =
      in.ConsumeBool() ? auto_grain(units, workers) : in.ConsumeIntegralInRange<u64>(1, kMaxU64);

  std::vector<ChunkRange> ranges(workers);
  std::vector<Stealer<>> stealers;
  stealers.reserve(workers);
  for (unsigned w = 0; w < workers; ++w) {
    const Block b = static_block(units, workers, w);
    ranges[w].reset(
        {static_cast<std::uint32_t>(base + b.first), static_cast<std::uint32_t>(base + b.last)});
    stealers.emplace_back(ranges.data(), workers, w, grain);
  }
  std::vector<unsigned> running(workers);
  std::iota(running.begin(), running.end(), 0u);
  std::vector<Block> spans;
  // A step hands out at least one unit or stops a worker: a correct run needs < units + P steps.
  for (u64 step = 0; !running.empty(); ++step) {
    CHECK(step < units + workers);
    const auto k = in.ConsumeIntegralInRange<std::size_t>(0, running.size() - 1);
    const UnitSpan s = stealers[running[k]].next();
    if (s.empty())
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
    else
      spans.push_back({s.first, s.last});
  }
  for (const ChunkRange& r : ranges) CHECK(r.remaining() == 0);
  check_tiling(spans, base, base + units);
}

// Every schedule as lib/scheduler.cpp runs it, through P Claimers over `units` units; the input
// picks which worker takes its next step and what each chunk seems to cost (for the adaptive
// schedules). A worker stops at its first empty chunk.
void every_schedule(FuzzedDataProvider& in) {
  const auto workers = static_cast<unsigned>(log_uniform(in, 1, kMaxWorkers));
  const u64 units = log_uniform(in, 0, kMaxSimulatedUnits);
  const auto unit = in.ConsumeIntegralInRange<u64>(1, kMaxU64);
  // Sizes in items, so that make_claim_rule's rounding to units is exercised too; small chunks
  // only with few units, so that a run stays short.
  const u64 least = unit > kMaxU64 / 2 ? 1 : std::max<u64>(1, ceil_div(units, 4096) * unit);
  const auto size = [&] { return in.ConsumeIntegralInRange<u64>(least, kMaxU64); };
  Schedule schedule = Schedule::static_blocks();
  switch (in.ConsumeIntegralInRange<int>(0, 11)) {
    case 0:
      schedule = Schedule::static_blocks();
      break;
    case 1:
      schedule = Schedule::static_chunked(size());
      break;
    case 2:
      schedule = Schedule::dynamic(size());
      break;
    case 3:
      schedule = Schedule::guided(size());
      break;
    case 4: {
      const u64 last = size();
      schedule = Schedule::trapezoid(
          in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<u64>(last, kMaxU64), last);
      break;
    }
    case 5:
      schedule = Schedule::factoring();
      break;
    case 6:
      schedule = Schedule::fixed_size();
      break;
    case 7:
      schedule = Schedule::adaptive_factoring();
      break;
    case 8:
      schedule = Schedule::work_stealing(in.ConsumeBool() ? 0 : size());
      break;
    case 9:
      schedule = Schedule::adaptive_stealing();
      break;
    case 10:
      schedule = Schedule::python(in.ConsumeBool() ? 0 : size());
      break;
    default:
      schedule = Schedule::automatic();
      break;
  }
  const ClaimRule rule =
      make_claim_rule(schedule, static_cast<std::uint32_t>(units), workers, unit);
  ChunkCounter counter;
  std::vector<ChunkRange> ranges(workers);
  std::vector<SharedItemTime> times(workers);
  const ScheduleState state{&counter, ranges.data(), times.data()};
  reset_schedule_state(rule, state);
  std::vector<std::unique_ptr<Claimer<>>> claimers;
  for (unsigned w = 0; w < workers; ++w)
    claimers.push_back(std::make_unique<Claimer<>>(rule, state, w));
  std::vector<unsigned> running(workers);
  std::iota(running.begin(), running.end(), 0u);
  std::vector<Block> spans;
  for (u64 step = 0; !running.empty(); ++step) {
    CHECK(step < units + workers);
    const auto k = in.ConsumeIntegralInRange<std::size_t>(0, running.size() - 1);
    Claimer<>& c = *claimers[running[k]];
    const UnitSpan s = c.next();
    if (s.empty()) {
      running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
      continue;
    }
    spans.push_back({s.first, s.last});
    if (c.measured()) c.record(s.size(), in.ConsumeIntegral<std::uint32_t>());
  }
  check_tiling(spans, 0, units);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
      rules(in);
      break;
    case 1:
      static_blocks(in);
      break;
    case 2:
      chunk_range(in);
      break;
    case 3:
      work_stealing(in);
      break;
    case 4:
      every_schedule(in);
      break;
  }
  return 0;
}
