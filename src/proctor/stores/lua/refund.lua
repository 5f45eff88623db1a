-- TokenBucketSupport.refund. KEYS: the bucket. ARGV: tokens, capacity.
local level = tonumber(redis.call('HGET', KEYS[1], 'level'))
if level ~= nil then
  redis.call('HSET', KEYS[1], 'level', fmt(math.min(tonumber(ARGV[2]), level + tonumber(ARGV[1]))))
end
return 0
