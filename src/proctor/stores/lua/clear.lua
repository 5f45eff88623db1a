-- LedgerSupport.clear. KEYS: the ledger's L. Outstanding reservations stay.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'spent', 0)
end
return 0
