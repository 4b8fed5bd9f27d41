package redislimit

// The scripts implement ratelimit's bucket arithmetic (tenancy/ratelimit/
// bucket.go) on Redis hashes {l: level, t: last refill ms, c: capacity}:
// keep them in step; the shared suite (ratelimittest) checks that they
// agree. Redis' Lua numbers are doubles: every value stays an integer below
// 2^53 (ratelimit.MaxCapacity), divisions are corrected to exact integer
// division, and numbers go back to Redis through string.format('%d')
// because Lua's own number-to-string conversion keeps only 14 digits.

// luaCommon is shared by both scripts.
const luaCommon = `
local function ceildiv(a, b)
  if a <= 0 then return 0 end
  local q = math.floor(a / b)
  if q * b < a then q = q + 1 end
  if q > 0 and (q - 1) * b >= a then q = q - 1 end
  return q
end
local function floordiv(a, b)
  if a <= 0 then return 0 end
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 end
  if (q + 1) * b <= a then q = q + 1 end
  return q
end
local function int(x) return string.format('%d', x) end
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- fetch returns bucket key's level and last refill, adapted to cap and
-- refilled up to now; a missing bucket is full.
local function fetch(key, w, cap)
  local full = cap * w
  local h = redis.call('HMGET', key, 'l', 't', 'c')
  if not h[1] then return full, now end
  local level, last, c = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  if c ~= cap then level = level + (cap - c) * w end
  local el = now - last
  if el > 0 then
    if el > 2 * w then el = 2 * w end
    level = level + el * cap
    last = now
  end
  if level > full then level = full elseif level < -full then level = -full end
  return level, last
end
local function store(key, w, cap, level, last)
  redis.call('HSET', key, 'l', int(level), 't', int(last), 'c', int(cap))
  redis.call('PEXPIRE', key, ceildiv(cap * w - level, cap) + 1000)
end
`

// reserveSrc reserves a request.
//
//	KEYS[1..n]  bucket hashes; KEYS[n+1] the month's spend counter (budget > 0)
//	ARGV[1]     now in unix ms, or -1 for the server's clock (TIME)
//	ARGV[2]     n
//	ARGV[3..6]  budget, cost (µUSD), seed (-1: ask the caller), counter TTL (s)
//	ARGV[4+3i .. 6+3i]  window ms, capacity, amount of bucket i
//
// Reply: {status, denied, wait ms, spent, budgeted, then per bucket
// remaining, reset ms}; status 1 admitted, 0 refused by bucket denied,
// 2 over budget, 3 counter missing (call again with a seed), 4 too large.
const reserveSrc = luaCommon + `
local n = tonumber(ARGV[2])
local budget, cost, seed = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {1, 0, 0, -1, 0}
local levels, lasts = {}, {}
local worst, denied, toolarge = -1, 0, false
for i = 1, n do
  local a = 4 + 3 * i
  local w, cap, amt = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level, last = fetch(KEYS[i], w, cap)
  levels[i], lasts[i] = level, last
  out[4 + 2 * i] = floordiv(level, w)
  out[5 + 2 * i] = ceildiv(cap * w - level, cap)
  if amt > cap then
    if not toolarge then toolarge, denied = true, i end
  elseif not toolarge then
    local need = amt * w - level
    if need > 0 then
      local ms = ceildiv(need, cap)
      if ms > worst then worst, denied = ms, i end
    end
  end
end
if budget > 0 then
  local bkey = KEYS[n + 1]
  local v = redis.call('GET', bkey)
  local spent
  if v then
    spent = tonumber(v)
  elseif seed < 0 then
    out[1] = 3
    return out
  else
    spent = seed
    redis.call('SET', bkey, int(seed), 'EX', ARGV[6])
  end
  out[4] = spent
  if spent >= budget or spent + cost > budget then
    out[1] = 2
    return out
  end
end
if toolarge then
  out[1], out[2] = 4, denied
  return out
end
if denied > 0 then
  out[1], out[2], out[3] = 0, denied, worst
  return out
end
for i = 1, n do
  local a = 4 + 3 * i
  local w, cap, amt = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local level = levels[i] - amt * w
  store(KEYS[i], w, cap, level, lasts[i])
  out[4 + 2 * i] = floordiv(level, w)
  out[5 + 2 * i] = ceildiv(cap * w - level, cap)
end
if budget > 0 then
  out[4] = redis.call('INCRBY', KEYS[n + 1], int(cost))
  out[5] = 1
end
return out
`

// settleSrc settles an admitted request.
//
//	KEYS[1..n]  token bucket hashes; KEYS[n+1] the spend counter (ARGV[4] ~= 0)
//	ARGV[1]     now in unix ms, or -1 for the server's clock
//	ARGV[2]     n
//	ARGV[3]     tokens used − tokens reserved
//	ARGV[4]     cost − estimated cost (µUSD); applied only if the counter exists
//	ARGV[3+2i], ARGV[4+2i]  window ms, capacity of bucket i
const settleSrc = luaCommon + `
local n = tonumber(ARGV[2])
local delta, dcost = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, n do
  local w, cap = tonumber(ARGV[3 + 2 * i]), tonumber(ARGV[4 + 2 * i])
  local full = cap * w
  local level, last = fetch(KEYS[i], w, cap)
  local d = delta
  if d > 2 * cap then d = 2 * cap elseif d < -2 * cap then d = -2 * cap end
  level = level - d * w
  if level > full then level = full elseif level < -full then level = -full end
  store(KEYS[i], w, cap, level, last)
end
if dcost ~= 0 and redis.call('EXISTS', KEYS[n + 1]) == 1 then
  redis.call('INCRBY', KEYS[n + 1], int(dcost))
end
return 1
`
