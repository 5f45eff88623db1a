-- LedgerSupport.release. KEYS: the ledger's L, E, A, X. ARGV: lease id.
unlease(ARGV[1])
return 0
