-- LedgerSupport.settle. KEYS: the ledger's L, E, A, X. ARGV: lease id, actual, window.
-- Returns 1, or 0 (changing nothing) when the lease was settled or released already.
if not unlease(ARGV[1]) then
  return 0
end
add_spent(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
