#!/usr/bin/env python3
"""Runs mend_bench and checks the issue's performance targets.

Usage: bench/compare.py [REPETITIONS] [BINARY]
  REPETITIONS  benchmark repetitions (default 5); medians are compared
  BINARY       path to mend_bench (default build/release/bench/mend_bench)

Prints a markdown table (median per benchmark and thread count) and PASS/FAIL lines for:
  - BM_Pipeline_Consecutive      <= 3 ns/call over BM_BareCall (1 thread)
  - BM_Pipeline_FailureRate      <= 15 ns/call over BM_BareCall, on 1 thread and on 2 threads
  - BM_Pipeline_FailureRateTime  the same, with a time window
  - BM_BreakerAlone_Consecutive: 2-thread throughput >= 1.7x 1-thread throughput
ns/call is the time one thread spends per call: threads * 1e9 / items_per_second (the benchmarks
use real time, so items_per_second is the aggregate throughput of all threads). On 2 threads it is
compared with BM_BareCall on 2 threads, each thread's own time per call, so that a shared write
that makes the threads wait for each other counts in full (wall time per call over all threads,
the benchmark's own "Time" column, would halve it). A 2-thread figure means something only on a
machine with at least 2 CPUs to spare; the script says when it has fewer. It only reports: the
exit status is always 0.
"""
import json
import os
import subprocess
import sys

DEFAULT_BINARY = "build/release/bench/mend_bench"
BARE = "BM_BareCall"
# (benchmark, ns/call over BM_BareCall at as many threads, thread counts judged)
TARGETS_NS = [("BM_Pipeline_Consecutive", 3.0, (1,)),
              ("BM_Pipeline_FailureRate", 15.0, (1, 2)),
              ("BM_Pipeline_FailureRateTime", 15.0, (1, 2))]
SCALING = ("BM_BreakerAlone_Consecutive", 1.7)
BARE_SCALING = 1.7  # below this, BM_BareCall's 2 threads were not both running
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
    if (os.cpu_count() or 1) < 2:
        print("note: fewer than 2 CPUs: the 2-thread figures measure time-sharing, not contention")
    one, two = results.get((BARE, 1)), results.get((BARE, 2))
    if one and two and one["ips"] and two["ips"] and two["ips"] / one["ips"] < BARE_SCALING:
        # The bare call shares nothing: if it did not scale, something else had a CPU.
        print(f"note: {BARE} on 2 threads ran only {two['ips'] / one['ips']:.2f}x as many calls "
              f"as on 1: the 2 threads did not have a CPU each (a busy machine?), so the "
              f"2-thread figures below are not to be trusted")
    for name, limit, thread_counts in TARGETS_NS:
        for threads in thread_counts:
            on = f"{threads} thread{'s' if threads > 1 else ''}"
            over = overhead(results, name, threads)
            if over is None:
                print(f"FAIL: {name}: no data (needs {name} and {BARE} on {on})")
                continue
            verdict = "PASS" if over <= limit else "FAIL"
            print(f"{verdict}: {name} on {on} is {over:.2f} ns/call per thread over {BARE} "
                  f"({results[(name, threads)]['ns']:.2f} ns/call per thread; "
                  f"target <= {limit:g} ns over)")
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
