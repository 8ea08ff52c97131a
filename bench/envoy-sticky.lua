-- Sticky canary routing in Envoy's Lua filter: what a platform team might write instead of
-- sticky-canary, for configuration (e) of bench/gateway.py. Same inputs and outputs as the
-- filter's config in the benchmark: key from the `session` cookie, else the
-- `sticky-canary-id` cookie, else a new id sent back in Set-Cookie; an override header with a
-- secret; the routing header replaced on every request.
--
-- What it does NOT do like sticky-canary (docs/benchmarks.md): Envoy's Lua has no SHA-256,
-- so the bucket is djb2 (salt, NUL, key) mod 10000 and does not match docs/assignment.md;
-- new ids come from math.random (predictable, not a CSPRNG); no counters; the secret is
-- compared with ==, not in constant time; cookie parsing is two patterns, not RFC 6265.
--
-- bench/gateway.py replaces the ROUTES line with one entry per configured host.

local ROUTES = {} -- ROUTES
local CANARY_BASIS_POINTS = 1000 -- v2 takes buckets [0, 1000): 10%
local ID_COOKIE = "sticky-canary-id"
local COOKIE_ATTRIBUTES = "; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax"
local OVERRIDE_SECRET = "0123456789abcdef0123"

local function bucket(salt, key)
  local bytes = salt .. "\0" .. key
  local hash = 5381
  for i = 1, #bytes do
    hash = (hash * 33 + bytes:byte(i)) % 4294967296
  end
  return hash % 10000
end

local function cookie(header, name)
  if header == nil then
    return nil
  end
  local value = header:match("^%s*" .. name .. "=([^;]*)") or header:match(";%s*" .. name .. "=([^;]*)")
  if value ~= nil then
    value = value:match("^%s*(.-)%s*$")
    if value ~= "" then
      return value
    end
  end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local salt = ROUTES[headers:get(":authority")]
  if salt == nil then
    headers:remove("x-canary-version")
    return
  end
  local forced = headers:get("x-canary-force")
  if forced ~= nil then
    local secret = headers:get("x-canary-secret")
    headers:remove("x-canary-force")
    headers:remove("x-canary-secret")
    if forced == "v2" and secret == OVERRIDE_SECRET then
      headers:replace("x-canary-version", forced)
      return
    end
  end
  local cookies = headers:get("cookie")
  local key = cookie(cookies, "session") or cookie(cookies, ID_COOKIE)
  if key == nil then
    key = string.format("%08x%08x%08x%08x", math.random(0, 4294967295), math.random(0, 4294967295),
      math.random(0, 4294967295), math.random(0, 4294967295))
    handle:streamInfo():dynamicMetadata():set("sticky", "set_cookie", ID_COOKIE .. "=" .. key .. COOKIE_ATTRIBUTES)
  end
  if bucket(salt, key) < CANARY_BASIS_POINTS then
    headers:replace("x-canary-version", "v2")
  else
    headers:replace("x-canary-version", "v1")
  end
end

function envoy_on_response(handle)
  local sticky = handle:streamInfo():dynamicMetadata():get("sticky")
  if sticky ~= nil and sticky.set_cookie ~= nil then
    handle:headers():add("set-cookie", sticky.set_cookie)
  end
end
