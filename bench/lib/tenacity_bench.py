#!/usr/bin/env python3
"""tenacity_bench.py: what tenacity's retry costs per call, for bench/library.py (issue 6).

Usage: python3 bench/lib/tenacity_bench.py [--scenario success|transient30|all]
                                            [--min-time SECONDS] [--warmup SECONDS]
  --min-time  measured time per scenario (default 0.5 s); --warmup before it (default 0.3 s)

Prints one JSON line per scenario:
  {"library": "tenacity", "scenario": "success", "ns_per_call": ..., "calls": ..., ...}

Policy: Retrying(stop=stop_after_attempt(4), wait=wait_none(),
                 retry=retry_if_exception_type(TransientError), reraise=True)
i.e. 3 retries with no wait, as mend's max_retries = 3 with zero backoff. tenacity has no
circuit breaker, so no breaker runs here: its figures are retry alone, where the other
libraries' include a breaker too. Each call is retrying(fn) (Retrying.__call__).
Scenarios, the same as mend_bench's BM_Lib_*:
  success      the protected function returns a value
  transient30  attempt i fails when i % 10 is 1, 4 or 7 (30 % of attempts, never two in a row),
               by raising one prebuilt TransientError (its traceback cleared each time, so it
               does not grow); every call succeeds after at most one retry
Needs tenacity (Debian: apt-get install python3-tenacity, importable from /usr/bin/python3).
"""
import argparse
import json
import sys
import time

try:
    import tenacity
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_none
except ImportError:
    print(f"error: tenacity is not importable from {sys.executable}; install it with: "
          "apt-get install python3-tenacity (then run this script with /usr/bin/python3)",
          file=sys.stderr)
    sys.exit(3)


class TransientError(Exception):
    """The transient failure the retry policy retries."""


def version():
    try:
        from importlib.metadata import version as dist_version
        return dist_version("tenacity")
    except Exception:  # noqa: BLE001 - the version is informative only
        return getattr(tenacity, "__version__", "unknown")


class Counter:
    attempts = 0
    failures = 0


TRANSIENT = TransientError("transient")
X = 3


def work(v):
    return v * 2 + 1


def success():
    Counter.attempts += 1
    return work(X)


def transient30():
    r = Counter.attempts % 10
    Counter.attempts += 1
    if r in (1, 4, 7):
        Counter.failures += 1
        raise TRANSIENT.with_traceback(None)
    return work(X)


def run_for(call, seconds):
    """Calls `call` in batches of 100 for at least `seconds`: (calls, wall ns, CPU ns)."""
    budget = int(seconds * 1e9)
    cpu0 = time.process_time_ns()
    t0 = time.perf_counter_ns()
    t = t0
    calls = 0
    while t - t0 < budget:
        for _ in range(100):
            call()
        calls += 100
        t = time.perf_counter_ns()
    return calls, t - t0, time.process_time_ns() - cpu0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["success", "transient30", "all"], default="all")
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=0.3)
    args = parser.parse_args()
    if not (0 < args.min_time <= 60 and 0 <= args.warmup <= 60):
        parser.error("--min-time must be in (0, 60], --warmup in [0, 60]")
    retrying = Retrying(stop=stop_after_attempt(4), wait=wait_none(),
                        retry=retry_if_exception_type(TransientError), reraise=True)
    scenarios = ["success", "transient30"] if args.scenario == "all" else [args.scenario]
    fns = {"success": success, "transient30": transient30}
    for scenario in scenarios:
        fn = fns[scenario]

        def call(fn=fn):
            return retrying(fn)

        try:
            run_for(call, args.warmup)
            a0, f0 = Counter.attempts, Counter.failures
            calls, ns, cpu_ns = run_for(call, args.min_time)
        except Exception as e:  # noqa: BLE001 - any failure ends the benchmark
            print(f"error: a {scenario} call failed: {e!r}", file=sys.stderr)
            return 1
        print(json.dumps({
            "library": "tenacity", "version": version(), "scenario": scenario,
            "ns_per_call": ns / calls, "cpu_ns_per_call": cpu_ns / calls, "calls": calls,
            "attempts_per_call": (Counter.attempts - a0) / calls,
            "retried_pct": 100.0 * (Counter.failures - f0) / calls,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
