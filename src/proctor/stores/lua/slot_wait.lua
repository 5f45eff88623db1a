-- A scheduler's request: a slot now if one is free and no one waits, else a place in the queue.
-- KEYS and the first ARGV as in _slots.lua; then capacity, alpha, seconds the member's callers stay
-- queued without a poll, the caller's id, its agent, its weight in millionths.
-- Returns {token or 0 (queued), then id, token of each grant to ME's other callers}.
local out = {0}
use_capacity(tonumber(ARGV[5]))
grant_free(out)
if redis.call('ZCARD', H) < tonumber(ARGV[5]) then
  out[1] = take(ME .. '|' .. ARGV[8], ARGV[9])
else
  redis.call('HSET', S, 'alpha', ARGV[6]) -- the last one queued sets L(i)'s alpha
  redis.call('ZADD', D, fmt(NOW + tonumber(ARGV[7])), ME)
  enqueue(ME, ARGV[8], ARGV[9], ARGV[10])
end
return out
