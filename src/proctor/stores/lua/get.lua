-- LedgerSupport.get. KEYS: the ledger's L, E, A, X. ARGV: window, now ('' for the server's TIME).
-- Returns {spent in that window, reserved by live leases}.
reap(1, clock(ARGV[2]))
local spent, _, reserved = amounts(KEYS[1], tonumber(ARGV[1]))
return {spent, reserved}
