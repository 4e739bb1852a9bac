// The shared segment: one anonymous MAP_SHARED mapping made before the workers are forked, so it
// sits at the same address in every process of a pool and raw pointers into it are valid
// everywhere. Boost.Interprocess manages allocation inside it (managed_external_buffer, whose
// tree has no lock of its own). Only the process that created the segment allocates or frees,
// under a process-local mutex that serialises its threads: a worker killed in the middle of an
// allocation would leave the tree half-updated, or a process-shared lock held forever. Workers
// only read and write memory already handed out.
//
// Pages, not bytes, are what a large map costs. Every process maps each shared page on its own
// first touch, and a page fault costs microseconds (about 12 us per 4 KiB page on this project's
// VMs, against 0.3 us per page for one madvise(MADV_POPULATE_*) over a range). So:
//  - the last large block freed is kept as a spare, pages and all, and handed out again to the
//    next allocation of a similar size: repeated maps of one size write into memory every
//    process has mapped already, as a loop over a preallocated std::vector would;
//  - prefault() maps a range ahead of use with one system call per run of blocks this process
//    has not mapped yet, remembered in a private bitmap (one bit per 64 KiB). Freeing gives
//    pages back with MADV_REMOVE, which unmaps them everywhere; a shared counter tells every
//    process to forget its bitmap when that happens.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace forkpool::detail {

// getpid(), without a system call: cached, and refreshed in the child after every fork().
pid_t this_process() noexcept;

class Segment {
 public:
  // Reserves `bytes` of address space (MAP_NORESERVE: pages are committed when first touched).
  explicit Segment(std::size_t bytes);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // Throws forkpool::SegmentFull naming `what`, the bytes needed and how to get more.
  // Zero bytes gives nullptr.
  void* allocate(std::size_t bytes, std::size_t align, const char* what);
  // Frees a block. Does nothing in a process other than the creator (a worker running a
  // destructor must not touch the shared allocator).
  void deallocate(void* p, std::size_t bytes) noexcept;

  // Maps [p, p + bytes) into this process's page tables now, for reading or writing. Only a hint:
  // skipped for small ranges and where the kernel lacks MADV_POPULATE_*.
  void prefault(const void* p, std::size_t bytes, bool write) noexcept;

  bool contains(const void* p) const noexcept;
  std::size_t size() const noexcept { return size_; }
  std::size_t free_bytes() const noexcept;
  // free_bytes() plus the kept spare block's: what allocations may use.
  std::size_t available_bytes() const noexcept;

 private:
  struct Allocator;
  struct Shared;

  void release(void* p, std::size_t bytes) noexcept;

  std::byte* base_;
  std::size_t size_;
  pid_t owner_;
  Allocator* allocator_;
  Shared* shared_;                      // in the segment
  std::atomic<std::uint64_t>* mapped_;  // private to each process after the fork
  std::atomic<std::uint64_t> mapped_epoch_{0};
  mutable std::mutex mutex_;  // the allocator and the spare, for the creator's threads
  void* spare_ = nullptr;     // a freed large block, pages kept
  std::size_t spare_bytes_ = 0;
  void* lent_ = nullptr;  // the spare handed out again, and its full size
  std::size_t lent_bytes_ = 0;
};

}  // namespace forkpool::detail
