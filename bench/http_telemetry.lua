-- http_telemetry.lua — wrk script for bench/run.sh.
-- Posts the smart-meter payload {"pulseCounter":N,"leakage":false,"batteryLevel":N}
-- to /api/v1/<token>/telemetry, rotating over the tokens listed (one per line) in
-- the file named by env TOKENS_FILE, on wrk's keep-alive connections.
-- Counts 2xx and non-2xx responses per thread; done() prints
--   bench_result ok2xx=N non2xx=M
-- which run.sh parses (wrk's own "Requests/sec" counts every response).

local tokens = {}
local threads = {}

local function load_tokens()
  local path = os.getenv("TOKENS_FILE") or "tokens.txt"
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  f:close()
  assert(#tokens > 0, "no tokens in " .. path)
end

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  load_tokens()
  idx = (id or 0) * 7919 % #tokens
  counter = 0
  ok2xx = 0
  non2xx = 0
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  idx = idx % #tokens + 1
  counter = counter + 1
  local body = string.format('{"pulseCounter":%d,"leakage":false,"batteryLevel":%d}', counter, 100 - counter % 100)
  return wrk.format("POST", "/api/v1/" .. tokens[idx] .. "/telemetry", nil, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, t in ipairs(threads) do
    ok = ok + (t:get("ok2xx") or 0)
    bad = bad + (t:get("non2xx") or 0)
  end
  io.write(string.format("bench_result ok2xx=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d\n", ok, bad,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
