-- TokenBucketSupport.peek. KEYS: the bucket. ARGV: capacity, rate per second, now ('' for TIME).
-- Returns the level as text.
local level, _ = level_at(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), clock(ARGV[3]))
return fmt(level)
