-- wrk script for bench/gateway.py: pre-built requests, cycled, and a JSON summary line.
--
--   wrk ... -s bench/wrk-requests.lua URL -- HOST MODE KEYS
--
-- MODE: returning (Cookie: session=<32 hex>), new (no cookie), cookie4k (a ~4 KB Cookie
-- header with the session cookie last, the worst case for a parser). KEYS distinct session
-- keys are cycled over, so a filter cannot win by caching one answer. Requests are
-- formatted once in init(), so the per-request cost in wrk is a table lookup.

local requests = {}
local next_index = 0

-- A deterministic 32-hex-digit key per index (a 32-bit LCG), like a session id.
local function key(index)
  local state = index * 2654435761 % 4294967296
  local parts = {}
  for part = 1, 4 do
    state = (state * 1664525 + 1013904223) % 4294967296
    parts[part] = string.format("%08x", state)
  end
  return table.concat(parts)
end

-- About 4 KB of cookies a real site carries (analytics, consent, preferences), before the session.
local function filler()
  local cookies = {}
  local i = 0
  local size = 0
  while size < 3900 do
    local cookie = string.format("_pref%03d=%s%s", i, key(i + 100000), key(i + 200000))
    cookies[#cookies + 1] = cookie
    size = size + #cookie + 2
    i = i + 1
  end
  return table.concat(cookies, "; ")
end

function init(args)
  local host, mode, count = args[1], args[2], tonumber(args[3]) or 1000
  local prefix = ""
  if mode == "cookie4k" then
    prefix = filler() .. "; "
  end
  if mode == "new" then
    count = 1
  end
  for i = 1, count do
    local headers = { ["Host"] = host }
    if mode ~= "new" then
      headers["Cookie"] = prefix .. "session=" .. key(i)
    end
    requests[i] = wrk.format("GET", "/", headers)
  end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
