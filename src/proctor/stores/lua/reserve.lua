-- LedgerSupport.reserve. KEYS: the ledger's L, E, A, X. ARGV: amount, limit ('' for none), window,
-- now ('' for the server's TIME), lease seconds. Returns {lease id or false, spent, reserved}.
local amount, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = clock(ARGV[4])
reap(1, now)
local spent, period, reserved = amounts(KEYS[1], window)
if limit ~= nil and spent + reserved + amount > limit then
  return {false, spent, reserved}
end
return {lease(1, amount, window, period, now + tonumber(ARGV[5])), spent, reserved}
