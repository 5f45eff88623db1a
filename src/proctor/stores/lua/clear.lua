-- LedgerSupport.clear. KEYS: the ledger's L. Outstanding reservations stay.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'spent', 0)
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
end
return 0
