"""Configuration files for bench/gateway.py: the backends, HAProxy, nginx as a gateway, mend.

Every function returns the text of one file; paths and ports come from the caller. Imported by
bench/gateway.py only (no command line of its own).
"""

TASK_ANSWER = '{"result":"ok","agent":"backend"}'
TEMP_PATHS = ("client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; "
              "fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;")


def nginx_backend(d, port, fail_percent):
    """nginx answering the agent protocol: /health healthy; every other path the small JSON answer,
    or, for fail_percent % of the requests (split_clients on $request_id, a fresh random id per
    request, so each retry draws again), a bare 503. /__stub is stub_status: the request count."""
    split, fail = "", ""
    if fail_percent:
        split = 'split_clients "${request_id}" $gw_fail { %d%% 1; * 0; }' % fail_percent
        fail = "if ($gw_fail) { return 503 '{\"error\":{\"message\":\"busy\"}}'; }"
    return f"""worker_processes 1;
daemon off;
pid {d}/backend.pid;
error_log {d}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {TEMP_PATHS.format(d=d)}
  {split}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    keepalive_requests 1000000;
    location = /__stub {{ stub_status; }}
    location = /health {{ default_type application/json; return 200 '{{"status":"healthy"}}'; }}
    location / {{
      default_type application/json;
      {fail}
      return 200 '{TASK_ANSWER}';
    }}
  }}
}}
"""


def nginx_gateway(d, port, backend_port, workers=2):
    """nginx in front of the backend: the same server listed 4 times (max_fails=0, so it is never
    marked down) and proxy_next_upstream_tries 4: one try and up to 3 retries, as HAProxy's
    retries 3. non_idempotent is needed for nginx to retry a POST that reached the backend (the
    503 case); without it the 503s pass straight through. Keep-alive to the upstream."""
    servers = "\n".join(f"    server 127.0.0.1:{backend_port} max_fails=0;" for _ in range(4))
    return f"""worker_processes {workers};
daemon off;
pid {d}/gw-nginx.pid;
error_log {d}/gw-nginx-error.log crit;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {TEMP_PATHS.format(d=d)}
  upstream be {{
{servers}
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
      proxy_read_timeout 30s;
    }}
  }}
}}
"""


def haproxy(port, backend_port, threads=2):
    """HAProxy 2.6: retries 3 with retry-on 503 and conn-failure, keep-alive and connection reuse
    to the backend, no health checks (they would be extra backend load)."""
    return f"""global
  maxconn 8192
  nbthread {threads}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 3
  retry-on 503 conn-failure
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  http-reuse always
  server b1 127.0.0.1:{backend_port}
"""


def mend(port, backend_port, store, budget=True, threads=2, consecutive_breaker=False,
         relay_port=None):
    """mend serve: one URL agent `backend`; retry 3 retries, error_scaled backoff with base 10 ms
    and cap 1 s (the default 1 s base would make every retried task a second or more long); a
    failure-rate breaker over a 10 s time window (opens at 50 % failures of the last 10 s, at least
    100 calls: docs/benchmarks.md explains why a busy agent needs a window in seconds, not the
    default last 100 calls; 30 % of 503s leave it closed), or with consecutive_breaker the
    default (consecutive, 5 failures, 60 s open); the retry budget with its
    defaults (unless budget is False); 2 server threads, 1024 connections; a short drain so that
    stopping is quick. With relay_port, a relay to `backend` on that port (2 threads), with the
    same policies."""
    breaker = "" if consecutive_breaker else \
        "  breaker: {mode: failure_rate, window: time, window_duration: 10s}\n"
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
    url: http://127.0.0.1:{backend_port}
    capabilities: [code_review]
""" + (f"relays:\n  - {{agent: backend, port: {relay_port}, threads: {threads}}}\n"
       if relay_port else "")
