#!/usr/bin/env bash
# Two builds of `mend serve` side by side on the task API: before and after a change.
# Usage: bench/ab_task_api.sh BEFORE_MEND AFTER_MEND [REPETITIONS=5]
# Starts a healthy nginx backend (bench/gateway_conf.py) on 127.0.0.1:19181, then per repetition
# runs each binary in turn (fresh store, 2 s of warm-up, then wrk -t1 -c32 -d5s on
# POST /v1/tasks?wait=30) and prints its req/s, CPU per task (from /proc/PID/stat) and p50/p99.
# Needs nginx, wrk and curl. Every process it starts is stopped when it ends.
set -euo pipefail
before=${1:?usage: bench/ab_task_api.sh BEFORE_MEND AFTER_MEND [REPETITIONS]}
after=${2:?usage: bench/ab_task_api.sh BEFORE_MEND AFTER_MEND [REPETITIONS]}
reps=${3:-5}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/mend-ab-XXXXXX)
mkdir -p "$dir"/{body,proxy,fastcgi,uwsgi,scgi}
python3 -c "import sys; sys.path.insert(0, '$here'); import gateway_conf as c
open('$dir/backend.conf', 'w').write(c.nginx_backend('$dir', 19181, 0))
open('$dir/mend.yaml', 'w').write(c.mend(19170, 19181, '$dir/mend.db'))"
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
  "'{\"type\":\"code_review\",\"agent\":\"backend\",\"payload\":{\"n\":1}}'" > "$dir/task.lua"
nginx -p "$dir" -c "$dir/backend.conf" -e "$dir/backend-error.log" &
backend=$!
mend_pid=""
cleanup() {
  [[ -n "$mend_pid" ]] && kill "$mend_pid" 2>/dev/null || true
  kill "$backend" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
url='http://127.0.0.1:19170/v1/tasks?wait=30'
echo "rep build req/s cpu_us_per_task p50 p99"
for ((rep = 1; rep <= reps; rep++)); do
  for build in before after; do
    binary=$before; [[ $build == after ]] && binary=$after
    rm -f "$dir"/mend.db*
    "$binary" serve -c "$dir/mend.yaml" > "$dir/mend.log" 2>&1 &
    mend_pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:19170/readyz > /dev/null && break; sleep 0.1; done
    wrk -t1 -c32 -d2s -s "$dir/task.lua" "$url" > /dev/null
    start=$(cpu_ticks "$mend_pid")
    out=$(wrk -t1 -c32 -d5s -s "$dir/task.lua" --latency "$url")
    ticks=$(($(cpu_ticks "$mend_pid") - start))
    n=$(awk '/requests in/ {print $1}' <<< "$out")
    echo "$rep $build $(awk '/Requests\/sec/ {print $2}' <<< "$out")" \
      "$((ticks * 10000 * 100 / $(getconf CLK_TCK) / n))" \
      "$(awk '/ 50%/ {print $2}' <<< "$out") $(awk '/ 99%/ {print $2}' <<< "$out")"
    kill "$mend_pid"; wait "$mend_pid" 2>/dev/null || true; mend_pid=""
  done
done
