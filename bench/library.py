#!/usr/bin/env python3
"""Library-overhead comparison (issue 6): mend's pipeline against cockatiel, opossum and tenacity.

Usage: python3 bench/library.py [--reps N] [--mend-bench PATH] [--out FILE]
                                [--min-time SECONDS] [--warmup SECONDS] [--python PATH]
                                [--node PATH]
  --reps N          repetition rounds (default 5); every library runs once per round
  --mend-bench PATH mend_bench binary (default build/release/bench/mend_bench)
  --out FILE        also write the markdown tables to FILE
  --min-time S      measured time per library and scenario in each round (default 0.5 s)
  --warmup S        the peers' warm-up before it (default 0.3 s; Google Benchmark sizes its own)
  --python PATH     interpreter with tenacity (default: this one if it has tenacity, else
                    /usr/bin/python3, where Debian's python3-tenacity lives)
  --node PATH       node binary (default: node on PATH)

Two scenarios, in ns per call, with zero backoff everywhere so that the policies' own machinery
is measured:
  success      the protected call returns normally
  transient30  attempt i fails with a retryable error when i % 10 is 1, 4 or 7 (30 % of
               attempts, never two in a row): 3 calls in 7 retry once, none opens a breaker
What runs (one line each is printed with the results):
  mend       bench/mend_bench.cc BM_Lib_*: retry (3 retries, zero backoff, a RetryBudget that
             never runs out) -> consecutive breaker; execute() with a throwing callable, and
             try_execute() with a Result-returning one ("mend (Result)", transient30 only)
  cockatiel  bench/lib/cockatiel_bench.mjs: wrap(retry(handleAll, 3 retries, ConstantBackoff(0)),
             circuitBreaker(handleAll, ConsecutiveBreaker(5)))
  opossum    bench/lib/opossum_bench.mjs: CircuitBreaker, fire(), no timeout, no latency
             percentiles; retried by hand (no delay, 3 retries): opossum has no retry
  tenacity   bench/lib/tenacity_bench.py: Retrying(stop_after_attempt(4), wait_none()); no
             circuit breaker: tenacity has none
Each round runs the four in an order rotated from the previous round's; medians over rounds
and ratios (peer ns / mend ns, "x slower") are printed as markdown tables, with the target
"mend's success path >= 30x faster than cockatiel's retry+breaker" marked PASS or MISS.
ns/call is wall time per call; the CPU column is process CPU time per call (for cockatiel's
transient30 the two differ: it waits out a zero backoff with setTimeout(0), about 1 ms).

Needs: mend_bench (cmake --preset release && cmake --build build/release --target mend_bench),
node 20 and `npm ci --prefix bench/node`, python3-tenacity. A missing one is named with its
install command, and the exit status is 2. Exit status 1 when a benchmark fails; 0 otherwise,
whether the target passes or not.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB_DIR = os.path.join(ROOT, "bench", "lib")
NODE_DIR = os.path.join(ROOT, "bench", "node")
LIBRARIES = ["mend", "cockatiel", "opossum", "tenacity"]
SCENARIOS = ["success", "transient30"]
MEND_NAMES = {"BM_Lib_Success": ("mend", "success"),
              "BM_Lib_Transient30": ("mend", "transient30"),
              "BM_Lib_Transient30_Result": ("mend (Result)", "transient30")}
ROW_ORDER = ["mend", "mend (Result)", "cockatiel", "opossum", "tenacity"]
TARGET = ("cockatiel", "success", 30.0)  # mend's success path at least 30x faster
EXPECTED_RETRIED_PCT = 300.0 / 7  # 3 retried calls in 7 with the pattern
TIMEOUT_S = 90
POLICIES = {
    "mend": "Pipeline: retry (max_retries 3, constant backoff 0, RetryBudget 1000 tokens, "
            "ratio 1.0: never runs out) -> CircuitBreaker (consecutive, 5 failures); "
            "execute(), throwing callable; the failure is a prebuilt mend::Exception "
            "(temporary_unavailable) rethrown",
    "mend (Result)": "the same pipeline; try_execute(), callable returns mend::Result<int> "
                     "with a temporary_unavailable error",
    "cockatiel": "wrap(retry(handleAll, {maxAttempts: 3 (= 3 retries), backoff: "
                 "ConstantBackoff(0)}), circuitBreaker(handleAll, {halfOpenAfter: 60 s, "
                 "breaker: ConsecutiveBreaker(5)})); execute(); a zero backoff still waits "
                 "setTimeout(0) (>= 1 ms in Node)",
    "opossum": "new CircuitBreaker(fn, {timeout: false, errorThresholdPercentage: 50, "
               "resetTimeout: 60 s, rollingPercentilesEnabled: false}); fire(); no retry in "
               "opossum: a hand-written loop retries at once, at most 3 times",
    "tenacity": "Retrying(stop=stop_after_attempt(4), wait=wait_none(), "
                "retry=retry_if_exception_type(TransientError), reraise=True); no circuit "
                "breaker: tenacity has none, so this is retry alone",
}


class BenchError(Exception):
    """A benchmark failed or printed something unexpected."""


def fail_missing(what, how):
    print(f"error: {what}; {how}", file=sys.stderr)
    sys.exit(2)


def has_tenacity(python):
    try:
        return subprocess.run([python, "-c", "import tenacity"], capture_output=True,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def preflight(args):
    """Checks every tool; returns (node, python). Exits 2 naming the install command."""
    if not (os.path.isfile(args.mend_bench) and os.access(args.mend_bench, os.X_OK)):
        fail_missing(f"mend_bench not found at {args.mend_bench}",
                     "build it: cmake --preset release && cmake --build build/release "
                     "--target mend_bench (or pass --mend-bench PATH)")
    node = args.node or shutil.which("node")
    if not node:
        fail_missing("node not found", "install Node.js 20 (apt-get install nodejs npm)")
    for package in ("cockatiel", "opossum"):
        if not os.path.isfile(os.path.join(NODE_DIR, "node_modules", package, "package.json")):
            fail_missing(f"{package} is not installed in bench/node/node_modules",
                         "install the pinned versions with: npm ci --prefix bench/node")
    candidates = [args.python] if args.python else [sys.executable, "/usr/bin/python3"]
    python = next((p for p in candidates if p and has_tenacity(p)), None)
    if python is None:
        fail_missing(f"tenacity is not importable from {', '.join(candidates)}",
                     "install it with: apt-get install python3-tenacity (or pass --python)")
    return node, python


def run(cmd):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {TIMEOUT_S} s: {' '.join(cmd)}") from e
    except OSError as e:
        raise BenchError(f"cannot run {cmd[0]}: {e}") from e
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited with status {proc.returncode}: "
                         f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


def run_mend(args):
    """One run of BM_Lib_*: {(library, scenario): sample}."""
    out = run([args.mend_bench, "--benchmark_filter=^BM_Lib_", "--benchmark_format=json",
               f"--benchmark_min_time={args.min_time}"])
    try:
        data = json.loads(out)
    except json.JSONDecodeError as e:
        raise BenchError(f"cannot parse mend_bench's JSON: {e}") from e
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    samples = {}
    for b in data.get("benchmarks", []):
        base = b["name"].split("/")[0]
        if base not in MEND_NAMES:
            continue
        if b.get("error_occurred"):
            raise BenchError(f"{b['name']}: {b.get('error_message', 'error')}")
        unit = scale[b.get("time_unit", "ns")]
        samples[MEND_NAMES[base]] = {
            "ns": b["real_time"] * unit, "cpu_ns": b["cpu_time"] * unit,
            "retried_pct": b.get("retried_pct", 0.0), "version": "this tree"}
    if len(samples) != len(MEND_NAMES):
        raise BenchError(f"mend_bench ran {sorted(samples)}, expected all of BM_Lib_* "
                         "(is the binary older than bench/mend_bench.cc?)")
    return samples


def run_peer(cmd):
    samples = {}
    for line in run(cmd).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise BenchError(f"{' '.join(cmd)} printed a line that is not JSON: {line}") from e
        samples[(r["library"], r["scenario"])] = {
            "ns": r["ns_per_call"], "cpu_ns": r.get("cpu_ns_per_call"),
            "retried_pct": r.get("retried_pct", 0.0), "version": r.get("version", "?")}
    return samples


def run_library(name, args, node, python):
    timing = ["--min-time", str(args.min_time), "--warmup", str(args.warmup)]
    if name == "mend":
        return run_mend(args)
    if name in ("cockatiel", "opossum"):
        script = os.path.join(LIB_DIR, f"{name}_bench.mjs")
        return run_peer([node, script, "--node-dir", NODE_DIR] + timing)
    return run_peer([python, os.path.join(LIB_DIR, "tenacity_bench.py")] + timing)


def fmt_ns(ns):
    if ns is None:
        return "-"
    return f"{ns:,.1f}" if ns < 100 else f"{ns:,.0f}"


def fmt_ratio(r):
    return f"{r:,.2f}x" if r < 10 else f"{r:,.1f}x"


def summarize(rounds):
    """rounds: list of {(library, scenario): sample}. Returns the markdown lines and target."""
    lines, target = [], None
    for scenario in SCENARIOS:
        mend_runs = [r[("mend", scenario)]["ns"] for r in rounds]
        mend_median = statistics.median(mend_runs)
        lines += [f"### {scenario}", "",
                  "| library | version | runs | median ns/call | min-max ns/call | "
                  "median CPU ns/call | retried calls | x mend (ratio of medians) | "
                  "x mend per round (min-max) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for lib in ROW_ORDER:
            runs = [r[(lib, scenario)] for r in rounds if (lib, scenario) in r]
            if not runs:
                continue
            ns = [s["ns"] for s in runs]
            cpu = [s["cpu_ns"] for s in runs if s["cpu_ns"] is not None]
            retried = statistics.median(s["retried_pct"] for s in runs)
            ratio = statistics.median(ns) / mend_median
            per_round = [r[(lib, scenario)]["ns"] / r[("mend", scenario)]["ns"]
                         for r in rounds if (lib, scenario) in r]
            ratio_cell = "1 (baseline)" if lib == "mend" else fmt_ratio(ratio)
            round_cell = "-" if lib == "mend" else \
                f"{fmt_ratio(min(per_round))} - {fmt_ratio(max(per_round))}"
            lines.append(
                f"| {lib} | {runs[0]['version']} | {len(runs)} | {fmt_ns(statistics.median(ns))}"
                f" | {fmt_ns(min(ns))} - {fmt_ns(max(ns))} | "
                f"{fmt_ns(statistics.median(cpu)) if cpu else '-'} | {retried:.1f} % | "
                f"{ratio_cell} | {round_cell} |")
            if (lib, scenario) == TARGET[:2]:
                target = (ratio, min(per_round), max(per_round))
        lines.append("")
    lib, scenario, need = TARGET
    ratio, lo, hi = target
    verdict = "PASS" if ratio >= need else "MISS"
    lines.append(f"Target: mend's success path >= {need:.0f}x faster than {lib}'s retry+breaker:"
                 f" {ratio:,.1f}x (median of {len(rounds)} rounds; per round {lo:,.1f}x to "
                 f"{hi:,.1f}x) -> **{verdict}**")
    return lines, verdict


def check_retries(rounds):
    """The transient30 runs must really have retried 3 calls in 7."""
    problems = []
    for i, r in enumerate(rounds):
        for (lib, scenario), s in r.items():
            want = EXPECTED_RETRIED_PCT if scenario == "transient30" else 0.0
            if abs(s["retried_pct"] - want) > 1.0:
                problems.append(f"round {i + 1}, {lib} {scenario}: {s['retried_pct']:.1f} % of "
                                f"calls retried, expected {want:.1f} %")
    return problems


def main():
    parser = argparse.ArgumentParser(
        description="mend vs cockatiel, opossum, tenacity: ns per call (see the docstring)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--mend-bench", default=os.path.join(ROOT, "build", "release", "bench",
                                                             "mend_bench"))
    parser.add_argument("--out")
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--python")
    parser.add_argument("--node")
    args = parser.parse_args()
    if not 1 <= args.reps <= 50 or not 0.05 <= args.min_time <= 10 or \
            not 0 <= args.warmup <= 10:
        parser.error("--reps must be 1..50, --min-time 0.05..10, --warmup 0..10")
    node, python = preflight(args)
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    rounds = []
    try:
        for rep in range(args.reps):
            order = LIBRARIES[rep % len(LIBRARIES):] + LIBRARIES[:rep % len(LIBRARIES)]
            print(f"round {rep + 1}/{args.reps}: {', '.join(order)}", file=sys.stderr)
            samples = {}
            for lib in order:
                samples.update(run_library(lib, args, node, python))
            rounds.append(samples)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    lines, _ = summarize(rounds)
    problems = check_retries(rounds)
    lines += ["", "What ran:", ""] + [f"- {lib}: {POLICIES[lib]}" for lib in ROW_ORDER]
    lines += ["", f"{args.reps} rounds in {elapsed:.0f} s, order rotated each round; "
              f"{os.cpu_count()} CPUs, load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after; mend_bench: {args.mend_bench}; "
              f"tenacity under {python}."]
    for p in problems:
        lines.append(f"WARNING: {p}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
