-- Prepended to the token bucket scripts, after _common.lua. A bucket is one hash: level, updated.

-- Bucket B's level at now and the time it is counted from; a new bucket is full.
local function level_at(B, capacity, rate, now)
  local h = redis.call('HMGET', B, 'level', 'updated')
  local level, updated = tonumber(h[1]), tonumber(h[2])
  if level == nil then
    return capacity, now
  end
  if now > updated then
    return math.min(capacity, level + (now - updated) * rate), now
  end
  if now < updated - CLOCK_BACK then
    return level, now -- the clock went back (a failover to a server with another clock): count from now
  end
  return level, updated -- another caller read a later time and got here first
end
