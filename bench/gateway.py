#!/usr/bin/env python3
"""Gateway comparison (issues 6 and 17): `mend serve` against HAProxy and nginx in front of the
same backends, under wrk on loopback.

Usage:
  python3 bench/gateway.py [--mend PATH] [--reps 3] [--duration 10] [--connections 32]
                           [--threads 1] [--scenarios original|partial|issue17|all|NAME,...]
                           [--gateways haproxy,nginx,mend,mend-api] [--no-budget] [--no-wished]
                           [--overload-rate 2000] [--overload-offered 4000] [--port-base 18100]
                           [--out FILE] [--keep]

Scenarios (bench/gateway_backends.py; each replica its own backend, started once per scenario;
a failing or slow replica is always replica 0, listed first to every gateway):
  healthy          nginx answering a small JSON body
  flaky503         the same nginx answering 503 to 30 % of the requests (split_clients on
                   $request_id: each retry draws again)
  down             a port nobody listens on (connection refused)
  slow             bench/gateway_slow.py, a python asyncio keep-alive server answering after 1 s
  healthy2         two healthy nginx replicas
  replica5pct      three nginx replicas, replica 0 answering 503 to 5 % of the requests
  replica_dead     two replicas, replica 0 an nginx answering 503 to everything (/health too)
  replica_refused  two replicas, replica 0 a port nobody listens on
  replica_slow     two replicas, replica 0 the python server answering after 1 s
  overload         one nginx with a capacity of --overload-rate requests a second (limit_req,
                   503 above it), offered --overload-offered requests a second: wrk paced by
                   bench/gateway/paced.lua (each connection pauses before each request), so
                   the load is twice the capacity whatever the gateway's speed
Groups for --scenarios: original (healthy, flaky503, down, slow; the default), partial (the six
replica and overload scenarios of issue 17), issue17 (partial plus flaky503 and down: every row
of issue 17's "Must show" table), all (the ten).
Gateways, one backend (healthy, flaky503, down, slow, overload): HAProxy (retries 3, retry-on 503
conn-failure), nginx (the backend listed 4 times, proxy_next_upstream error timeout http_503
non_idempotent, tries 4, upstream keep-alive). Replicas, as a user configures a pool: HAProxy
balance leastconn, retries 3, retry-on 503 conn-failure empty-response, option redispatch 1, health
checks on /health, observe layer7 + error-limit 10 + on-error mark-down; nginx least_conn,
max_fails=3 fail_timeout=10s per server, the same proxy_next_upstream, tries 4, keepalive
(bench/gateway_conf.py has the files). mend (its relay, `relays:`: a pass-through port in front of
the agent, with 3 retries, backoff 10 ms..1 s, the retry budget, a failure-rate breaker and the
degraded answer; replicas as the agent's `urls:`, policies.replica_balancing at its defaults),
mend-api (the same policies behind the task API, `POST /v1/tasks?wait=30`), and, when asked for,
mend-consecutive (the task API with the default consecutive breaker: 5 failures open it for 60 s).
In replica_slow mend is also given the agent policies of MEND_WISHED_POLICIES (hedging) when its
`mend check-config` accepts them (--no-wished: never); the report says whether it did. The
targets are judged on `mend`, the relay: what a user puts in front of an HTTP agent whose
clients speak its protocol. HAProxy, nginx and the relay are measured on `POST /task` with the
agent-protocol body, passed through.

Every run starts the gateway fresh (mend with an empty store), waits until it is ready, runs wrk
for --duration seconds (bench/gateway/measure.lua: count.lua's counters, and p50/p99 over the
requests themselves beside wrk's coordinated-omission-corrected ones), reads every replica's
request counter before and after, and stops the gateway. The gateway order rotates each repetition; the tables show medians per (scenario,
gateway), then issue 17's targets, each computed from them as met or not met. All processes
(backends, gateways, wrk) are ours and are killed at the end, also on error or Ctrl-C.
Durations on 2 CPUs (a run is --duration plus about 2.5 s of start, settle and stop):
  default (original): 4 scenarios x 4 gateways x 3 reps x 10 s, about 12 minutes
  --scenarios all:    10 scenarios x 4 gateways x 3 reps x 10 s, about 25 minutes
  --scenarios partial --reps 1 --duration 5 (what `make bench` adds): about 3 minutes
Needs wrk, haproxy, nginx on PATH and a built mend. Standard library only.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gateway_backends as gb  # noqa: E402
import gateway_conf as conf  # noqa: E402
from gateway_report import WRK_TIMEOUT, fmt, report  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COUNT_LUA = os.path.join(HERE, "gateway", "count.lua")  # the counters
LUA = os.path.join(HERE, "gateway", "measure.lua")  # count.lua + each request's own latency
PACED_LUA = os.path.join(HERE, "gateway", "paced.lua")  # measure.lua + a pause per request
SCENARIOS = list(gb.SCENARIOS)
DEFAULT_SCENARIOS = gb.ORIGINAL
# The agent's own policies mend would be given where the issue asks for hedging ("p99 <= 2x the
# healthy p99 (hedging or ejection)"). No such key exists yet in the build this was written
# against: each run checks it with `mend check-config` and leaves it out when rejected (the
# report says so). Keep the text in step with the key when it lands.
MEND_WISHED_POLICIES = {"replica_slow": "{hedging: {delay: p95, task_types: [code_review]}}"}
# mend: the relay with the configuration a user would put in front of a busy HTTP agent
# (failure-rate breaker); mend-api: the same behind the task API; mend-consecutive: the task API
# with the default breaker (consecutive, 5 failures, 60 s open), on request only.
GATEWAYS = ["haproxy", "nginx", "mend", "mend-api", "mend-consecutive"]
FORMER_GATEWAY_NAMES = {"mend-seed": "mend-consecutive"}
DEFAULT_GATEWAYS = ["haproxy", "nginx", "mend", "mend-api"]
AGENT_BODY = '{"attempt":0,"id":"t-1","payload":{"n":1},"type":"code_review"}'
MEND_BODY = '{"type":"code_review","agent":"backend","payload":{"n":1}}'


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Procs:
    """The processes this script started; each in its own process group, stopped by its id."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, out_path, env=None):
        with open(out_path, "wb") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        p.gw_name, p.gw_out = name, out_path
        self.procs.append(p)
        return p

    def stop(self, p, grace=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        else:  # the leader exited; its group (nginx workers) may not have
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p, grace=3.0)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_get(port, path, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def wait_ready(p, port, path=None, limit=15.0):
    """Until the port accepts (and path answers 200 when given); bounded by limit seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError(f"{p.gw_name} exited with {p.returncode} while starting; "
                               f"see {p.gw_out}:\n{tail(p.gw_out)}")
        try:
            if path is None:
                if port_open(port):
                    return
            elif http_get(port, path, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{p.gw_name} not ready on port {port} within {limit:.0f} s; "
                       f"see {p.gw_out}:\n{tail(p.gw_out)}")


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Bench:
    def __init__(self, args):
        self.a = args
        self.procs = Procs()
        self.dir = tempfile.mkdtemp(prefix="mend-gateway-")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, sub))
        base = args.port_base
        self.ports = {"mend": base + 10, "haproxy": base + 11, "nginx": base + 12,
                      "mend-consecutive": base + 13, "mend-api": base + 14}
        self.relay_port = base + 15  # the relay of `mend` (its API listens on ports["mend"])
        self.results = {}  # (scenario, gateway) -> [run dict]
        self.runs = 0
        self.backends = None  # gb.Backends of the scenario running
        self.notes = {}  # scenario -> [note for the report]
        self.wished_ok = {}  # scenario -> whether mend took MEND_WISHED_POLICIES[scenario]
        self.wait_ready = wait_ready

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def need_free(self, port):
        if port_open(port):
            raise RuntimeError(f"port {port} is in use by another process: pick --port-base")

    # ---- backends and their counters ----
    def backend_counts(self):
        """Requests each replica has seen so far (gateway_backends.Backends.counts)."""
        return self.backends.counts()

    def settled_count(self, limit=5.0):
        """The backend count once it stops moving (unchanged over 1.2 s, more than HAProxy's 1 s
        between connect retries; at most limit seconds): retries a gateway still makes for the
        requests in flight when wrk stopped are counted."""
        last, end = self.backend_counts(), time.monotonic() + limit
        while time.monotonic() < end:
            time.sleep(1.2)
            now = self.backend_counts()
            if now == last:
                break
            last = now
        return last

    # ---- gateways ----
    def mend_policies(self, scenario, port, ports, store):
        """The agent's own policies for mend in this scenario: the wished ones
        (MEND_WISHED_POLICIES) when this build's `mend check-config` takes them, else none."""
        wish = MEND_WISHED_POLICIES.get(scenario)
        if not wish or self.a.no_wished:
            return None
        if scenario not in self.wished_ok:
            cfg = self.write("mend-check.yaml", conf.mend(port, ports, store,
                                                          agent_policies=wish))
            p = subprocess.run([self.a.mend, "check-config", cfg], capture_output=True,
                               text=True, timeout=30, check=False)
            ok = p.returncode == 0
            why = " ".join((p.stdout + p.stderr).split())[:300]
            self.notes.setdefault(scenario, []).append(
                f"mend's agent policies `{wish}`: "
                + ("used." if ok else f"**not used: this mend rejects them** ({why}); mend ran "
                                      f"without them."))
            self.wished_ok[scenario] = ok
        return wish if self.wished_ok.get(scenario) else None

    def start_gateway(self, gw, scenario, backend_ports, tag):
        port = self.ports[gw]
        self.need_free(port)
        if gw == "haproxy":
            cfg = self.write("haproxy.cfg", conf.haproxy(port, backend_ports))
            p = self.procs.start(gw, ["haproxy", "-db", "-f", cfg], self.path(f"{tag}.out"))
            wait_ready(p, port)
        elif gw == "nginx":
            cfg = self.write("gw-nginx.conf", conf.nginx_gateway(self.dir, port, backend_ports))
            p = self.procs.start(gw, ["nginx", "-p", self.dir, "-c", cfg, "-e",
                                      self.path("gw-nginx-error.log")], self.path(f"{tag}.out"))
            wait_ready(p, port)
        else:
            store = self.path(f"{tag}.db")
            relay = self.relay_port if gw == "mend" else None
            if relay:
                self.need_free(relay)
            own = self.mend_policies(scenario, port, backend_ports, store)
            cfg = self.write("mend.yaml", conf.mend(port, backend_ports, store,
                                                    budget=not self.a.no_budget,
                                                    consecutive_breaker=gw == "mend-consecutive",
                                                    relay_port=relay, agent_policies=own))
            p = self.procs.start(gw, [self.a.mend, "serve", "--config", cfg],
                                 self.path(f"{tag}.out"))
            wait_ready(p, port, "/healthz")
            if relay:
                wait_ready(p, relay)
                return p, relay
        return p, port

    def pace_ms(self, scenario):
        """The pause before each request on each connection (ms), for a paced scenario (the
        offered load of --overload-offered requests a second over --connections), else 0."""
        if scenario != "overload":
            return 0
        return max(1, round(self.a.connections * 1000 / self.a.overload_offered))

    def wrk(self, gw, port, tag, scenario):
        task_api = gw.startswith("mend-")
        pace = self.pace_ms(scenario)
        env = dict(os.environ, GW_BODY=MEND_BODY if task_api else AGENT_BODY,
                   GW_PATH="/v1/tasks?wait=30" if task_api else "/task",
                   GW_MEND="1" if task_api else "relay" if gw == "mend" else "0",
                   GW_DELAY_MS=str(pace), GW_COUNT_LUA=COUNT_LUA, GW_MEASURE_LUA=LUA,
                   GW_CONNECTIONS=str(self.a.connections))
        argv = ["wrk", "-t", str(self.a.threads), "-c", str(self.a.connections),
                "-d", f"{self.a.duration}s", "--timeout", WRK_TIMEOUT,
                "-s", PACED_LUA if pace else LUA, f"http://127.0.0.1:{port}"]
        p = self.procs.start("wrk", argv, self.path(f"{tag}.wrk"), env=env)
        try:
            p.wait(timeout=self.a.duration + 60)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"wrk did not finish within {self.a.duration + 60} s")
        finally:
            self.procs.stop(p)
        text = tail(self.path(f"{tag}.wrk"), 1000)
        found, raw = None, {}
        for line in text.splitlines():
            if line.startswith("GW_JSON "):
                found = json.loads(line[len("GW_JSON "):])
            elif line.startswith("GW_RAW "):
                raw = json.loads(line[len("GW_RAW "):])
        if found is not None:
            found.update(raw)
            return found
        raise RuntimeError(f"wrk printed no GW_JSON line (exit {p.returncode}):\n{text[-2000:]}")

    def mend_agent(self, port):
        try:
            return json.loads(http_get(port, "/v1/agents/backend")[1])
        except (OSError, ValueError):
            return None

    def run(self, scenario, gw, rep):
        self.runs += 1
        tag = f"{scenario}-{gw}-{rep}"
        p, port = self.start_gateway(gw, scenario, self.backends.ports, tag)
        try:
            time.sleep(0.2)  # let startup probes and workers settle
            before = self.backend_counts()
            w = self.wrk(gw, port, tag, scenario)
            agent = self.mend_agent(self.ports[gw]) if gw.startswith("mend") else None
            after = self.settled_count()
        finally:
            self.procs.stop(p)
        per_replica = [y - x for x, y in zip(before, after)]
        return summarize(gw, w, per_replica, agent, self.a.connections)

    def main(self):
        log(f"temp dir {self.dir}; mend {self.a.mend}")
        for scenario in self.a.scenarios:
            self.backends = gb.Backends(self, scenario)
            try:
                self.backends.start()
                for rep in range(self.a.reps):
                    k = rep % len(self.a.gateways)
                    for gw in self.a.gateways[k:] + self.a.gateways[:k]:
                        r = self.run(scenario, gw, rep)
                        self.results.setdefault((scenario, gw), []).append(r)
                        log(f"{scenario:9} rep {rep + 1} {gw:8} {r['rps']:9.1f} req/s "
                            f"p50 {r['p50']:8.2f} ms p99 {r['p99']:8.2f} ms "
                            f"(per request {fmt(r['p99req'], 2)} ms) err {r['err']:6.2f} % "
                            f"agent {r['agent']:6.2f} % degraded {r['degraded']:6.2f} % "
                            f"goodput {r['goodput']:8.1f}/s amp {fmt(r['amp'], 3)} "
                            f"split {r['split']}{r.get('extra', '')}")
            finally:
                self.backends.stop()


def summarize(gw, w, per_replica, agent, connections):
    """One run's figures. Client requests sent = completed + one in flight per connection when
    wrk stops (wrk keeps each connection busy); the backend saw those in flight too.
    per_replica: requests each replica saw during the run."""
    backend = sum(per_replica)
    sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
    total = max(1, w["requests"] + sock)
    pct = lambda n: 100.0 * n / total  # noqa: E731
    if gw.startswith("mend"):
        by_agent = w["succeeded"] + w["after_retry"]
        errors = w["failed"] + w["unknown"] + w["non2xx"] + sock
    else:
        by_agent, errors = w["ok2xx"], w["non2xx"] + sock
    seconds = w["duration_us"] / 1e6
    split = "-" if len(per_replica) < 2 or backend <= 0 else \
        "/".join(f"{100.0 * n / backend:.0f}" for n in per_replica)
    r = {"rps": w["requests"] / seconds, "goodput": by_agent / seconds, "split": split,
         "per_replica": per_replica, "p50": w["p50_us"] / 1000.0,
         "p50req": w["p50_req_us"] / 1000.0 if "p50_req_us" in w else None,
         "p99req": w["p99_req_us"] / 1000.0 if "p99_req_us" in w else None,
         "p99": w["p99_us"] / 1000.0, "err": min(100.0, pct(errors)), "agent": pct(by_agent),
         "retried": pct(w["after_retry"]), "fallback": pct(w["fallback"]),
         "degraded": pct(w["degraded"]), "amp": backend / (w["requests"] + connections),
         "backend": backend, "requests": w["requests"], "sock": sock, "raw": w}
    if agent:
        c = agent.get("circuit", {})
        r["circuit"] = f"{c.get('state')}, {c.get('transitions')} transitions"
        r["extra"] = f" circuit {r['circuit']}"
        reps = replica_figures(agent)
        if reps:
            r["replicas"] = reps
            r["extra"] += f" replicas {reps}"
    return r


def replica_figures(agent):
    """A short text of the per-replica balancer figures in GET /v1/agents/NAME (whatever of
    calls / failures / ejected / ejections it has: the balancer's counts, which show whether the
    calls went through it), or None when the agent has no replica list."""
    reps = agent.get("replicas")
    if not isinstance(reps, list) or len(reps) < 2:
        return None
    parts = []
    for i, x in enumerate(reps):
        if not isinstance(x, dict):
            continue
        b = x.get("balancer") if isinstance(x.get("balancer"), dict) else x
        keys = [k for k in ("calls", "failures", "ejected", "ejections") if k in b]
        parts.append(f"r{i} " + ",".join(f"{k}={json.dumps(b[k])}" for k in keys)
                     if keys else f"r{i} ?")
    return "; ".join(parts) or None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mend", default=os.path.join(ROOT, "build/release/src/app/mend"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                    help="names, or groups: original (the default), partial, issue17, all")
    ap.add_argument("--gateways", default=",".join(DEFAULT_GATEWAYS))
    ap.add_argument("--no-budget", action="store_true", help="mend without a retry budget")
    ap.add_argument("--no-wished", action="store_true",
                    help="never give mend the wished agent policies (MEND_WISHED_POLICIES)")
    ap.add_argument("--overload-rate", type=int, default=2000,
                    help="overload: the backend's capacity, requests a second (limit_req)")
    ap.add_argument("--overload-offered", type=int, default=4000,
                    help="overload: the load offered, requests a second (wrk paced: each "
                         "connection pauses connections*1000/this ms before each request)")
    ap.add_argument("--port-base", type=int, default=18100,
                    help="backend ports +0..+2 (replicas 0..2); +3 the refusing port, +10..+15 "
                         "mend's API, HAProxy, nginx, mend-consecutive, mend-api, mend's relay")
    ap.add_argument("--out", help="also write the markdown to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    a = ap.parse_args()
    a.scenarios = gb.expand([s for s in a.scenarios.split(",") if s])
    a.gateways = [FORMER_GATEWAY_NAMES.get(g, g) for g in a.gateways.split(",") if g]
    bad = [s for s in a.scenarios if s not in SCENARIOS] + [g for g in a.gateways if g not in GATEWAYS]
    if bad:
        ap.error(f"unknown scenario or gateway: {', '.join(bad)}")
    if min(a.reps, a.duration, a.connections, a.threads, a.overload_rate,
           a.overload_offered) < 1:
        ap.error("--reps, --duration, --connections, --threads, --overload-rate and "
                 "--overload-offered must be >= 1")
    if a.connections < a.threads:
        ap.error("--connections must be >= --threads")
    need = {"wrk"} | ({"haproxy"} & set(a.gateways)) | {"nginx"}
    missing = [t for t in sorted(need) if shutil.which(t) is None]
    if missing:
        sys.exit(f"gateway.py: not found on PATH: {', '.join(missing)} (install them first)")
    if any(g.startswith("mend") for g in a.gateways) and not os.access(a.mend, os.X_OK):
        sys.exit(f"gateway.py: no mend binary at {a.mend} (build it, or give --mend PATH)")
    return a


def on_sigterm(*_):
    raise KeyboardInterrupt


def main():
    a = parse_args()
    bench = Bench(a)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)  # also when started with SIGINT ignored (&)
    t0, status = time.monotonic(), 0
    try:
        bench.main()
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        status = 130
    except (RuntimeError, OSError) as e:
        log(f"gateway.py: {e}")
        status = 1
    finally:
        bench.procs.stop_all()
        if a.keep or status == 1:
            log(f"configs and logs kept in {bench.dir}")
        else:
            shutil.rmtree(bench.dir, ignore_errors=True)
    if bench.results:
        text = report(bench)
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
    log(f"{bench.runs} runs in {time.monotonic() - t0:.0f} s" + (" (partial)" if status else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
