// The parent's side of a map of encoded results: the blocks of each round (the algorithm is at
// the top of include/forkpool/detail/encoded_results.hpp).
#include <forkpool/detail/encoded_results.hpp>
#include <forkpool/forkpool.hpp>

#include <algorithm>
#include <string>

namespace forkpool::detail {
namespace {

// Each worker's first-round arena holds at least this much, so that it is never empty.
constexpr std::size_t kMinArenaBytes = 64;
// What a later round needs per item besides its bytes: its item, place and StoredResult.
constexpr std::size_t kRoundBytesPerItem =
    sizeof(std::int64_t) + 2 * sizeof(StoredResult) + alignof(std::max_align_t);

std::size_t round_up(std::size_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

// One block, kept by the segment as its spare between maps (segment.hpp): the same size each
// time while the segment's use stays the same, so that the next map reuses it and the pages its
// results touched are mapped in every process already.
ResultRound::ResultRound(std::shared_ptr<Segment> segment, std::int64_t first, std::size_t count,
                         unsigned workers)
    : blocks_(std::move(segment)), count_(count), workers_(workers) {
  places_.first = first;
  if (count == 0) return;
  const std::size_t head = round_up(sizeof(ArenaCursor) * workers + sizeof(StoredResult) * count);
  const std::size_t half = blocks_.segment->available_bytes() / 2;
  const std::size_t capacity = half > head ? (half - head) / workers / 64 * 64 : 0;
  places_.capacity = std::max(capacity, kMinArenaBytes);
  auto* block = static_cast<std::byte*>(blocks_.allocate(
      head + places_.capacity * workers, alignof(ArenaCursor), "the results of map"));
  places_.cursors = new (block) ArenaCursor[workers];
  places_.stored = reinterpret_cast<StoredResult*>(block + sizeof(ArenaCursor) * workers);
  places_.arenas = block + head;
}

ResultRound::ResultRound(std::shared_ptr<Segment> segment, std::int64_t first,
                         std::vector<PendingResult>& pending)
    : blocks_(std::move(segment)) {
  places_.first = first;
  const std::size_t budget = blocks_.segment->available_bytes() / 2;
  std::size_t bytes = 0, used = 0;  // the results' bytes; with each item's own arrays
  auto from = pending.end();
  while (from != pending.begin()) {
    const std::size_t need = std::prev(from)->size + kRoundBytesPerItem;
    if (from != pending.end() && (need > budget || used > budget - need)) break;
    bytes += std::prev(from)->size;
    used += need;
    --from;
  }
  count_ = static_cast<std::size_t>(pending.end() - from);
  auto* items = static_cast<std::int64_t*>(blocks_.allocate(
      sizeof(std::int64_t) * count_, alignof(std::int64_t), "the items of map to rerun"));
  auto* reserved = static_cast<StoredResult*>(blocks_.allocate(
      sizeof(StoredResult) * count_, alignof(StoredResult), "the result places of map"));
  places_.stored = static_cast<StoredResult*>(blocks_.allocate(
      sizeof(StoredResult) * count_, alignof(StoredResult), "the result descriptors of map"));
  auto* block =
      static_cast<std::byte*>(blocks_.allocate(bytes, 1, "the results of map that did not fit"));
  for (std::size_t j = 0; j < count_; ++j) {
    const PendingResult& p = from[static_cast<std::ptrdiff_t>(j)];
    items[j] = p.item;
    reserved[j] = {block, p.size};
    block += p.size;
  }
  places_.items = items;
  places_.reserved = reserved;
  pending.erase(from, pending.end());
}

ResultRound::Blocks::~Blocks() {
  for (auto it = held.rbegin(); it != held.rend(); ++it) segment->deallocate(it->first, it->second);
}

void* ResultRound::Blocks::allocate(std::size_t bytes, std::size_t align, const char* what) {
  held.reserve(held.size() + 1);
  void* p = segment->allocate(bytes, align, what);
  held.emplace_back(p, bytes);
  return p;
}

void ResultRound::prefault_for_reading() noexcept {
  blocks_.segment->prefault(places_.stored, sizeof(StoredResult) * count_, false);
  if (places_.items != nullptr) {
    if (count_ > 0)
      blocks_.segment->prefault(
          places_.reserved[0].data,
          static_cast<std::size_t>(places_.reserved[count_ - 1].data - places_.reserved[0].data) +
              places_.reserved[count_ - 1].size,
          false);
    return;
  }
  for (unsigned w = 0; w < workers_ && places_.cursors != nullptr; ++w)
    blocks_.segment->prefault(places_.arenas + std::size_t{w} * places_.capacity,
                              places_.cursors[w].used.load(std::memory_order_relaxed), false);
}

void ResultRound::throw_result_grew(std::size_t j, std::size_t size) const {
  throw Error("forkpool: f's result for index " + std::to_string(places_.first + places_.items[j]) +
              " needed " + std::to_string(size) + " bytes when run again, more than the " +
              std::to_string(places_.reserved[j].size) +
              " of its first run; a map of encoded results runs the items whose results did not "
              "fit the first time again, so f must give results of the same size each time "
              "(or raise Options::segment_bytes, so that they fit the first time)");
}

}  // namespace forkpool::detail
