// The shared segment: one anonymous MAP_SHARED mapping made before the workers are forked, so it
// sits at the same address in every process of a pool and raw pointers into it are valid
// everywhere. Boost.Interprocess manages allocation inside it. Only the process that created it
// allocates or frees (the allocator takes a process-shared mutex, which a worker killed inside
// it would hold forever); workers only read and write memory already handed out.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>

namespace forkpool::detail {

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
  // Frees a block and gives its whole pages back to the system. Does nothing in a process other
  // than the creator (a worker running a destructor must not touch the shared allocator).
  void deallocate(void* p, std::size_t bytes) noexcept;

  bool contains(const void* p) const noexcept;
  std::size_t size() const noexcept { return size_; }
  std::size_t free_bytes() const noexcept;

 private:
  struct Allocator;

  void* base_;
  std::size_t size_;
  pid_t owner_;
  Allocator* allocator_;
};

}  // namespace forkpool::detail
