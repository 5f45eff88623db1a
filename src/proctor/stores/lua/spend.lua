-- LedgerSupport.spend. KEYS: the ledger's L. ARGV: amount, window.
add_spent(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return 0
