-- wrk script of bench/gateway.py: count.lua (GW_COUNT_LUA) plus each request's own latency.
--
-- wrk 4.1.0 corrects its latency histogram for coordinated omission before done() sees it
-- (stats_correct: every sample n >= 2e also counts at n - e, n - 2e, ... while above e, where
-- e = duration_us / (requests / connections), the mean time between a connection's requests).
-- With a closed loop that is right when a stalled connection holds back the requests behind it;
-- for a gateway where one call in ten thousand takes 1 s it turns that call into about a
-- thousand samples, and p99 into the stall. This script undoes the correction exactly (the
-- samples added from above are taken off, from the top down, one residue of e at a time) and
-- prints one more line, GW_RAW {"p50_req_us":..,"p99_req_us":..,"samples":..}: percentiles over
-- the requests themselves. It reads wrk's histogram through LuaJIT's FFI (struct stats of
-- wrk's stats.h: count, limit, min, max, data[]), checked against latency.min/max and count;
-- when the check fails it prints GW_RAW {} and the report shows "-". GW_CONNECTIONS: wrk's -c.
dofile(os.getenv("GW_COUNT_LUA"))

local counted_done = done
local ffi = require("ffi")

local function raw_percentiles(summary, latency)
  local ok, p = pcall(ffi.cast, "uint64_t**", latency)
  if not ok then return nil end
  local s = p[0]
  local count, mn, mx = tonumber(s[0]), tonumber(s[2]), tonumber(s[3])
  if mn ~= tonumber(latency.min) or mx ~= tonumber(latency.max) or count < summary.requests * 0.5 then
    return nil
  end
  local data = s + 4
  local per = math.floor(summary.requests / tonumber(os.getenv("GW_CONNECTIONS") or "0"))
  local e = per > 0 and math.floor(summary.duration / per) or 0
  local vals, orig, acc, total = {}, {}, {}, 0  -- vals: values with samples, descending
  for n = mx, mn, -1 do
    local c = tonumber(data[n])
    if c > 0 then
      local o = c
      if e > 0 and n > e then
        local r = n % e
        o = c - (acc[r] or 0)
        acc[r] = (acc[r] or 0) + o
      end
      if o > 0 then
        vals[#vals + 1] = n
        orig[n] = o
        total = total + o
      end
    end
  end
  if total <= 0 then return nil end
  local function pct(q)  -- wrk's stats_percentile, over the original samples
    local rank = math.floor(q / 100 * total + 0.5 + 0.5)
    local seen = 0
    for i = #vals, 1, -1 do
      seen = seen + orig[vals[i]]
      if seen >= rank then return vals[i] end
    end
    return vals[1]
  end
  return pct(50), pct(99), total
end

function done(summary, latency, requests)
  counted_done(summary, latency, requests)
  local ok, p50, p99, n = pcall(raw_percentiles, summary, latency)
  if ok and p50 then
    io.write(string.format('GW_RAW {"p50_req_us":%d,"p99_req_us":%d,"samples":%d}\n', p50, p99, n))
  else
    io.write("GW_RAW {}\n")
  end
end
