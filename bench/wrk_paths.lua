-- wrk script for bench/: replays a list of request paths (one per line), in order, cycling.
--   wrk -t1 -c8 -d10s --latency -s bench/wrk_paths.lua http://127.0.0.1:PORT -- paths.txt
-- Environment: BENCH_AUTHORIZATION (optional) is sent as the Authorization header of every
-- request (Twin needs a bearer token). No Accept-Encoding is sent: responses are uncompressed.
-- done() prints one line "WRKJSON {...}" that bench/load.py parses.

local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local paths = {}
local idx = 1

function init(args)
  local f = assert(io.open(args[1], "r"), "cannot open path list " .. tostring(args[1]))
  for line in f:lines() do
    if #line > 0 then paths[#paths + 1] = line end
  end
  f:close()
  assert(#paths > 0, "empty path list")
  -- each wrk thread starts somewhere else in the list
  idx = ((tid or 0) * 997) % #paths + 1
  local auth = os.getenv("BENCH_AUTHORIZATION")
  if auth and #auth > 0 then
    wrk.headers["Authorization"] = auth
  end
end

function request()
  local p = paths[idx]
  idx = idx % #paths + 1
  return wrk.format("GET", p)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
