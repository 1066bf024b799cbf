-- wrk script of bench/gateway.py for a paced load (the overload scenario): measure.lua's requests,
-- counters and latencies (GW_MEASURE_LUA: its path), and each connection waits GW_DELAY_MS
-- milliseconds before each of its requests, so that C connections offer about
-- C * 1000 / (GW_DELAY_MS + latency) requests a second instead of as many as the gateway answers.
dofile(os.getenv("GW_MEASURE_LUA"))

local pause = tonumber(os.getenv("GW_DELAY_MS") or "0")

function delay()
  return pause
end
