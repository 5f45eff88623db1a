-- LedgerSupport.reserve_if, the store side. KEYS: L, E, A, X of each ledger, the first one's first.
-- ARGV: the first ledger's spent and reserved amounts as the caller's admit saw them ('' and '':
-- none seen yet), what to do if they are still those ('reserve' or 'check'), amount, now ('' for
-- the server's TIME), lease seconds, then each ledger's window.
-- Returns {0, spent, reserved} when the first ledger's amounts are not those (nothing changed: the
-- caller asks admit again about these), else {1, spent, reserved, lease id of each ledger...}
-- (no ids for 'check').
local now = clock(ARGV[5])
reap(1, now)
local spent, period, reserved = amounts(KEYS[1], tonumber(ARGV[7]))
if ARGV[1] == '' or tonumber(ARGV[1]) ~= spent or tonumber(ARGV[2]) ~= reserved then
  return {0, spent, reserved}
end
local result = {1, spent, reserved}
if ARGV[3] == 'check' then
  return result
end
local amount, expires = tonumber(ARGV[4]), now + tonumber(ARGV[6])
for k = 1, #KEYS, 4 do
  local n = (k + 3) / 4
  local window = tonumber(ARGV[6 + n])
  if k > 1 then
    reap(k, now)
    local _, p = amounts(KEYS[k], window)
    period = p
  end
  result[#result + 1] = lease(k, amount, window, period, expires)
end
return result
