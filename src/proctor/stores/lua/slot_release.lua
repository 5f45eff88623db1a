-- SlotLeaseSupport.release_slot, and a scheduler's release. KEYS and the first ARGV as in _slots.lua;
-- then the token. Returns {1 if the lease lived else 0, then id, token of each grant to ME's callers}.
local out = {0}
if give_back(ARGV[5]) then
  out[1] = 1
end
grant_free(out)
return out
