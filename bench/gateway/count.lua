-- wrk script of bench/gateway.py: POSTs GW_BODY to GW_PATH and classifies every answer.
-- Per thread: 2xx (answered by the backend for a pass-through proxy), mend's outcome, non-2xx.
-- GW_MEND: "0" a plain proxy; "1" mend's task API (the outcome is the first "status":"..." of
-- its body); "relay" mend's relay (the outcome is its Mend-Outcome header; none: succeeded).
-- done() prints one line "GW_JSON {...}".
local body = os.getenv("GW_BODY") or "{}"
local path = os.getenv("GW_PATH") or "/"
local mode = os.getenv("GW_MEND") or "0"
local mend = mode == "1"
local relay = mode == "relay"

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok2xx, non2xx, succeeded, after_retry, fallback, degraded, failed, unknown = 0, 0, 0, 0, 0, 0, 0, 0
end

function response(status, headers, resp)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    return
  end
  ok2xx = ok2xx + 1
  local s
  if relay then
    s = headers["Mend-Outcome"] or headers["mend-outcome"] or "succeeded"
  elseif mend then
    s = resp and string.match(resp, '"status":"([%l_]+)"')
  else
    return
  end
  if s == "succeeded" then succeeded = succeeded + 1
  elseif s == "succeeded_after_retry" then after_retry = after_retry + 1
  elseif s == "fallback" then fallback = fallback + 1
  elseif s == "degraded" then degraded = degraded + 1
  elseif s == "failed" then failed = failed + 1
  else unknown = unknown + 1 end
end

local names = {"ok2xx", "non2xx", "succeeded", "after_retry", "fallback", "degraded", "failed", "unknown"}

function done(summary, latency, requests)
  local parts = {}
  for _, n in ipairs(names) do
    local total = 0
    for _, t in ipairs(threads) do total = total + (t:get(n) or 0) end
    table.insert(parts, string.format('"%s":%d', n, total))
  end
  local e = summary.errors
  table.insert(parts, string.format('"requests":%d,"duration_us":%d', summary.requests, summary.duration))
  table.insert(parts, string.format('"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d',
                                    e.connect, e.read, e.write, e.timeout, e.status))
  table.insert(parts, string.format('"p50_us":%d,"p99_us":%d,"max_us":%d',
                                    latency:percentile(50), latency:percentile(99), latency.max))
  io.write("GW_JSON {" .. table.concat(parts, ",") .. "}\n")
end
