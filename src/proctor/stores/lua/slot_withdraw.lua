-- A waiting caller gives up. KEYS and the first ARGV as in _slots.lua; then the caller's id.
-- It leaves the queue, or, when its slot was granted meanwhile, passes that slot on.
-- Returns {1 left the queue, 2 passed its slot on, 0 neither, then id, token of each grant to ME}.
local out = {0}
local lk = ME .. '|' .. ARGV[5]
if unqueue(lk) then
  out[1] = 1
else
  local token = redis.call('HGET', G, lk)
  if token and give_back(token) then
    out[1] = 2
  end
end
grant_free(out)
return out
