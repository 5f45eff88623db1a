-- Prepended to every script of RedisStore (src/proctor/stores/redis.py).
-- A ledger is four keys in one hash-tag slot: L, a hash (spent, period, reserved, last lease id);
-- E, the live leases (id scored by expiry); A, each lease's amount; X, the leases given
-- back at expiry (id scored by expiry), kept EXPIRED_KEPT seconds so that a late settle counts once.
-- Amounts are integers, changed with HINCRBY; times are seconds as doubles.

local EXPIRED_KEPT = __EXPIRED_KEPT__
local CLOCK_BACK = 1.0 -- a bucket updated this far in the future was written before the clock went back

-- The current time: the caller's (ARGV given) or else the Redis server's TIME.
local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- A double as text that reads back as the same double.
local function fmt(x)
  return string.format('%.17g', x)
end

-- An integer as text in full (Redis would print a large number in exponent form).
local function int(x)
  return string.format('%d', x)
end

-- Gives back the leases of the ledger at KEYS[k..k+3] expired by now; forgets those expired long ago.
local function reap(k, now)
  local L, E, A, X = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local gone = redis.call('ZRANGEBYSCORE', E, '-inf', fmt(now), 'WITHSCORES')
  if #gone == 0 then
    return
  end
  local back = 0
  for i = 1, #gone, 2 do
    back = back + tonumber(redis.call('HGET', A, gone[i]))
    redis.call('ZADD', X, gone[i + 1], gone[i])
  end
  redis.call('ZREMRANGEBYSCORE', E, '-inf', fmt(now))
  redis.call('HINCRBY', L, 'reserved', int(-back))
  local horizon = '(' .. fmt(now - EXPIRED_KEPT)
  local old = redis.call('ZRANGEBYSCORE', X, '-inf', horizon)
  for i = 1, #old do
    redis.call('HDEL', A, old[i])
  end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', X, '-inf', horizon)
  end
end

-- The ledger L's spent amount in period window, its stored period, and its reserved amount.
-- A ledger last used in an earlier period has spent nothing in this one.
local function amounts(L, window)
  local h = redis.call('HMGET', L, 'spent', 'period', 'reserved')
  local spent, period = tonumber(h[1]) or 0, tonumber(h[2])
  if period == nil or period < window then
    spent = 0
  end
  return spent, period, tonumber(h[3]) or 0
end

-- Reserves amount on the ledger at KEYS[k..k+3] (expired leases reaped already): the lease id.
local function lease(k, amount, window, period, expires)
  local L, E, A = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  if period == nil or period < window then
    redis.call('HSET', L, 'spent', 0, 'period', int(window))
  end
  local id = redis.call('HINCRBY', L, 'last', 1)
  redis.call('HSET', A, id, int(amount))
  redis.call('ZADD', E, fmt(expires), id)
  redis.call('HINCRBY', L, 'reserved', int(amount))
  return id
end

-- Adds actual to L's spent amount in period window (a later period starts from nothing).
local function add_spent(L, actual, window)
  local period = tonumber(redis.call('HGET', L, 'period'))
  if period == nil or period < window then
    redis.call('HSET', L, 'spent', int(actual), 'period', int(window))
  else
    redis.call('HINCRBY', L, 'spent', int(actual))
  end
end

-- Removes lease id from the ledger at KEYS[1..4]: its amount, or false when it was settled or released.
local function unlease(id)
  local L, E, A, X = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local amount = redis.call('HGET', A, id)
  if not amount then
    return false
  end
  redis.call('HDEL', A, id)
  if redis.call('ZREM', E, id) == 1 then
    redis.call('HINCRBY', L, 'reserved', int(-tonumber(amount)))
    else
    redis.call('ZREM', X, id)
  end
  return amount
end
