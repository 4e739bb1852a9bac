#!/usr/bin/env python3
"""bench/report.py (./dev.sh report) on made-up bench_strategies output: the tables, the lines
under them, several input files making one report, and the errors it must name."""

import importlib.util
import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "bench" / "report.py"
spec = importlib.util.spec_from_file_location("report", REPORT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def median(name, ms, repetitions=5, **counters):
    """A median aggregate as Google Benchmark writes it with --benchmark_report_aggregates_only."""
    return {"name": f"{name}/real_time_median", "run_name": f"{name}/real_time",
            "run_type": "aggregate", "aggregate_name": "median", "repetitions": repetitions,
            "real_time": ms, "time_unit": "ms", **counters}


def context(load=0.1, cpus=2):
    return {"date": "2026-12-02T17:00:00+00:00", "host_name": "test", "num_cpus": cpus,
            "load_avg": [load, load, load], "P": "2"}


# Two workloads of the long group: uniform (where automatic is 5% behind work_stealing) and
# heavytail (where automatic is the best), with OpenMP next to them. The vs_ideal counters are
# off (their sequential baseline was timed at a slower moment): the report divides by the
# sequential loop's median instead.
LONG = [
    median("uniform/seq", 200.0, vs_ideal=2.0),
    median("uniform/forkpool/work_stealing(auto)", 100.0, vs_ideal=1.0, chunks=40, steals=0),
    median("uniform/forkpool/automatic", 105.0, vs_ideal=0.95, chunks=12, steals=1),
    median("uniform/omp/static", 101.0, vs_ideal=1.01),
    median("heavytail/seq", 300.0, vs_ideal=2.0),
    median("heavytail/forkpool/static_blocks", 200.0, vs_ideal=1.33),
    median("heavytail/forkpool/automatic", 152.0, vs_ideal=1.01),
    median("heavytail/tbb/auto", 160.0, vs_ideal=1.07),
]
# The short group, with more repetitions: seed_1e6 with the per-claim comparison.
SHORT = [
    median("seed_1e6/seq", 0.4, 100, vs_ideal=2.0),
    median("seed_1e6/forkpool/dynamic(1)", 18.0, 100, vs_ideal=90.0),
    median("seed_1e6/forkpool/automatic", 0.25, 100, vs_ideal=1.25),
    median("seed_1e6/forkpool/factoring", 0.2, 100, vs_ideal=1.0),
    median("seed_1e6/omp/dynamic,1", 15.0, 100, vs_ideal=75.0),
]


class ReportCommand(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = Path(self.dir.name)

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, benchmarks, ctx=None):
        path = self.path / name
        path.write_text(json.dumps({"context": ctx or context(), "benchmarks": benchmarks}))
        return path

    def run_report(self, *args):
        return subprocess.run([sys.executable, str(REPORT), *map(str, args), "--out",
                               str(self.path / "out")], capture_output=True, text=True,
                              timeout=120, check=False)

    def test_two_files_make_one_report_with_its_lines_and_plot(self):
        run = self.run_report(self.write("long.json", LONG), self.write("short.json", SHORT))
        self.assertEqual(run.returncode, 0, run.stderr)
        md = (self.path / "out" / "report.md").read_text()
        for workload in ("uniform", "heavytail", "seed_1e6"):
            self.assertIn(f"## {workload}", md)
        self.assertIn("Medians of 5 repetitions.", md)
        self.assertIn("Medians of 100 repetitions.", md)
        self.assertIn("| **forkpool work_stealing(auto)** (best) | **100.0** | **1.000** |", md)
        self.assertIn("| forkpool automatic | 105.0 | 1.050 | - | 12 | 1 |", md)
        self.assertIn("`automatic()` against the best forkpool strategy, `work_stealing(auto)`: "
                      "105.0 ms against 100.0 ms, **+5.0%**.", md)
        self.assertIn("`automatic()` is the best forkpool strategy here.", md)
        self.assertIn("`automatic()` against the best forkpool strategy, `factoring`: 0.250 ms "
                      "against 0.200 ms, **+25.0%**.", md)
        self.assertIn("`dynamic(1)` against OpenMP `dynamic,1`: 18.0 ms against 15.0 ms, "
                      "**1.20x**.", md)
        self.assertIn("1.0% faster than the best of OpenMP/oneTBB, OpenMP static", md)
        self.assertIn("5.0% faster than the best of OpenMP/oneTBB, oneTBB auto", md)
        self.assertNotIn("The machine was busy", md)
        self.assertGreater((self.path / "out" / "strategies.png").stat().st_size, 10000)

    def test_without_a_sequential_run_time_per_ideal_is_the_benchmarks_counter(self):
        run = self.run_report(self.write("tiny.json", [
            median("tiny/forkpool/automatic", 0.0156, vs_ideal=5611.4),
            median("tiny/tbb/static", 0.000568, vs_ideal=207.0)]))
        self.assertEqual(run.returncode, 0, run.stderr)
        md = (self.path / "out" / "report.md").read_text()
        self.assertIn("| forkpool automatic | 0.0156 | 5611 |", md)
        self.assertIn("27.5 times as slow as the best of OpenMP/oneTBB, oneTBB static", md)

    def test_a_benchmark_in_two_files_is_an_error(self):
        run = self.run_report(self.write("a.json", LONG), self.write("b.json", LONG[:2]))
        self.assertEqual(run.returncode, 1)
        self.assertIn("b.json: sequential on uniform is in an earlier file too", run.stderr)

    def test_a_busy_machine_and_a_failed_benchmark_are_reported(self):
        failed = {"name": "uniform/forkpool/dynamic(1)/real_time",
                  "run_name": "uniform/forkpool/dynamic(1)/real_time", "run_type": "iteration",
                  "error_occurred": True, "error_message": "sum 3 != 4"}
        run = self.run_report(self.write("busy.json", [*LONG, failed], context(load=1.9)))
        self.assertEqual(run.returncode, 0, run.stderr)
        md = (self.path / "out" / "report.md").read_text()
        self.assertIn("**The machine was busy** (load 1.90 on 2 CPUs", md)
        self.assertIn("- uniform: forkpool dynamic(1): sum 3 != 4", md)

    def test_bad_input_is_named(self):
        cases = [
            ("not.json", "{", "is not JSON"),
            ("nolist.json", "{}", "no 'benchmarks' list"),
            ("empty.json", '{"benchmarks": []}', "has no benchmarks"),
            ("name.json", json.dumps({"benchmarks": [median("uniform", 1.0)]}),
             "benchmark name 'uniform/real_time' is not <workload>/<system>[/<strategy>]"),
        ]
        for name, text, message in cases:
            with self.subTest(name=name):
                (self.path / name).write_text(text)
                run = self.run_report(self.path / name)
                self.assertEqual(run.returncode, 1)
                self.assertIn(message, run.stderr)

    def test_a_trace_makes_the_chunk_plot_and_table(self):
        trace = self.path / "trace.csv"
        trace.write_text("strategy,worker,first,items,start_ns,duration_ns\n"
                         "automatic,0,0,1,0,1000000\n"
                         "automatic,1,50,4,0,3000000\n"
                         "automatic,0,1,45,1000000,1000000\n")
        run = self.run_report(self.write("long.json", LONG), "--trace", trace)
        self.assertEqual(run.returncode, 0, run.stderr)
        md = (self.path / "out" / "report.md").read_text()
        self.assertIn("| automatic | 3 | 3.0 | 1.0 |", md)
        self.assertGreater((self.path / "out" / "chunks.png").stat().st_size, 10000)


class Formatting(unittest.TestCase):
    def test_times_keep_about_three_significant_digits(self):
        self.assertEqual(report.fmt_ms(123.456), "123.5")
        self.assertEqual(report.fmt_ms(12.345), "12.3")
        self.assertEqual(report.fmt_ms(0.0156), "0.0156")
        self.assertEqual(report.fmt_ms(float("nan")), "-")

    def test_names_split_into_workload_system_and_strategy(self):
        self.assertEqual(report.split_name("tiny/forkpool/trapezoid(auto, 1)/real_time"),
                         ("tiny", "forkpool", "trapezoid(auto, 1)"))
        self.assertEqual(report.split_name("tiny/seq/real_time"), ("tiny", "seq", ""))
        with self.assertRaisesRegex(report.ReportError, "has no strategy after 'omp/'"):
            report.split_name("tiny/omp/real_time")


if __name__ == "__main__":
    unittest.main()
