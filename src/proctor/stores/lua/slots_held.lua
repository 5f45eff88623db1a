-- SlotLeaseSupport.slots_held. KEYS and the first ARGV as in _slots.lua. Returns the live leases.
local out = {}
grant_free(out)
return redis.call('ZCARD', H)
