#include <forkpool/detail/segment.hpp>
#include <forkpool/forkpool.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/managed_external_buffer.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <system_error>

namespace forkpool::detail {
namespace bip = boost::interprocess;
namespace {

// Blocks at least this large are kept as the spare when freed, and have their pages given back
// when they stop being the spare.
constexpr std::size_t kLargeBlock = std::size_t{1} << 20;
// prefault() works in blocks of this size and ignores ranges smaller than one.
constexpr std::size_t kPrefaultBlock = std::size_t{64} << 10;

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

}  // namespace

struct Segment::Allocator {
  Allocator(void* base, std::size_t bytes) : buffer(bip::create_only, base, bytes) {}
  bip::managed_external_buffer buffer;
};

struct Segment::Shared {
  std::atomic<std::uint64_t> removal_epoch{0};  // bumped whenever pages are given back
};

Segment::Segment(std::size_t bytes) : base_(nullptr), size_(bytes), owner_(this_process()) {
  if (bytes < (std::size_t{1} << 20))
    throw std::invalid_argument("forkpool: Options::segment_bytes must be at least 1048576 (got " +
                                std::to_string(bytes) + ")");
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED)
    throw std::system_error(errno, std::generic_category(),
                            "forkpool: cannot map a shared segment of " + std::to_string(bytes) +
                                " bytes (Options::segment_bytes)");
  base_ = static_cast<std::byte*>(p);
  const std::size_t bitmap_bytes = (bytes / kPrefaultBlock / 64 + 1) * sizeof(std::uint64_t);
  void* bitmap = mmap(nullptr, bitmap_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (bitmap == MAP_FAILED) {
    munmap(p, bytes);
    throw std::system_error(errno, std::generic_category(), "forkpool: cannot map the page bitmap");
  }
  mapped_ = static_cast<std::atomic<std::uint64_t>*>(bitmap);
  try {
    allocator_ = new Allocator(p, bytes);
    shared_ = new (allocate(sizeof(Shared), alignof(Shared), "its header")) Shared;
  } catch (...) {
    delete allocator_;
    munmap(bitmap, bitmap_bytes);
    munmap(p, bytes);
    throw;
  }
}

Segment::~Segment() {
  delete allocator_;
  munmap(mapped_, (size_ / kPrefaultBlock / 64 + 1) * sizeof(std::uint64_t));
  munmap(base_, size_);
}

void* Segment::allocate(std::size_t bytes, std::size_t align, const char* what) {
  if (bytes == 0) return nullptr;
  align = std::max(align, alignof(std::max_align_t));
  const std::lock_guard lock(mutex_);
  if (spare_ != nullptr && bytes >= kLargeBlock && bytes <= spare_bytes_ &&
      bytes >= spare_bytes_ / 2 && address(spare_) % align == 0) {
    lent_ = std::exchange(spare_, nullptr);
    lent_bytes_ = spare_bytes_;
    return lent_;
  }
  void* p = allocator_->buffer.allocate_aligned(bytes, align, std::nothrow);
  if (p == nullptr && spare_ != nullptr) {
    release(std::exchange(spare_, nullptr), spare_bytes_);
    p = allocator_->buffer.allocate_aligned(bytes, align, std::nothrow);
  }
  if (p == nullptr)
    throw SegmentFull("forkpool: the shared segment cannot hold " + std::string(what) +
                      ": it needs " + std::to_string(bytes) + " bytes and " +
                      std::to_string(allocator_->buffer.get_free_memory()) + " of its " +
                      std::to_string(size_) + " bytes are free; raise Options::segment_bytes");
  return p;
}

void Segment::deallocate(void* p, std::size_t bytes) noexcept {
  if (p == nullptr || this_process() != owner_) return;
  const std::lock_guard lock(mutex_);
  if (p == lent_) {
    bytes = lent_bytes_;
    lent_ = nullptr;
  }
  if (bytes < kLargeBlock) return allocator_->buffer.deallocate(p);
  if (spare_ != nullptr) release(spare_, spare_bytes_);
  spare_ = p;
  spare_bytes_ = bytes;
}

// Gives a block's whole pages back (MADV_REMOVE punches a hole in the memory behind the mapping,
// for every process that maps it) and frees it. Called with mutex_ held.
void Segment::release(void* p, std::size_t bytes) noexcept {
  if (bytes >= kLargeBlock) {
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const std::uintptr_t lo = (address(p) + page - 1) / page * page;
    const std::uintptr_t hi = (address(p) + bytes) / page * page;
    shared_->removal_epoch.fetch_add(1, std::memory_order_release);
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_REMOVE);
  }
  allocator_->buffer.deallocate(p);
}

void Segment::prefault(const void* p, std::size_t bytes, bool write) noexcept {
  if (bytes < kPrefaultBlock || !contains(p)) return;
  const std::uint64_t epoch = shared_->removal_epoch.load(std::memory_order_acquire);
  if (mapped_epoch_.exchange(epoch, std::memory_order_relaxed) != epoch)
    std::memset(static_cast<void*>(mapped_), 0, (size_ / kPrefaultBlock / 64 + 1) * 8);
  const std::size_t first = (address(p) - address(base_)) / kPrefaultBlock;
  const std::size_t last =
      std::min(size_, address(p) - address(base_) + bytes + kPrefaultBlock - 1) / kPrefaultBlock;
  const auto is_mapped = [this](std::size_t b) {
    return (mapped_[b / 64].load(std::memory_order_relaxed) >> (b % 64)) & 1;
  };
  for (std::size_t b = first; b < last;) {
    if (is_mapped(b)) {
      ++b;
      continue;
    }
    std::size_t e = b + 1;
    while (e < last && !is_mapped(e)) ++e;
    madvise(base_ + b * kPrefaultBlock, (e - b) * kPrefaultBlock,
            write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
    for (; b < e; ++b)
      mapped_[b / 64].fetch_or(std::uint64_t{1} << (b % 64), std::memory_order_relaxed);
  }
}

bool Segment::contains(const void* p) const noexcept {
  return address(p) >= address(base_) && address(p) < address(base_) + size_;
}

std::size_t Segment::free_bytes() const noexcept {
  const std::lock_guard lock(mutex_);
  return allocator_->buffer.get_free_memory();
}

std::size_t Segment::available_bytes() const noexcept {
  const std::lock_guard lock(mutex_);
  return allocator_->buffer.get_free_memory() + (spare_ != nullptr ? spare_bytes_ : 0);
}

}  // namespace forkpool::detail
