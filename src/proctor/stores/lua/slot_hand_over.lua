-- SlotLeaseSupport.hand_over_slot. KEYS and the first ARGV as in _slots.lua; then token, holder.
-- Returns the new lease's token, or false (changing nothing) when lease token does not live.
local out = {}
grant_free(out)
if not give_back(ARGV[5]) then
  return false
end
return take('-', ARGV[6])
