-- A scheduler's process, now and then: it is alive, renews the leases it holds, queues again those of
-- its callers that the queue lost (a failover, or a poll that came too late), and collects the slots
-- granted to its callers. KEYS and the first ARGV as in _slots.lua; then seconds its callers stay
-- queued without a poll ('' when none waits), the number of tokens, the tokens, then id, agent,
-- weight (millionths) of each waiting caller.
-- Returns {renewed (1 or 0 per token), grants (id, token, ...), seconds to the next expiry or ''}.
local out, renewed = {}, {}
local count = tonumber(ARGV[6])
for i = 7, 6 + count do
  if redis.call('ZSCORE', H, ARGV[i]) then
    redis.call('ZADD', H, expiry(), ARGV[i])
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
if ARGV[5] ~= '' then
  redis.call('ZADD', D, fmt(NOW + tonumber(ARGV[5])), ME)
end
for i = 7 + count, #ARGV, 3 do
  local lk = ME .. '|' .. ARGV[i]
  if not redis.call('HGET', E, lk) and not redis.call('HGET', G, lk) then
    enqueue(ME, ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
end
local K = BASE .. 'K:' .. ME
local woken = redis.call('LRANGE', K, 0, -1)
if #woken > 0 then
  redis.call('DEL', K)
  for i = 1, #woken do
    local id, token = string.match(woken[i], '^(%S+) (%S+)$')
    out[#out + 1] = tonumber(id)
    out[#out + 1] = tonumber(token)
  end
end
grant_free(out)
return {renewed, out, next_expiry()}
