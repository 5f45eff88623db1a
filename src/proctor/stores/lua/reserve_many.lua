-- The write half of LedgerSupport.reserve_if. KEYS: L, E, A, X of each ledger, the first one's first.
-- ARGV: the first ledger's version as read.lua returned it, amount, now ('' for the server's TIME),
-- lease seconds, then each ledger's window. Returns the lease ids, or false when the first ledger
-- changed since it was read (the caller reads again).
local now = clock(ARGV[3])
reap(1, now)
if (tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0) ~= tonumber(ARGV[1]) then
  return false
end
local amount, expires = tonumber(ARGV[2]), now + tonumber(ARGV[4])
local ids = {}
for k = 1, #KEYS, 4 do
  local window = tonumber(ARGV[4 + (k + 3) / 4])
  if k > 1 then
    reap(k, now)
  end
  local _, period, _ = amounts(KEYS[k], window)
  ids[#ids + 1] = lease(k, amount, window, period, expires)
end
return ids
