// The frame of the piece of map items or the task a worker process is running: what
// forkpool::spawn and TaskGroup build on (lib/tasks.cpp). Here rather than in lib/ because the
// loop over constant chunks (constant_chunks.hpp) is compiled with each map's closure and opens
// an ItemFrame around every item.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace forkpool {
class TaskGroup;
}

namespace forkpool::detail {

// What a worker knows about the task (or piece of items) it is running: the counter of its
// implicit group (forkpool::spawn), where its arena allocations began, the arena top below which
// nothing may be given back (pin), its innermost open TaskGroup, and the map item it belongs to.
struct TaskFrame {
  std::atomic<std::uint32_t>* implicit;
  std::byte* mark;
  std::byte* pin;
  TaskGroup* innermost;
  std::int64_t item;
};

// Worker: the frame of the task or piece of items this worker is running, and its task arena's
// first free byte (tasks.cpp).
extern TaskFrame g_frame;
extern std::byte* g_arena_top;

// Worker: a piece of map items [first, ...) runs in the job's top-level frame; the tasks its items
// spawn with forkpool::spawn are its, and the destructor waits for them (the piece's implicit
// sync). Inline, and only a store and three loads when the items used no task: that is every piece
// of a plain map, and the hot path of dynamic(1).
class ItemFrame {
 public:
  explicit ItemFrame(std::int64_t first) noexcept { g_frame.item = first; }
  ~ItemFrame() {
    // A spawn or a TaskGroup took arena space (a spawn's implicit group is allocated there too),
    // and only end_tasks() gives the piece's space back.
    if (g_frame.implicit != nullptr || g_arena_top != g_frame.mark) end_tasks();
  }
  ItemFrame(const ItemFrame&) = delete;
  ItemFrame& operator=(const ItemFrame&) = delete;

 private:
  // Waits for the piece's spawned tasks and gives its arena space back (unless the job stopped).
  static void end_tasks() noexcept;
};

}  // namespace forkpool::detail
