#!/usr/bin/env python3
"""make soak: `mend serve` under a steady mixed load for MINUTES minutes: the first half one daemon
with the default configuration (its memory and descriptors sampled: do they level off once
tasks.retained finished tasks are kept?), the second half killed with SIGKILL and started again on
the same store every few seconds, keeping every task (tasks.retained: 1000000) so that each one
accepted in that half is audited at the end.

The agent is a mend-sample-agent this script starts (a URL agent: it outlives every daemon), with
5 % of its calls answered 503 and 20 ms of latency, so that tasks wait in backoff and calls are in
flight at every kill. Two clients submit tasks (code reviews, idempotent by configuration, and
deployments, which are not), with client ids and generated ids, about 100 a second in all. One
task in twenty is a triage for a second agent that answers every call 503: it escalates, and an
operator (this script) resolves every active record just before each kill, so that records open,
notify and resolve throughout. Notifications go to a webhook this script serves.

It prints, for the daemon of the first half: resident memory and open descriptors at its start,
on the plateau and at its end, with their slopes after its first quarter (per minute); the kills
survived; and the audit:
accepted tasks whose outcome is missing (lost), generated ids handed out twice, records named in
an outcome or seen before a kill that are gone, notifications (opened, resolved) of every record
that never reached the webhook (lost) or reached it more than once (duplicated: at least once is
the promise). It exits 1 when anything was lost or an id repeated.
"""
import argparse
import collections
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


def rss_and_fds(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds
    except (OSError, StopIteration):
        return None


def slope_per_minute(samples):
    """Least-squares slope of (t seconds, value) samples, per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    return 60 * sum((t - mt) * (v - mv) for t, v in samples) / var


class Daemon:
    def __init__(self, mend, config, log):
        self.proc = subprocess.Popen([mend, "serve", "--config", config], stdout=subprocess.PIPE,
                                     stderr=log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("mend: listening on "):
            raise RuntimeError("mend serve did not start: " + line)
        url = line.split()[-1]
        self.port = int(url.rsplit(":", 1)[1])

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def request(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Authorization": "Bearer soak-token", "Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, json.dumps(body) if body is not None else None, h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class Webhook(http.server.ThreadingHTTPServer):
    """The receiver of every notification: counts (record number, event) pairs."""
    daemon_threads = True

    def __init__(self):
        self.received = collections.Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    n = json.loads(body)
                    with outer.lock:
                        outer.received[(n.get("record_id"), n.get("event"))] += 1
                except ValueError:
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def counts(self):
        with self.lock:
            return dict(self.received)


def records(port):
    status, body = request(port, "GET", "/v1/escalations")
    return {r["number"]: r for r in json.loads(body)["records"]} if status == 200 else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mend", required=True)
    p.add_argument("--agent", help="mend-sample-agent (default: next to --mend's build)")
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--kill-every", type=float, default=5, help="seconds between kills (mean)")
    p.add_argument("--seed", type=int, default=20261207)
    a = p.parse_args()
    agent_bin = a.agent or os.path.join(os.path.dirname(a.mend), "../../examples/agent/mend-sample-agent")
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="mend-soak-")
    log = open(os.path.join(work, "mend.log"), "w")
    agent = subprocess.Popen([agent_bin, "--port", "0", "--latency", "20", "--fail", "503=0.05",
                              "--threads", "8", "--seed", str(a.seed)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    agent_url = agent.stdout.readline().split()[-1]
    doomed = subprocess.Popen([agent_bin, "--port", "0", "--fail", "503=1", "--name", "doomed"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    doomed_url = doomed.stdout.readline().split()[-1]
    webhook = Webhook()
    webhook_url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    config = os.path.join(work, "mend.yaml")
    def write_config(retained):
        with open(config, "w") as f:
            f.write(f"""server: {{port: 0, token: soak-token, max_wait_seconds: 30}}
store: {{path: mend.db}}
tasks: {{idempotent_types: [code_review], retained: {retained}}}
policies:
  retry: {{max_retries: 3, backoff: {{base: 100ms, cap: 1s}}}}
  breaker: {{failure_threshold: 100000}}
agents:
  - name: worker
    url: {agent_url}
    capabilities: [code_review, deployment]
  - name: doomed
    url: {doomed_url}
    capabilities: [triage]
escalation:
  receivers:
    - {{name: hook, kind: webhook, url: "{webhook_url}"}}
  routes: {{engineering: [hook], on-call: [hook], emergency: [hook]}}
""")
        os.chmod(config, 0o600)
    write_config(10000)  # the default

    accepted = {}      # id -> type, for the tasks accepted during the kills
    state_phase = {"kills": False}
    generated = []     # every generated id handed out
    refused = [0]
    lock = threading.Lock()
    state = {"port": None, "stop": False}
    samples = []       # (t, rss, fds)
    kills = 0
    seen_records = set()
    records_gone = set()
    resolved_by_soak = 0
    started = time.monotonic()

    def client(which):
        n = 0
        while not state["stop"]:
            port = state["port"]
            n += 1
            kind = "deployment" if n % 2 else "code_review"
            target = "worker"
            if n % 20 == 0:
                kind, target = "triage", "doomed"  # fails every attempt: escalates
            task = {"type": kind, "agent": target, "payload": {"content": "x" * 200}}
            if which == 0:
                task["id"] = f"s{n}-{rng.random():.9f}"[:60]
            try:
                status, body = request(port, "POST", "/v1/tasks", task, timeout=5)
            except OSError:
                status = 0
            with lock:
                if status == 202:
                    tid = json.loads(body)["id"]
                    if state_phase["kills"]:
                        accepted[tid] = kind
                    if which == 1:
                        generated.append(tid)
                elif status not in (0,):
                    refused[0] += 1
            time.sleep(0.02)

    daemon = Daemon(a.mend, config, log)
    state["port"] = daemon.port
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    deadline = started + a.minutes * 60
    steady_until = started + a.minutes * 30
    next_kill = steady_until
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if time.monotonic() < steady_until:
            s = rss_and_fds(daemon.proc.pid)
            if s:
                samples.append((time.monotonic() - started, s[0], s[1]))
        elif time.monotonic() >= next_kill:
            if not state_phase["kills"]:
                write_config(1000000)  # from the next start on, every task is kept for the audit
            # The operator resolves what is open: its notifications are in the outbox at the kill.
            for number, r in (records(daemon.port) or {}).items():
                if r["status"] != "resolved":
                    st, _ = request(daemon.port, "POST", f"/v1/escalations/{number}/resolve",
                                    {"by": "soak"})
                    resolved_by_soak += st == 200
            daemon.kill()
            kills += 1
            daemon = Daemon(a.mend, config, log)
            now_there = records(daemon.port)
            if now_there is not None:
                records_gone |= seen_records - set(now_there)
                seen_records = set(now_there)
            state["port"] = daemon.port
            state_phase["kills"] = True
            next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * a.kill_every
    state["stop"] = True
    for t in threads:
        t.join()

    # The audit, on the last daemon.
    lost = []
    statuses = {}
    told = set()  # records named in outcomes
    for tid in list(accepted):
        status, body = request(daemon.port, "GET", f"/v1/tasks/{tid}?wait=30", timeout=40)
        if status != 200:
            lost.append(tid)
            continue
        task = json.loads(body)
        s = task["status"]
        statuses[s] = statuses.get(s, 0) + 1
        escalation = (task.get("outcome") or {}).get("escalation") or {}
        if "record_id" in escalation:
            told.add(escalation["record_id"])
    repeated = len(generated) - len(set(generated))
    final_records = records(daemon.port) or {}
    records_gone |= (seen_records | told) - set(final_records)
    expected = set()
    for number, r in final_records.items():
        expected.add((number, "trigger"))
        if r["status"] == "resolved":
            expected.add((number, "resolve"))
    wait_until = time.monotonic() + 30
    while time.monotonic() < wait_until and not expected <= set(webhook.counts()):
        time.sleep(0.2)
    delivered = webhook.counts()
    missing = expected - set(delivered)
    duplicated = sum(c - 1 for key, c in delivered.items() if key in expected)
    status, stats = request(daemon.port, "GET", "/v1/agents/worker")
    daemon.proc.send_signal(signal.SIGTERM)
    daemon.proc.wait()
    for p in (agent, doomed):
        p.send_signal(signal.SIGTERM)
        p.wait()
    webhook.shutdown()

    def at(fraction):
        return samples[min(len(samples) - 1, int(fraction * len(samples)))]
    plateau = [s for s in samples if s[0] >= 0.25 * a.minutes * 30]
    print(f"soak: {a.minutes:g} min, {kills} SIGKILLs; {len(generated)} ids generated in all, "
          f"{len(accepted)} tasks accepted during the kills, {refused[0]} refused")
    print("steady daemon RSS (MiB) and descriptors: start {:.1f} / {}, plateau {:.1f} / {}, end {:.1f} / {}"
          .format(at(0)[1] / 2**20, at(0)[2], at(0.5)[1] / 2**20, at(0.5)[2],
                  at(1)[1] / 2**20, at(1)[2]))
    print("slopes after its first quarter: RSS {:+.2f} MiB/min, descriptors {:+.2f}/min".format(
        slope_per_minute([(t, r / 2**20) for t, r, _ in plateau]),
        slope_per_minute([(t, f) for t, _, f in plateau])))
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
    print(f"audit of the tasks accepted during the kills: lost {len(lost)}; "
          f"generated ids repeated (whole run): {repeated}")
    print(f"records: {len(final_records)} in all ({len(told)} named in audited outcomes, "
          f"{resolved_by_soak} resolved before a kill), gone {len(records_gone)}; notifications: "
          f"{len(expected)} expected, {len(expected) - len(missing)} delivered, lost "
          f"{len(missing)}, duplicated {duplicated}")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if lost or repeated or missing or records_gone else 0


if __name__ == "__main__":
    sys.exit(main())
