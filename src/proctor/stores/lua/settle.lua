-- LedgerSupport.settle. KEYS: the ledger's L, E, A, X. ARGV: lease id, actual, window.
-- Returns {spent, reserved} after it (the caller's hint for reserve_if), or 0 (changing nothing)
-- when the lease was settled or released already.
if not unlease(ARGV[1]) then
  return 0
end
local window = tonumber(ARGV[3])
add_spent(KEYS[1], tonumber(ARGV[2]), window)
local spent, _, reserved = amounts(KEYS[1], window)
return {spent, reserved}
