"""Markdown report of bench/gateway.py: one table per scenario, the issue's targets, the method.

Imported by bench/gateway.py only (no command line of its own).
"""
import os
import platform
import math
import statistics
import time

import gateway_backends as gb

WRK_TIMEOUT = "5s"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def title(scenario):
    return gb.SCENARIOS[scenario][0]


PEERS_ONE = ("HAProxy: retries 3, retry-on 503 conn-failure, no health checks. nginx: the "
             "backend listed 4 times (max_fails=0), proxy_next_upstream error timeout http_503 "
             "non_idempotent, proxy_next_upstream_tries 4. Both keep connections to the backend "
             "alive.")
PEERS_REPLICAS = ("HAProxy: balance leastconn, retries 3, retry-on 503 conn-failure "
                  "empty-response, option redispatch 1, health checks (GET /health, inter 2s, "
                  "fall 3, rise 2), observe layer7 with error-limit 10 and on-error mark-down. "
                  "nginx: least_conn, each replica once with max_fails=3 fail_timeout=10s, "
                  "proxy_next_upstream error timeout http_503 non_idempotent, "
                  "proxy_next_upstream_tries 4 (at most one try per replica), keepalive 64. "
                  "mend: the replicas as the agent's `urls:`, policies.replica_balancing at its "
                  "defaults.")


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
        if not any(res.get((scenario, gw)) for gw in a.gateways):
            continue
        specs = gb.Backends(bench, scenario).describe()
        out += [f"### {title(scenario)}", "",
                f"Backends: {'; '.join(specs)}. "
                f"{PEERS_REPLICAS if len(specs) > 1 else PEERS_ONE}", ""]
        out += [f"- {n}" for n in bench.notes.get(scenario, [])]
        if bench.notes.get(scenario):
            out.append("")
        out += ["| gateway | req/s | req/s min-max | p50 ms | p99 ms | p99/req ms | error % | "
                "by agent % | fallback % | degraded % | goodput/s | amplification | "
                "backend split % | req/s vs HAProxy |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
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
                       f"{fmt(med(rows, 'p99'), 2)} | {fmt(med(rows, 'p99req'), 2)} | "
                       f"{fmt(med(rows, 'err'), 2)} | "
                       f"{fmt(med(rows, 'agent'), 2)} | {fb} | {dg} | "
                       f"{fmt(med(rows, 'goodput'), 1)} | {fmt(med(rows, 'amp'), 3)} | "
                       f"{split(rows)} | {ratio} |")
        mrows = res.get((scenario, "mend"))
        if mrows:
            circ = "; ".join(r.get("circuit", "?") for r in mrows)
            out += ["", f"mend per repetition: succeeded after retry "
                    f"{', '.join(fmt(r['retried'], 2) + ' %' for r in mrows)}; circuit at the "
                    f"end of the run: {circ}."]
            if any(r.get("replicas") for r in mrows):
                out.append(f"mend's replicas at the end of each run (GET /v1/agents/backend): "
                           f"{' | '.join(r.get('replicas') or '?' for r in mrows)}.")
        if scenario == "slow":
            c, d = a.connections, a.duration
            out += ["", f"With a 1 s backend each connection carries one request a second, so "
                    f"{c} connections bound every gateway at {c} req/s (more connections, more "
                    f"req/s). wrk counts only answers completed within its {d} s, and the round "
                    f"started at {d - 1} s ends just after: about {(d - 1) * c / d:.1f} req/s."]
        if scenario == "overload":
            pace = bench.pace_ms(scenario)
            out += ["", f"Offered load: wrk paced, each of the {a.connections} connections "
                    f"pausing {pace} ms before each request: at most about "
                    f"{a.connections * 1000 / pace:.0f} req/s (less the answers' own time), "
                    f"against a capacity of {a.overload_rate} req/s. Goodput is the agent's "
                    f"answers per second; the capacity bounds every gateway's, so "
                    f"amplification is where they differ."]
        if scenario == "down" and res.get((scenario, "haproxy")):
            out += ["", "HAProxy waits min(timeout connect, 1 s) before each connect retry (its "
                    "turn-around timer), so each request takes about 3 s with 3 retries; nginx "
                    "retries at once; mend backs off 10-40 ms, then its circuit opens."]
        out.append("")
    old, new = targets(a, res), issue17(a, res)
    if not old and not new:
        old = ["- (not enough scenarios or gateways run to judge the targets)"]
    out += ["### Targets", ""] + old + ([""] if old and new else []) + new + \
        ["", "### Method", ""] + METHOD
    return "\n".join(out) + "\n"


def split(rows):
    """The backend split of the median run by amplification: each replica's share of the
    backend requests (replica 0 first), or '-' for one replica."""
    rows = [r for r in rows if r.get("split", "-") != "-"]
    if not rows:
        return "-"
    rows = sorted(rows, key=lambda r: r["amp"])
    return rows[(len(rows) - 1) // 2]["split"]


def met(ok):
    return "**met**" if ok else "**not met**"


def issue17(a, res):
    """Issue 17's "Must show" table: mend's relay against each target, computed from this run's
    figures (medians over repetitions); a scenario that did not run is listed as not run."""
    def get(s, g, key):
        rows = res.get((s, g))
        return med(rows, key) if rows else None

    def ratio(s, key, g="mend", base="haproxy"):
        pairs = [x[key] / y[key] for x, y in zip(res.get((s, g)) or [], res.get((s, base)) or [])
                 if y[key] > 0]
        return statistics.median(pairs) if pairs else None

    def peers(s, key, digits, unit=""):
        return " / ".join(fmt(get(s, g, key), digits) + unit for g in ("haproxy", "nginx"))

    rows = []

    def row(s, target, mend_text, peer_text, ok):
        rows.append(f"| {s} | {target} | {mend_text} | {peer_text} | "
                    f"{'not judged' if ok is None else met(ok)} |")

    def ran(s):
        return res.get((s, "mend")) is not None

    s = "flaky503"
    if ran(s):
        me, hap = get(s, "mend", "agent"), get(s, "haproxy", "agent")
        # Both sample the same odds (1 - 0.3^4 with 3 retries each): a difference within two
        # standard errors of the two shares (binomial, over this run's responses) is a tie, and
        # is said to be one; the strict comparison is printed beside it.
        def responses(g):
            return (get(s, g, "rps") or 0) * a.duration * a.reps
        tie = None
        if hap is not None and responses("mend") > 0 and responses("haproxy") > 0:
            se = 100 * math.sqrt(sum((p / 100) * (1 - p / 100) / responses(g)
                                     for g, p in (("mend", me), ("haproxy", hap))))
            tie = me < hap and hap - me <= 2 * se
        row(s, "by agent % >= HAProxy's; amplification reported",
            f"{fmt(me, 2)} % by agent, amplification {fmt(get(s, 'mend', 'amp'), 3)}"
            + (f" (below HAProxy's by {hap - me:.2f} points, within two standard errors of the "
               "two shares: a tie)" if tie else ""),
            f"{peers(s, 'agent', 2, ' %')} by agent, amplification {peers(s, 'amp', 3)}",
            None if hap is None else me >= hap or tie)
    for s in ("replica5pct", "replica_dead", "replica_refused"):
        if ran(s):
            me, amp = get(s, "mend", "agent"), get(s, "mend", "amp")
            row(s, "by agent % >= 99.9, amplification <= 1.1" + (
                "" if s == "replica5pct" else " (over the whole run, before the ejection too)"),
                f"{fmt(me, 2)} % by agent, amplification {fmt(amp, 3)}",
                f"{peers(s, 'agent', 2, ' %')} by agent, amplification {peers(s, 'amp', 3)}",
                me >= 99.9 and amp <= 1.1)
    def p99key(*scenarios):
        """p99req (each request's own latency) when every run has it, else wrk's p99."""
        rows_ = [r for sc in scenarios for g in ("mend", "haproxy", "nginx")
                 for r in res.get((sc, g)) or []]
        return "p99req" if all(r.get("p99req") is not None for r in rows_) else "p99"

    s = "replica_slow"
    if ran(s):
        base = next((b for b in ("healthy2", "healthy") if ran(b)), None)
        k = p99key(s, base) if base else p99key(s)
        what = "per request" if k == "p99req" else "wrk's"
        p99, healthy = get(s, "mend", k), get(base, "mend", k) if base else None
        row(s, f"p99 ({what}) <= 2x the healthy p99 (mend's, {base or 'healthy2 not run'})",
            f"p99 {fmt(p99, 2)} ms against {fmt(healthy, 2)} ms"
            + (f" ({p99 / healthy:.1f}x)" if healthy else "")
            + (f"; wrk's p99 {fmt(get(s, 'mend', 'p99'), 2)} ms" if k == "p99req" else ""),
            f"p99 {peers(s, k, 2, ' ms')}", None if healthy is None else p99 <= 2 * healthy)
    s = "overload"
    if ran(s):
        gp, amp = get(s, "mend", "goodput"), get(s, "mend", "amp")
        hgp, hamp = get(s, "haproxy", "goodput"), get(s, "haproxy", "amp")
        row(s, "goodput (agent answers/s) >= HAProxy's, amplification < HAProxy's",
            f"goodput {fmt(gp, 1)}/s ({fmt(gp / hgp if hgp else None, 4)}x HAProxy's), "
            f"amplification {fmt(amp, 3)}",
            f"goodput {peers(s, 'goodput', 1, '/s')}, amplification {peers(s, 'amp', 3)}",
            None if hgp is None else gp >= hgp and amp < hamp)
    s = "healthy2"
    if ran(s):
        k = p99key(s)
        r, p99, hp99 = ratio(s, "rps"), get(s, "mend", k), get(s, "haproxy", k)
        what = "per request" if k == "p99req" else "wrk's"
        row(s, f"req/s >= 1.0x HAProxy's; p99 ({what}) <= HAProxy's",
            f"{fmt(get(s, 'mend', 'rps'), 0)} req/s ({fmt(r, 2)}x), p99 {fmt(p99, 2)} ms",
            f"{peers(s, 'rps', 0, ' req/s')}, p99 {peers(s, k, 2, ' ms')}",
            None if r is None else r >= 1.0 and p99 <= hp99)
    s = "down"
    if ran(s):
        amp = get(s, "mend", "amp")
        row(s, "amplification <= 1.2", f"amplification {fmt(amp, 3)}",
            f"amplification {peers(s, 'amp', 3)}", amp <= 1.2)
    if not rows:
        return []
    return ["Issue 17's targets (\"Must show\"), judged on `mend`, the relay, from the medians "
            "above; peers are HAProxy / nginx in the same run:", "",
            "| scenario | target for mend | mend | HAProxy / nginx | |",
            "|---|---|---|---|---|"] + rows


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
    return lines


METHOD = [
    "- req/s: responses completed per second (wrk), whatever their status; p50/p99: wrk's latency "
    "distribution, which wrk 4.1 corrects for coordinated omission (a sample of n also counts at "
    "n - e, n - 2e, ... while above e, e being the mean time between a connection's requests). "
    "p99/req: the 99th percentile over the requests themselves, that correction undone exactly "
    "(bench/gateway/measure.lua). They differ where a few calls stall: one 1 s call among "
    "50,000 a second becomes about a thousand samples near 1 s in wrk's figure. Issue 17's "
    "latency targets are judged on p99/req (a gateway in front of replicas does not hold the "
    "next request back behind a slow call).",
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
    "- goodput/s: answers by the agent per second (by agent % of the responses, over wrk's "
    "duration).",
    "- backend split %: each replica's share of the backend requests (replica 0 first; the "
    "failing or slow replica is replica 0), of the median repetition by amplification. With a "
    "refusing replica its share is the refused connects.",
    "- Replicated scenarios: the failing replica comes first in every gateway's list. HAProxy's "
    "health checks count as backend requests, as mend's probes do (nginx has none).",
    "- Each run starts its gateway fresh (mend with an empty SQLite store), so a circuit opened "
    "in one run does not carry over; the backend runs for the whole scenario.",
]
