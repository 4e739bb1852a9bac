// Python's Pool(initializer=..., maxtasksperchild=...): each worker opens its own connection once,
// and is replaced by a fresh process after two chunks.
#include <forkpool/forkpool.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <set>
#include <stdexcept>

// A per-process resource: made by the initializer in each worker, never shared between them.
struct Connection {
  pid_t opened_by;
  std::int64_t queries;
};
Connection* g_connection = nullptr;

void print_pids(const char* what, const auto& pids) {
  std::printf("%s", what);
  for (pid_t pid : std::set<pid_t>(pids.begin(), pids.end())) std::printf(" %d", pid);
  std::printf("\n");
}

int main() {
  forkpool::Pool pool(forkpool::Options{
      .processes = 2,
      // One chunk per worker and map, so each worker retires after every second map.
      .schedule = forkpool::Schedule::static_blocks(),
      .initializer =
          [] {
            g_connection = new Connection{getpid(), 0};
          },
      .max_tasks_per_child = 2});
  for (int m = 1; m <= 4; ++m) {
    print_pids(m == 1 ? "workers:" : "workers now:", pool.pids());
    const auto ran_in = pool.map(
        [](std::int64_t) {
          if (g_connection == nullptr || g_connection->opened_by != getpid())
            throw std::logic_error("not this process's connection");
          ++g_connection->queries;
          return getpid();
        },
        forkpool::range(100));
    std::printf("map %d ran in", m);
    print_pids("", ran_in);
  }

  // An initializer that fails is reported once, not retried forever.
  try {
    forkpool::Pool broken(forkpool::Options{
        .processes = 2, .initializer = [] { throw std::runtime_error("database unreachable"); }});
  } catch (const forkpool::BrokenPool& e) {
    std::printf("%s\n", e.what());
  }
}
