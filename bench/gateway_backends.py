"""Scenarios and backends of bench/gateway.py: what stands behind the gateways, and its counters.

A scenario is a list of replicas (one for the single-backend scenarios); each replica is one
backend of its own, started once per scenario and kept for all of its runs:
  ("nginx", P)     nginx answering the agent protocol's small JSON body, and for P % of the
                   requests (split_clients on $request_id: each retry draws again) a bare 503.
                   GET /health answers 200 (the gray failure a probe does not see).
  ("dead", 0)      nginx answering 503 to everything, GET /health included.
  ("cap", R)       nginx with a capacity: limit_req at R requests a second (burst R/100,
                   nodelay) and 503 above it (limit_req_status 503). GET /health is not limited.
  ("slow", S)      bench/gateway_slow.py answering after S seconds (GET /health at once).
  ("refused", 0)   a port nobody listens on: every connect is refused.
Requests are counted at every backend: nginx's stub_status (less the counter's own reads), the
slow server's own count, and for a refused port the host's Tcp AttemptFails (/proc/net/snmp).
Imported by bench/gateway.py only (no command line of its own).
"""
import json
import os
import sys
import urllib.request

import gateway_conf as conf

# name -> (title, replicas). The failing replica is the first: mend's relay took replica 0
# first and moved on only on resource errors (issue 17), the harder case for it.
SCENARIOS = {
    "healthy": ("healthy: nginx answers a small JSON body", [("nginx", 0)]),
    "flaky503": ("flaky503: 30 % of backend answers are 503, one backend", [("nginx", 30)]),
    "down": ("down: connection refused (nobody listens)", [("refused", 0)]),
    "slow": ("slow: the backend answers after 1 s", [("slow", 1.0)]),
    "healthy2": ("healthy2: two healthy replicas", [("nginx", 0), ("nginx", 0)]),
    "replica5pct": ("replica5pct: three replicas, the first answers 503 to 5 % of requests",
                    [("nginx", 5), ("nginx", 0), ("nginx", 0)]),
    "replica_dead": ("replica_dead: two replicas, the first answers 503 to everything "
                     "(/health too)", [("dead", 0), ("nginx", 0)]),
    "replica_refused": ("replica_refused: two replicas, the first refuses connections "
                        "(nobody listens)", [("refused", 0), ("nginx", 0)]),
    "replica_slow": ("replica_slow: two replicas, the first answers after 1 s",
                     [("slow", 1.0), ("nginx", 0)]),
    "overload": ("overload: one backend with a capacity below the offered load, 503 above it",
                 [("cap", None)]),  # R from --overload-rate
}
ORIGINAL = ["healthy", "flaky503", "down", "slow"]
PARTIAL = ["healthy2", "replica5pct", "replica_dead", "replica_refused", "replica_slow",
           "overload"]
GROUPS = {"original": ORIGINAL, "partial": PARTIAL, "all": ORIGINAL + PARTIAL,
          "issue17": ["flaky503", "down"] + PARTIAL}
HERE = os.path.dirname(os.path.abspath(__file__))
SLOW = os.path.join(HERE, "gateway_slow.py")


def expand(names):
    """The scenario list of --scenarios: names and group names (original, partial, issue17, all),
    in the order given, each once."""
    out = []
    for n in names:
        for s in GROUPS.get(n, [n]):
            if s not in out:
                out.append(s)
    return out


def attempt_fails():
    """Tcp AttemptFails of /proc/net/snmp: connects that failed (a refused connect counts one)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:]))["AttemptFails"])


def http_get(port, path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


class Backends:
    """The replicas of one scenario: started by start(), counted by counts(), stopped by stop()."""

    def __init__(self, bench, scenario):
        self.bench, self.scenario = bench, scenario
        base = bench.a.port_base
        self.specs = SCENARIOS[scenario][1]
        if self.specs[0][0] == "cap":
            self.specs = [("cap", bench.a.overload_rate)]
        # replica i listens on base + i; a refused replica is base + 3 (the old down port)
        self.ports = [base + 3 if kind == "refused" else base + i
                      for i, (kind, _) in enumerate(self.specs)]
        self.procs = []
        self.stub_reads = [0] * len(self.specs)

    def start(self):
        b = self.bench
        for i, ((kind, arg), port) in enumerate(zip(self.specs, self.ports)):
            b.need_free(port)
            if kind == "refused":
                continue
            name = f"backend{i}-{self.scenario}"
            if kind == "slow":
                p = b.procs.start(f"slow backend {i}", [sys.executable, SLOW, str(port), str(arg)],
                                  b.path(f"{name}.out"))
                b.wait_ready(p, port, "/__count")
            else:
                cfg = b.write(f"{name}.conf", conf.nginx_backend(
                    b.dir, port,
                    fail_percent=100 if kind == "dead" else arg if kind == "nginx" else 0,
                    rate=arg if kind == "cap" else None, name=name))
                p = b.procs.start(f"backend nginx {i}", ["nginx", "-p", b.dir, "-c", cfg, "-e",
                                                         b.path(f"{name}-error.log")],
                                  b.path(f"{name}.out"))
                b.wait_ready(p, port, "/__stub")
            self.procs.append(p)
        return self.ports

    def stop(self):
        for p in self.procs:
            self.bench.procs.stop(p)
        self.procs = []

    def counts(self):
        """Requests each replica has seen so far (a refused one: failed connects on the host)."""
        out = []
        for i, ((kind, _), port) in enumerate(zip(self.specs, self.ports)):
            if kind == "refused":
                out.append(attempt_fails())
            elif kind == "slow":
                out.append(json.loads(http_get(port, "/__count")[1])["count"])
            else:
                # stub_status counts every request, its own reads included: take those off.
                self.stub_reads[i] += 1
                text = http_get(port, "/__stub")[1]
                out.append(int(text.splitlines()[2].split()[2]) - self.stub_reads[i])
        return out

    def describe(self):
        """One line per replica, for the report."""
        words = {"nginx": lambda a: f"nginx, {a} % random 503" if a else "nginx, healthy",
                 "dead": lambda a: "nginx, 503 to everything (/health too)",
                 "cap": lambda a: f"nginx, limit_req {a} req/s (burst {max(1, a // 100)}, "
                                  f"nodelay), 503 above it",
                 "slow": lambda a: f"python, answers after {a:g} s",
                 "refused": lambda a: "a port nobody listens on"}
        return [f"replica {i} (port {port}): {words[kind](arg)}"
                for i, ((kind, arg), port) in enumerate(zip(self.specs, self.ports))]
