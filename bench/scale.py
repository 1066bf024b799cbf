#!/usr/bin/env python3
"""Scale (issue 6, part 3): runs mend_scale_bench and writes its figures as markdown.

Usage: python3 bench/scale.py [--bench PATH] [--reps R] [--out FILE]
  --bench PATH  mend_scale_bench (default build/release/bench/mend_scale_bench)
  --reps R      repetitions of each measurement (default 3); medians
  --out FILE    also write the markdown to FILE

mend_scale_bench drives the real workflow with the async driver (run_workflow_async), one
co_spawn per task as the daemon does, with in-process agents (no HTTP, no journal):
  memory      N tasks whose primary answers 503 wait out a 10 min backoff at once; heap in use
              (mallinfo2) and RSS before and while they wait, per task; 10,000 and 100,000 tasks
  throughput  200,000 tasks, 1,000 in flight, half of them answered by the fallback agent after
              the primary fails them (500), on 1 and on 2 I/O threads
Target: at most 2 KiB (2048 B) of heap per task waiting in backoff. Exit status: that of
mend_scale_bench (1 when a run's own checks failed), 2 when it cannot be run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown(r):
    out = ["# Scale: memory per waiting task, fallback throughput", "",
           f"mend_scale_bench: {r['agents']}; no journal, no escalation sink (escalations are "
           f"decided, not carried out); medians of {r['reps']} runs, each memory run in a "
           "fresh child process.", "",
           "| tasks waiting in backoff | heap B/task | RSS B/task | heap left after teardown (B) "
           "| s to park them all | runs (heap B/task) |",
           "|---:|---:|---:|---:|---:|---|"]
    for m in r["memory"]:
        out.append(f"| {m['tasks']:,} | {m['heap_bytes_per_task']:.0f} | "
                   f"{m['rss_bytes_per_task']:.0f} | {m['heap_left_after_teardown_bytes']:.0f} | "
                   f"{m['seconds_to_park']:.3f} | "
                   f"{', '.join(f'{x:.0f}' for x in m['runs_heap_bytes_per_task'])} |")
    big = r["memory"][-1]
    out += ["", f"- at most {r['memory_target_bytes_per_task']:.0f} B of heap per task waiting "
            f"in backoff ({big['tasks']:,} tasks): {big['heap_bytes_per_task']:.0f} B: "
            f"**{r['memory_target']}**", "",
            "| I/O threads | tasks/s | runs | succeeded | fallback (answered by backup) | other |",
            "|---:|---:|---|---:|---:|---:|"]
    for t in r["throughput"]:
        last = t["last_run"]
        other = sum(last.get(k, 0) for k in ("succeeded_after_retry", "degraded", "failed",
                                             "exceptions"))
        out.append(f"| {t['threads']} | {t['tasks_per_second']:,.0f} | "
                   f"{', '.join(f'{x:,.0f}' for x in t['runs_tasks_per_second'])} | "
                   f"{last.get('succeeded', '?')} | {last.get('fallback', '?')} "
                   f"({last.get('answered_by_backup', '?')}) | {other} |")
    out += ["", f"2 threads / 1 thread: {r['throughput_2_over_1']:.2f}x."]
    if r.get("problems"):
        out += [""] + [f"- PROBLEM: {p}" for p in r["problems"]]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "release", "bench",
                                                    "mend_scale_bench"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    if not os.access(a.bench, os.X_OK):
        print(f"error: {a.bench} is not built (cmake --build build/release --target "
              "mend_scale_bench)", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        p = subprocess.run([a.bench, "--reps", str(max(1, a.reps)), "--json", tmp.name],
                           stdout=subprocess.DEVNULL, timeout=1800, check=False)
        try:
            with open(tmp.name) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            print(f"error: mend_scale_bench (exit {p.returncode}) wrote no JSON: {e}",
                  file=sys.stderr)
            return p.returncode or 1
    text = markdown(r)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
