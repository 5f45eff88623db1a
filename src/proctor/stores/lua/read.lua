-- The read half of LedgerSupport.reserve_if. KEYS: the first ledger's L, E, A, X. ARGV: window,
-- now ('' for the server's TIME). Returns {spent, reserved, version}; reserve_many.lua reserves only
-- while the version is still this one.
local now = clock(ARGV[2])
reap(1, now)
local spent, _, reserved = amounts(KEYS[1], tonumber(ARGV[1]))
return {spent, reserved, tonumber(redis.call('HGET', KEYS[1], 'ver')) or 0}
