#!/usr/bin/env python3
"""Runs mend_bench and checks the issue's performance targets.

Usage: bench/compare.py [REPETITIONS] [BINARY]
  REPETITIONS  benchmark repetitions (default 5); medians are compared
  BINARY       path to mend_bench (default build/release/bench/mend_bench)

Prints a markdown table (median per benchmark and thread count) and PASS/FAIL lines for:
  - BM_Pipeline_Consecutive  <= 3 ns/call over BM_BareCall (1 thread)
  - BM_Pipeline_FailureRate  <= 15 ns/call over BM_BareCall (1 thread)
  - BM_BreakerAlone_Consecutive: 2-thread throughput >= 1.7x 1-thread throughput
ns/call is the time one thread spends per call: threads * 1e9 / items_per_second (the benchmarks
use real time, so items_per_second is the aggregate throughput of all threads). It only reports:
the exit status is always 0.
"""
import json
import subprocess
import sys

DEFAULT_BINARY = "build/release/bench/mend_bench"
BARE = "BM_BareCall"
TARGETS_NS = [("BM_Pipeline_Consecutive", 3.0), ("BM_Pipeline_FailureRate", 15.0)]
SCALING = ("BM_BreakerAlone_Consecutive", 1.7)
TIME_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def parse_args(argv):
    reps, binary = 5, DEFAULT_BINARY
    for arg in argv:
        if arg.isdigit():
            reps = max(1, int(arg))
        else:
            binary = arg
    return reps, binary


def run_bench(binary, reps):
    # Random interleaving spreads each benchmark's repetitions over the whole run, so that a
    # noisy minute on the shared machine does not land on one benchmark only.
    # The BM_Lib_* benchmarks belong to bench/library.py's comparison with the peers.
    cmd = [binary, "--benchmark_format=json", f"--benchmark_repetitions={reps}",
           "--benchmark_filter=^BM_(BareCall|BreakerAlone|RetryAlone|Pipeline)",
           "--benchmark_enable_random_interleaving=true", "--benchmark_min_time=0.2",
           "--benchmark_report_aggregates_only=true"]
    print(f"running: {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        print(f"error: cannot run {binary}: {e}")
        return None
    if proc.returncode != 0:
        print(f"error: {binary} exited with status {proc.returncode}")
        print(proc.stderr.strip())
        return None
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        print(f"error: cannot parse the benchmark's JSON output: {e}")
        return None


def medians(data):
    """{(base name, threads): {"ns": per-thread ns/call, "ips": aggregate calls/s}}."""
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "aggregate" or b.get("aggregate_name") != "median":
            continue
        if b.get("error_occurred"):
            continue
        run_name = b.get("run_name", b["name"])
        base = run_name.split("/")[0]
        threads = int(b.get("threads", 1))
        ips = b.get("items_per_second")
        if ips:
            ns = threads * 1e9 / ips
        else:  # real_time per iteration is wall time / all threads' iterations
            real = b["real_time"] * TIME_UNIT_NS.get(b.get("time_unit", "ns"), 1.0)
            ns = real * threads
            ips = 1e9 / real if real > 0 else None
        out[(base, threads)] = {"ns": ns, "ips": ips}
    return out


def overhead(results, name, threads):
    row, bare = results.get((name, threads)), results.get((BARE, threads))
    if row is None or bare is None:
        return None
    return row["ns"] - bare["ns"]


def print_table(results):
    print("| benchmark | threads | ns/call (per thread) | throughput (Mcalls/s) | over bare call (ns) |")
    print("|---|---:|---:|---:|---:|")
    for (name, threads), row in results.items():  # in the order the benchmarks ran
        over = overhead(results, name, threads)
        over_s = "-" if name == BARE or over is None else f"{over:+.2f}"
        ips_s = f"{row['ips'] / 1e6:.1f}" if row["ips"] else "-"
        print(f"| {name} | {threads} | {row['ns']:.2f} | {ips_s} | {over_s} |")


def check_targets(results):
    print()
    for name, limit in TARGETS_NS:
        over = overhead(results, name, 1)
        if over is None:
            print(f"FAIL: {name}: no data (needs {name} and {BARE} at 1 thread)")
            continue
        verdict = "PASS" if over <= limit else "FAIL"
        print(f"{verdict}: {name} is {over:.2f} ns over {BARE} (target <= {limit:g} ns)")
    name, min_ratio = SCALING
    one, two = results.get((name, 1)), results.get((name, 2))
    if not one or not two or not one["ips"] or not two["ips"]:
        print(f"FAIL: {name}: no throughput data for 1 and 2 threads")
        return
    ratio = two["ips"] / one["ips"]
    verdict = "PASS" if ratio >= min_ratio else "FAIL"
    print(f"{verdict}: {name} 2-thread/1-thread throughput is {ratio:.2f}x "
          f"(target >= {min_ratio:g}x)")


def main():
    reps, binary = parse_args(sys.argv[1:])
    data = run_bench(binary, reps)
    if data is None:
        return 0
    results = medians(data)
    if not results:
        print("error: no median aggregates in the benchmark output")
        return 0
    print_table(results)
    check_targets(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
