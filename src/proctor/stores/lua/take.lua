-- TokenBucketSupport.take. KEYS: the bucket. ARGV: tokens, capacity, rate per second,
-- now ('' for the server's TIME). Returns {1 if taken else 0, the level after as text}.
local tokens = tonumber(ARGV[1])
local level, updated = level_at(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), clock(ARGV[4]))
local ok = level + 1e-9 >= tokens -- a refill of exactly one token may land just under 1.0
if ok then
  level = math.max(level - tokens, 0)
end
redis.call('HSET', KEYS[1], 'level', fmt(level), 'updated', fmt(updated))
return {ok and 1 or 0, fmt(level)}
