-- SlotLeaseSupport.renew_slot. KEYS and the first ARGV as in _slots.lua; then the tokens.
-- Returns 1 for each token whose lease lives (now renewed to expire lease seconds from now), else 0.
local out, renewed = {}, {}
for i = 5, #ARGV do
  if redis.call('ZSCORE', H, ARGV[i]) then
    redis.call('ZADD', H, expiry(), ARGV[i])
    renewed[#renewed + 1] = 1
  else
    renewed[#renewed + 1] = 0
  end
end
grant_free(out)
return renewed
