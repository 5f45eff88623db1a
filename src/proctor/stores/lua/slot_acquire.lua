-- SlotLeaseSupport.acquire_slot. KEYS and the first ARGV as in _slots.lua; then capacity, holder.
-- Returns the new lease's token, or false when every slot is held (or waited for).
local out = {}
use_capacity(tonumber(ARGV[5]))
grant_free(out)
if redis.call('ZCARD', H) < tonumber(ARGV[5]) then
  return take('-', ARGV[6])
end
return false
