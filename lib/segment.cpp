#include <forkpool/detail/segment.hpp>
#include <forkpool/forkpool.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/managed_external_buffer.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <system_error>

namespace forkpool::detail {
namespace bip = boost::interprocess;

// Freed blocks at least this large give their whole pages back (MADV_REMOVE punches a hole in
// the shared memory behind the mapping, for every process that maps it).
constexpr std::size_t kReleaseThreshold = std::size_t{1} << 20;

struct Segment::Allocator {
  Allocator(void* base, std::size_t bytes) : buffer(bip::create_only, base, bytes) {}
  bip::managed_external_buffer buffer;
};

Segment::Segment(std::size_t bytes) : base_(nullptr), size_(bytes), owner_(getpid()) {
  if (bytes < (std::size_t{1} << 16))
    throw std::invalid_argument("forkpool: Options::segment_bytes must be at least 65536 (got " +
                                std::to_string(bytes) + ")");
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED)
    throw std::system_error(errno, std::generic_category(),
                            "forkpool: cannot map a shared segment of " + std::to_string(bytes) +
                                " bytes (Options::segment_bytes)");
  base_ = p;
  try {
    allocator_ = new Allocator(p, bytes);
  } catch (...) {
    munmap(p, bytes);
    throw;
  }
}

Segment::~Segment() {
  delete allocator_;
  munmap(base_, size_);
}

void* Segment::allocate(std::size_t bytes, std::size_t align, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = allocator_->buffer.allocate_aligned(bytes, std::max(align, alignof(std::max_align_t)),
                                                std::nothrow);
  if (p == nullptr)
    throw SegmentFull("forkpool: the shared segment cannot hold " + std::string(what) + ": it needs " +
                      std::to_string(bytes) + " bytes and " + std::to_string(free_bytes()) +
                      " of its " + std::to_string(size_) +
                      " bytes are free; raise Options::segment_bytes");
  return p;
}

void Segment::deallocate(void* p, std::size_t bytes) noexcept {
  if (p == nullptr || getpid() != owner_) return;
  if (bytes >= kReleaseThreshold) {
    const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto lo = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
    const auto hi = (reinterpret_cast<std::uintptr_t>(p) + bytes) / page * page;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_REMOVE);
  }
  allocator_->buffer.deallocate(p);
}

bool Segment::contains(const void* p) const noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(p), b = reinterpret_cast<std::uintptr_t>(base_);
  return a >= b && a < b + size_;
}

std::size_t Segment::free_bytes() const noexcept { return allocator_->buffer.get_free_memory(); }

}  // namespace forkpool::detail
