#!/usr/bin/env python3
"""Runs every comparison of `make bench` in one go and writes one report.

Usage: python3 bench/all.py [--build DIR] [--out FILE] [--quick]
  --build DIR  the CMake build with mend, mend_bench and mend_scale_bench (default build/release)
  --out FILE   the report, markdown (default DIR/bench/report.md); each part's own output is
               written beside it (library.md, gateway.md, gateway-partial.md, scale.md,
               policies.md)
  --quick      fewer repetitions and shorter runs (a smoke run: the figures are not for the docs)

Parts, in this order (each is its own script, runnable alone):
  1. library    bench/library.py: mend's pipeline against cockatiel, opossum and tenacity
  2. gateway    bench/gateway.py: `mend serve` against HAProxy and nginx, under wrk (the
                original scenarios: healthy, flaky503, down, slow; 3 x 10 s, about 12 minutes)
     gateway-partial  bench/gateway.py --scenarios partial --reps 1 --duration 5: issue 17's
                replica and overload scenarios, one short repetition (about 3 minutes)
  3. scale      bench/scale.py (mend_scale_bench): memory per task waiting in backoff, and
                fallback throughput
  4. policies   bench/compare.py: what each of mend's policies adds to a bare call
Every part runs the peers and mend in the same run, alternating, and reports medians and
ratios. The report starts with the machine and the versions measured. Exit status: 0 when every
part ran (whether its targets passed or not), 1 when a part failed, 2 when a tool is missing.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")


def first_line(argv):
    """The first line a version command prints (on stdout or stderr), or 'not found'."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (p.stdout or p.stderr).strip()
    return text.splitlines()[0] if text else "not found"


def npm_version(package):
    try:
        with open(os.path.join(BENCH, "node", "node_modules", package, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "not installed"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    tenacity = first_line(["/usr/bin/python3", "-c",
                           "import importlib.metadata as m; print(m.version('tenacity'))"])
    return [
        f"- {os.cpu_count()} CPUs, {cpu}, {mem_kib / 1048576:.0f} GiB, Linux "
        f"{platform.release()}",
        f"- {first_line(['c++', '--version'])}; {first_line(['haproxy', '-v'])}; "
        f"{first_line(['nginx', '-v'])}; {first_line(['wrk', '-v'])}",
        f"- node {first_line(['node', '--version'])}, cockatiel {npm_version('cockatiel')}, "
        f"opossum {npm_version('opossum')}; tenacity {tenacity} (/usr/bin/python3 "
        f"{first_line(['/usr/bin/python3', '--version']).split()[-1]})",
        f"- load average before the run: {os.getloadavg()[0]:.2f}",
    ]


PART_TIMEOUT = 3600  # seconds; every part ends well within it on a 2-CPU machine
current = None  # the part running now, stopped with us


def stop_current(signum, _frame):
    if current is not None and current.poll() is None:
        current.send_signal(signal.SIGTERM)  # each part stops what it started on SIGTERM
        try:
            current.wait(timeout=30)
        except subprocess.TimeoutExpired:
            current.kill()
    sys.exit(128 + signum)


def run_part(name, argv, out_md, stdout_is_report=False):
    """Runs one part; its markdown goes to out_md. Returns (ok, seconds, exit status)."""
    global current
    print(f"\n=== {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    if os.path.exists(out_md):
        os.remove(out_md)  # a part that fails must not leave an older run's tables behind
    start = time.monotonic()
    out = open(out_md, "w") if stdout_is_report else None
    try:
        current = subprocess.Popen(argv, stdout=out)
        try:
            rc = current.wait(timeout=PART_TIMEOUT)
        except subprocess.TimeoutExpired:
            current.send_signal(signal.SIGTERM)
            current.wait(timeout=60)
            rc = f"timeout after {PART_TIMEOUT} s"
    finally:
        current = None
        if out:
            out.close()
    took = time.monotonic() - start
    ok = rc == 0 and os.path.exists(out_md)
    print(f"=== {name}: exit {rc} after {took:.0f} s", file=sys.stderr, flush=True)
    return ok, took, rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, stop_current)
    signal.signal(signal.SIGINT, stop_current)
    build = os.path.abspath(a.build)
    out = os.path.abspath(a.out or os.path.join(build, "bench", "report.md"))
    parts_dir = os.path.dirname(out)
    os.makedirs(parts_dir, exist_ok=True)
    binaries = {"mend": os.path.join(build, "src", "app", "mend"),
                "mend_bench": os.path.join(build, "bench", "mend_bench"),
                "mend_scale_bench": os.path.join(build, "bench", "mend_scale_bench")}
    missing = [p for p in binaries.values() if not os.access(p, os.X_OK)]
    if missing:
        print(f"error: not built: {', '.join(missing)} (run `make bench`, or cmake --build "
              f"{build})", file=sys.stderr)
        return 2
    for tool in ("haproxy", "nginx", "wrk", "node"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed: run scripts/setup.sh bench", file=sys.stderr)
            return 2

    py = sys.executable
    md = {k: os.path.join(parts_dir, f"{k}.md") for k in ("library", "gateway", "gateway-partial",
                                                          "scale", "policies")}
    quick = a.quick
    parts = [
        ("library", [py, os.path.join(BENCH, "library.py"), "--reps", "2" if quick else "7",
                     "--mend-bench", binaries["mend_bench"], "--out", md["library"]], False),
        ("gateway", [py, os.path.join(BENCH, "gateway.py"), "--mend", binaries["mend"],
                     "--reps", "1" if quick else "3", "--duration", "3" if quick else "10",
                     "--out", md["gateway"]], False),
        # issue 17's partial failures: replicas and overload, one short repetition each (about
        # 3 minutes; the original four above take about 12)
        ("gateway-partial", [py, os.path.join(BENCH, "gateway.py"), "--mend", binaries["mend"],
                             "--scenarios", "partial", "--reps", "1",
                             "--duration", "3" if quick else "5", "--out",
                             md["gateway-partial"]], False),
        ("scale", [py, os.path.join(BENCH, "scale.py"), "--bench", binaries["mend_scale_bench"],
                   "--reps", "1" if quick else "3", "--out", md["scale"]], False),
        ("policies", [py, os.path.join(BENCH, "compare.py"), "2" if quick else "10",
                      binaries["mend_bench"]], True),
    ]
    head = ["# mend benchmarks: report of one `make bench` run",
            "", f"Run {time.strftime('%Y-%m-%d %H:%M %Z')}{' (quick: a smoke run)' if quick else ''}.",
            "", "## Machine", ""] + machine()
    results, failed = [], []
    for name, argv, to_stdout in parts:
        ok, took, rc = run_part(name, argv, md[name], to_stdout)
        if not ok:
            failed.append(f"{name} (exit {rc})")
        results.append((name, took, ok))
    body = []
    for name, took, ok in results:
        body += ["", f"## {name} ({took:.0f} s{'' if ok else ', FAILED'})", ""]
        try:
            with open(md[name]) as f:
                text = f.read().strip()
            # The parts' own top-level titles become sections of this report.
            body += [line.replace("# ", "### ", 1) if line.startswith("# ") else line
                     for line in text.splitlines()]
        except OSError:
            body.append("(no output)")
    with open(out, "w") as f:
        f.write("\n".join(head + body) + "\n")
    print(f"\nreport: {out}", file=sys.stderr)
    targets = [line for line in body if "PASS" in line or "MISS" in line or "FAIL" in line
               or "**met**" in line or "**not met**" in line]
    print("\n".join(targets))
    if failed:
        print(f"error: parts failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
