"""Configuration files for bench/gateway.py: the backends, HAProxy, nginx as a gateway, mend.

Every function returns the text of one file; paths and ports come from the caller. backend_ports
is a list of ports (one for a single backend, one per replica) or a single port. Imported by
bench/gateway.py only (no command line of its own).
"""

TASK_ANSWER = '{"result":"ok","agent":"backend"}'
TEMP_PATHS = ("client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; "
              "fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;")


def nginx_backend(d, port, fail_percent=0, rate=None, name="backend"):
    """nginx answering the agent protocol: /health healthy; every other path the small JSON answer,
    or, for fail_percent % of the requests (split_clients on $request_id, a fresh random id per
    request, so each retry draws again), a bare 503. fail_percent 100: 503 to everything, /health
    included (`{"status":"unhealthy"}`). rate: a capacity of that many requests a second
    (limit_req, burst rate/100 with nodelay, 503 above it; /health is not limited). /__stub is
    stub_status: the request count. name: of its pid and error log files in d."""
    split, fail, zone = "", "", ""
    health = "return 200 '{\"status\":\"healthy\"}';"
    if fail_percent >= 100:
        fail = "return 503 '{\"error\":{\"message\":\"busy\"}}';"
        health = "return 503 '{\"status\":\"unhealthy\"}';"
    elif fail_percent:
        split = 'split_clients "${request_id}" $gw_fail { %d%% 1; * 0; }' % fail_percent
        fail = "if ($gw_fail) { return 503 '{\"error\":{\"message\":\"busy\"}}'; }"
    answer = f"""    location / {{
      default_type application/json;
      {fail}
      return 200 '{TASK_ANSWER}';
    }}"""
    if rate:
        # `return` runs in the rewrite phase, before limit_req's (preaccess): the answer is given
        # by a named location reached through try_files (a later phase), once limit_req let the
        # request in. The file tried does not exist (an empty root); the request count is one.
        zone = f"limit_req_zone $server_port zone=cap:1m rate={rate}r/s;"
        answer = f"""    location / {{
      root {d}/body;
      limit_req zone=cap burst={max(1, rate // 100)} nodelay;
      limit_req_status 503;
      limit_req_log_level info;
      try_files /gw-none @answer;
    }}
    location @answer {{
      default_type application/json;
      return 200 '{TASK_ANSWER}';
    }}"""
    return f"""worker_processes 1;
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {TEMP_PATHS.format(d=d)}
  {split}
  {zone}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location = /__stub {{ stub_status; }}
    location = /health {{ default_type application/json; {health} }}
{answer}
  }}
}}
"""


def nginx_gateway(d, port, backend_ports, workers=2):
    """nginx in front of the backend(s), with upstream keep-alive and proxy_next_upstream error
    timeout http_503 non_idempotent (non_idempotent is needed for nginx to retry a POST that
    reached the backend, the 503 case; without it the 503s pass straight through).
    One backend: the same server listed 4 times (max_fails=0, so it is never marked down) and
    proxy_next_upstream_tries 4: one try and up to 3 retries, as HAProxy's retries 3.
    Replicas (as a user configures an upstream of replicas): least_conn, each server once with
    max_fails=3 fail_timeout=10s (3 failed tries within 10 s take it out for 10 s; a 503 is a
    failed try because http_503 is in proxy_next_upstream), proxy_next_upstream_tries 4 (nginx
    never tries a server twice for one request, so at most one try per replica)."""
    backend_ports = [backend_ports] if isinstance(backend_ports, int) else backend_ports
    if len(backend_ports) == 1:
        servers = "\n".join(f"    server 127.0.0.1:{backend_ports[0]} max_fails=0;"
                            for _ in range(4))
        balance = ""
    else:
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;"
                            for p in backend_ports)
        balance = "    least_conn;\n"
    return f"""worker_processes {workers};
daemon off;
pid {d}/gw-nginx.pid;
error_log {d}/gw-nginx-error.log crit;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {TEMP_PATHS.format(d=d)}
  upstream be {{
{balance}{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_503 non_idempotent;
      proxy_next_upstream_tries 4;
      proxy_connect_timeout 5s;
      proxy_read_timeout 30s;
    }}
  }}
}}
"""


def haproxy(port, backend_ports, threads=2):
    """HAProxy 2.6, keep-alive and connection reuse to the backend(s), retries 3.
    One backend: retry-on 503 and conn-failure, no health checks (they would be extra backend
    load, and marking the only server down helps nobody).
    Replicas (as a user configures a backend of replicas): balance leastconn; retry-on 503,
    conn-failure and empty-response with option redispatch 1 (every retry goes to another
    server); health checks (GET /health every 2 s, down after 3 failures, up after 2) and passive
    checks on live traffic: observe layer7, error-limit 10, on-error mark-down (10 errors in a row
    mark a server down until its health check brings it back)."""
    backend_ports = [backend_ports] if isinstance(backend_ports, int) else backend_ports
    if len(backend_ports) == 1:
        retry, extra = "retry-on 503 conn-failure", ""
        servers = f"  server b1 127.0.0.1:{backend_ports[0]}\n"
    else:
        retry = "retry-on 503 conn-failure empty-response\n  option redispatch 1"
        extra = ("  balance leastconn\n  option httpchk GET /health\n"
                 "  default-server check inter 2s fall 3 rise 2 observe layer7 error-limit 10 "
                 "on-error mark-down\n")
        servers = "".join(f"  server r{i} 127.0.0.1:{p}\n" for i, p in enumerate(backend_ports))
    return f"""global
  maxconn 8192
  nbthread {threads}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 3
  {retry}
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  http-reuse always
{extra}{servers}"""


def mend(port, backend_ports, store, budget=True, threads=2, consecutive_breaker=False,
         relay_port=None, agent_policies=None):
    """mend serve: one URL agent `backend` (`url:` for one backend, `urls:` for replicas, with
    policies.replica_balancing at its defaults: mend's balancer and outlier ejection, as a user
    who writes `urls:` gets them); retry 3 retries, error_scaled backoff with base 10 ms
    and cap 1 s (the default 1 s base would make every retried task a second or more long); a
    failure-rate breaker over a 10 s time window (opens at 50 % failures of the last 10 s, at least
    100 calls: docs/benchmarks.md explains why a busy agent needs a window in seconds, not the
    default last 100 calls; 30 % of 503s leave it closed), or with consecutive_breaker the
    default (consecutive, 5 failures, 60 s open); the retry budget with its
    defaults (unless budget is False); 2 server threads, 1024 connections; a short drain so that
    stopping is quick. With relay_port, a relay to `backend` on that port (2 threads), with the
    same policies. agent_policies: YAML flow mapping text of the agent's own `policies:`."""
    backend_ports = [backend_ports] if isinstance(backend_ports, int) else backend_ports
    breaker = "" if consecutive_breaker else \
        "  breaker: {mode: failure_rate, window: time, window_duration: 10s}\n"
    if len(backend_ports) == 1:
        where = f"    url: http://127.0.0.1:{backend_ports[0]}\n"
    else:
        where = "    urls:\n" + "".join(f"      - http://127.0.0.1:{p}\n" for p in backend_ports)
    own = f"    policies: {agent_policies}\n" if agent_policies else ""
    return f"""server:
  address: 127.0.0.1
  port: {port}
  threads: {threads}
  max_connections: 1024
  drain_timeout: 1s
store:
  path: {store}
policies:
  retry:
    max_retries: 3
    backoff: {{kind: error_scaled, base: 10ms, cap: 1s}}
{"  retry_budget: {}" if budget else ""}
{breaker}agents:
  - name: backend
{where}    capabilities: [code_review]
{own}""" + (f"relays:\n  - {{agent: backend, port: {relay_port}, threads: {threads}}}\n"
            if relay_port else "")
