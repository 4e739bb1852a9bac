// Which worker ran which chunk, and when: one traced map (Options::trace_chunks) of a standard
// workload per strategy of forkpool::bench::strategies(), written as CSV, one row per chunk:
//
//   strategy,worker,first,items,start_ns,duration_ns
//
// (items [first, first + items), start from the map's start). bench/report.py draws chunks.png
// from it for ./dev.sh report.
//
//   trace_chunks [--workload=heavytail|triangular|uniform|bimodal|mandelbrot] [--workers=P]
//                [--out=FILE]
//
// Defaults: heavytail, cpu_count() workers, standard output. Each map's sum is checked against the
// sequential loop's; a wrong one, or a trace that lost chunks, makes the exit status 1.
#include "workloads.hpp"

#include <forkpool/bench.hpp>
#include <forkpool/forkpool.hpp>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <ostream>
#include <string>
#include <string_view>

namespace {

using Sum = std::uint64_t;

struct Args {
  std::string workload = "heavytail";
  unsigned workers = forkpool::cpu_count();
  std::string out;  // empty: standard output
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "trace_chunks: " << problem
            << "\nusage: trace_chunks [--workload=heavytail|triangular|uniform|bimodal|mandelbrot]"
               " [--workers=P] [--out=FILE]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&](std::string_view flag) {
      return arg.starts_with(flag) ? arg.substr(flag.size()) : std::string_view();
    };
    if (arg.starts_with("--workload=")) {
      args.workload = value("--workload=");
    } else if (arg.starts_with("--out=")) {
      args.out = value("--out=");
      if (args.out.empty()) usage("--out needs a file name");
    } else if (arg.starts_with("--workers=")) {
      const std::string_view v = value("--workers=");
      const auto [end, error] = std::from_chars(v.data(), v.data() + v.size(), args.workers);
      if (error != std::errc{} || end != v.data() + v.size() || args.workers < 1 ||
          args.workers > forkpool::Pool::max_processes())
        usage(std::string(arg) + ": P must be a number in 1.." +
              std::to_string(forkpool::Pool::max_processes()));
    } else {
      usage("unknown argument " + std::string(arg));
    }
  }
  return args;
}

// A CSV field: quoted when it holds a comma or a quote, as Schedule names may ("trapezoid(auto,
// 1)").
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"") == std::string::npos) return s;
  std::string quoted = "\"";
  for (const char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// One traced map per strategy; returns whether every sum was right and every trace complete.
template <class F>
bool trace(forkpool::Range r, F item, unsigned workers, std::ostream& out) {
  Sum expected = 0;
  for (std::int64_t i = r.first; i < r.last; ++i) expected += item(i);
  // Room for one chunk per item in every worker: no trace can be truncated.
  forkpool::Pool pool(
      forkpool::Options{.processes = workers,
                        .trace_chunks = true,
                        .trace_capacity = static_cast<std::size_t>(r.last - r.first)});
  // The pool's first map faults in its segment's pages: not a strategy's doing.
  pool.map_reduce(item, r, Sum{0}, std::plus<>{});
  bool ok = true;
  out << "strategy,worker,first,items,start_ns,duration_ns\n";
  for (const forkpool::Schedule& s : forkpool::bench::strategies()) {
    const Sum sum = pool.map_reduce(item, r, Sum{0}, std::plus<>{}, s);
    const forkpool::MapStats& stats = pool.last_stats();
    if (sum != expected || stats.chunks_truncated) {
      std::cerr << "trace_chunks: " << s.name()
                << (sum != expected ? ": wrong sum " + std::to_string(sum) + ", expected " +
                                          std::to_string(expected)
                                    : ": the trace lost chunks")
                << "\n";
      ok = false;
    }
    const std::string name = csv_field(s.name());
    for (const forkpool::ChunkRecord& c : stats.chunks)
      out << name << ',' << c.worker << ',' << c.first << ',' << c.items << ',' << c.start.count()
          << ',' << c.duration.count() << '\n';
  }
  return ok;
}

bool trace_workload(const Args& args, std::ostream& out) {
  const auto n = static_cast<std::int64_t>(workloads::N);
  const std::string& w = args.workload;
  if (w == "heavytail") {
    // Filled before the pool forks, so the workers see the table.
    const std::uint64_t* costs = workloads::heavytail_costs().data();
    return trace(
        forkpool::range(n), [costs](std::int64_t i) { return workloads::heavytail_item(costs, i); },
        args.workers, out);
  }
  if (w == "triangular")
    return trace(
        forkpool::range(n), [](std::int64_t i) { return workloads::triangular_item(i); },
        args.workers, out);
  if (w == "uniform")
    return trace(
        forkpool::range(n), [](std::int64_t i) { return workloads::uniform_item(i); }, args.workers,
        out);
  if (w == "bimodal")
    return trace(
        forkpool::range(n), [](std::int64_t i) { return workloads::bimodal_item(i); }, args.workers,
        out);
  if (w == "mandelbrot")
    return trace(
        forkpool::range(workloads::kMandelbrotSize),
        [](std::int64_t row) { return workloads::mandelbrot_row(row); }, args.workers, out);
  usage("unknown workload '" + w + "'");
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  if (args.out.empty()) return trace_workload(args, std::cout) ? 0 : 1;
  std::ofstream file(args.out);
  if (!file) usage("cannot write " + args.out);
  const bool ok = trace_workload(args, file);
  file.close();
  if (!file) {
    std::cerr << "trace_chunks: writing " << args.out << " failed\n";
    return 1;
  }
  return ok ? 0 : 1;
}
