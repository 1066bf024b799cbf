"""Markdown report of bench/gateway.py: one table per scenario, the issue's targets, the method.

Imported by bench/gateway.py only (no command line of its own).
"""
import os
import platform
import statistics
import time

WRK_TIMEOUT = "5s"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


SCENARIO_TITLES = {
    "healthy": "healthy: nginx answers a small JSON body",
    "flaky503": "flaky503: 30 % of backend answers are 503",
    "down": "down: connection refused (nobody listens)",
    "slow": "slow: the backend answers after 1 s",
}


def report(bench):
    """The markdown text of a finished (or partial) run."""
    a, res = bench.a, bench.results
    out = [f"## Gateway comparison ({time.strftime('%Y-%m-%d %H:%M')})", "",
           f"wrk -t{a.threads} -c{a.connections} -d{a.duration}s --timeout {WRK_TIMEOUT}, "
           f"{a.reps} repetition(s), gateway order rotated each repetition; medians per cell. "
           f"Machine: {os.cpu_count()} CPUs, Linux {platform.release()}. mend: `{a.mend}`. "
           f"`mend` is its relay (`relays:`, docs/relay.md): like HAProxy and nginx it passes "
           f"`POST /task` through to the backend; `mend-api` is its task API "
           f"(`POST /v1/tasks?wait=30`, each request a task with an outcome and a journal "
           f"entry). mend: retry max_retries 3, error_scaled backoff base 10 ms cap 1 s, "
           f"retry budget {'off' if a.no_budget else 'on (defaults)'}, a failure-rate breaker "
           f"(50 % of the calls of the last 10 s, at least 100: a time window, as "
           f"docs/benchmarks.md advises for a busy agent); `mend-consecutive`, when run, is the "
           f"task API with the default consecutive breaker (5 failures, 60 s open). The targets "
           f"are judged on `mend`, the relay. "
           f"Error % is what the client saw fail; mend's `degraded` and `fallback` answers count "
           f"as answered (the issue's rule) and have their own columns: compare `by agent %` "
           f"too.", ""]
    for scenario in a.scenarios:
        out += [f"### {SCENARIO_TITLES[scenario]}", "",
                "| gateway | req/s | req/s min-max | p50 ms | p99 ms | error % | by agent % | "
                "fallback % | degraded % | amplification | req/s vs HAProxy |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        hap = res.get((scenario, "haproxy"))
        for gw in a.gateways:
            rows = res.get((scenario, gw))
            if not rows:
                continue
            ratio = "-"
            pairs = [r["rps"] / h["rps"] for r, h in zip(rows, hap or []) if h["rps"] > 0]
            if pairs and gw != "haproxy":
                ratio = fmt(statistics.median(pairs), 2) + "x"
            fb = fmt(med(rows, "fallback"), 2) if gw.startswith("mend") else "-"
            dg = fmt(med(rows, "degraded"), 2) if gw.startswith("mend") else "-"
            out.append(f"| {gw} | {med(rows, 'rps'):.1f} | {min(r['rps'] for r in rows):.0f}-"
                       f"{max(r['rps'] for r in rows):.0f} | {fmt(med(rows, 'p50'), 2)} | "
                       f"{fmt(med(rows, 'p99'), 2)} | {fmt(med(rows, 'err'), 2)} | "
                       f"{fmt(med(rows, 'agent'), 2)} | {fb} | {dg} | {fmt(med(rows, 'amp'), 3)} "
                       f"| {ratio} |")
        mrows = res.get((scenario, "mend"))
        if mrows:
            circ = "; ".join(r.get("circuit", "?") for r in mrows)
            out += ["", f"mend per repetition: succeeded after retry "
                    f"{', '.join(fmt(r['retried'], 2) + ' %' for r in mrows)}; circuit at the "
                    f"end of the run: {circ}."]
        if scenario == "slow":
            c, d = a.connections, a.duration
            out += ["", f"With a 1 s backend each connection carries one request a second, so "
                    f"{c} connections bound every gateway at {c} req/s (more connections, more "
                    f"req/s). wrk counts only answers completed within its {d} s, and the round "
                    f"started at {d - 1} s ends just after: about {(d - 1) * c / d:.1f} req/s."]
        if scenario == "down" and res.get((scenario, "haproxy")):
            out += ["", "HAProxy waits min(timeout connect, 1 s) before each connect retry (its "
                    "turn-around timer), so each request takes about 3 s with 3 retries; nginx "
                    "retries at once; mend backs off 10-40 ms, then its circuit opens."]
        out.append("")
    out += ["### Targets", ""] + targets(a, res) + ["", "### Method", ""] + METHOD
    return "\n".join(out) + "\n"


def targets(a, res):
    lines = []

    def get(s, g, key):
        rows = res.get((s, g))
        return med(rows, key) if rows else None

    h, m = res.get(("healthy", "haproxy")), res.get(("healthy", "mend"))
    pairs = [x["rps"] / y["rps"] for x, y in zip(m or [], h or []) if y["rps"] > 0]
    if pairs:
        ratio = statistics.median(pairs)
        lines.append(f"- mend throughput >= HAProxy, healthy: {ratio:.2f}x "
                     f"({get('healthy', 'mend', 'rps'):.0f} vs {get('healthy', 'haproxy', 'rps'):.0f}"
                     f" req/s): **{'PASS' if ratio >= 1.0 else 'MISS'}**")
    for s in ("flaky503", "down"):
        me = get(s, "mend", "err")
        peers = {g: get(s, g, "err") for g in ("haproxy", "nginx")}
        if me is None or None in peers.values():
            continue
        ok = all(me < v for v in peers.values())
        lines.append(f"- mend error rate lower than both peers, {s}: mend {me:.2f} %, HAProxy "
                     f"{peers['haproxy']:.2f} %, nginx {peers['nginx']:.2f} % (degraded and "
                     f"fallback count as answered): **{'PASS' if ok else 'MISS'}**")
    amp = get("down", "mend", "amp")
    if amp is not None:
        lines.append(f"- mend amplification <= 1.2, down: {amp:.3f}: "
                     f"**{'PASS' if amp <= 1.2 else 'MISS'}**")
    return lines or ["- (not enough scenarios or gateways run to judge the targets)"]


METHOD = [
    "- req/s: responses completed per second (wrk), whatever their status; p50/p99: wrk's latency "
    "distribution.",
    "- error %: client-visible errors over responses plus socket errors: non-2xx answers, wrk's "
    "connect/read/write errors and timeouts, and for mend's task API a 200 whose status is "
    "`failed`. "
    "`degraded` and `fallback` count as answered; they have their own columns.",
    "- by agent %: for HAProxy and nginx a 2xx (the backend's answer passed through); for mend "
    "`succeeded` or `succeeded_after_retry` (the relay's `Mend-Outcome` header, none for a "
    "first call's answer; the task API's outcome status).",
    "- amplification: backend requests during the run / client requests sent (completed, plus "
    "one in flight per connection when wrk stops: wrk keeps every connection busy, and those "
    "requests reached the backend too), counted at the backend between just before and just "
    "after wrk: nginx's stub_status request counter (minus "
    "the counter's own reads), the slow server's own count, and for the hard-down port the host's "
    "Tcp AttemptFails in /proc/net/snmp (a refused connect counts one; another process on the host "
    "failing connects at the same time would be counted too). mend's health probes to the backend "
    "count. After wrk stops, the count is read again until it has not moved for 1.2 s (at most "
    "5 s), so retries still running for the requests in flight are counted.",
    "- Each run starts its gateway fresh (mend with an empty SQLite store), so a circuit opened "
    "in one run does not carry over; the backend runs for the whole scenario.",
]
