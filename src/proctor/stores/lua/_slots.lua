-- Prepended to the slot scripts of RedisStore, after _common.lua. A resource name's slots and the
-- callers waiting for them, all under one hash tag (ARGV[1], base, ends in '{tag}:slot:'):
--   S (hash)  capacity, alpha (of L(i)), last (the last fencing token), seq (the last caller queued)
--   H (zset)  the live leases: token scored by expiry ('+inf': none)
--   N (hash)  token -> 'lk holder': who holds it (lk '-' for a lease taken without waiting)
--   G (hash)  lk -> token: the lease granted to a waiting caller, while it lives, so that a caller
--             that gives up as its slot comes passes the slot on
--   E (hash)  lk -> 'entry units agent': the waiting callers; lk is 'member|id' (member: one
--             process's id, id: its caller's), entry 'seq|lk' (seq zero-padded: ties by arrival)
--   Q (hash)  agent -> the summed weight of its waiting callers, in millionths
--   D (zset)  member -> deadline: the processes with callers waiting, renewed by their polls
--   base..'A:'..agent (zset)  the agent's waiting callers: entry scored by arrival
--   base..'M:'..member (set)  the member's waiting callers (lk)
--   base..'K:'..member (list) 'id token': slots granted to the member's callers, to wake them
-- Every script first gives back the leases that expired and forgets the callers of processes whose
-- deadline passed, then grants every free slot to the caller with the highest L(i): no slot stays
-- free while anyone waits. ARGV: base, now ('' for TIME), lease seconds ('' for none), the calling
-- member ('' for none); each script's own after those.

local S, H, N, G, E, Q, D = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local BASE = ARGV[1]
local NOW = clock(ARGV[2])
local LEASE = tonumber(ARGV[3]) -- nil: no expiry
local ME = ARGV[4]

-- A score for H: the expiry of a lease taken now.
local function expiry()
  if LEASE == nil then
    return '+inf'
  end
  return fmt(NOW + LEASE)
end

-- A new lease for holder (lk '-' when it did not wait): its fencing token, larger than every earlier
-- one and than the server's time in microseconds, so that tokens keep increasing after a failover
-- loses the last ones.
local function take(lk, holder)
  local last = tonumber(redis.call('HGET', S, 'last')) or 0
  local token = math.max(last + 1, math.floor(NOW * 1000000))
  redis.call('HSET', S, 'last', int(token))
  redis.call('ZADD', H, expiry(), int(token))
  redis.call('HSET', N, int(token), lk .. ' ' .. holder)
  if lk ~= '-' then
    redis.call('HSET', G, lk, int(token))
  end
  return token
end

-- Ends lease token (still in H or just taken out): forgets its holder and its grant.
local function forget(token)
  local holder = redis.call('HGET', N, token)
  if holder then
    redis.call('HDEL', N, token)
    local lk = string.match(holder, '^(%S+) ')
    if lk ~= '-' and redis.call('HGET', G, lk) == token then
      redis.call('HDEL', G, lk)
    end
  end
end

-- Takes the waiting caller lk out of the queue: its agent, or false when it is not queued.
local function unqueue(lk)
  local info = redis.call('HGET', E, lk)
  if not info then
    return false
  end
  local entry, units, agent = string.match(info, '^(%S+) (%S+) (.*)$')
  local A = BASE .. 'A:' .. agent
  redis.call('HDEL', E, lk)
  redis.call('ZREM', A, entry)
  redis.call('SREM', BASE .. 'M:' .. string.match(lk, '^(.*)|'), lk)
  if redis.call('ZCARD', A) == 0 then
    redis.call('HDEL', Q, agent)
  else
    redis.call('HINCRBY', Q, agent, -tonumber(units))
  end
  return agent
end

-- Queues caller id of member for agent, weighing units (millionths), arriving now; once.
local function enqueue(member, id, agent, units)
  local lk = member .. '|' .. id
  if redis.call('HEXISTS', E, lk) == 1 then
    return
  end
  local entry = string.format('%016d', redis.call('HINCRBY', S, 'seq', 1)) .. '|' .. lk
  redis.call('HSET', E, lk, entry .. ' ' .. units .. ' ' .. agent)
  redis.call('ZADD', BASE .. 'A:' .. agent, fmt(NOW), entry)
  redis.call('SADD', BASE .. 'M:' .. member, lk)
  redis.call('HINCRBY', Q, agent, units)
end

-- Gives back the leases that expired by now.
local function reap_leases()
  local gone = redis.call('ZRANGEBYSCORE', H, '-inf', fmt(NOW))
  if #gone > 0 then
    for i = 1, #gone do
      forget(gone[i])
    end
    redis.call('ZREMRANGEBYSCORE', H, '-inf', fmt(NOW))
  end
end

-- Forgets the waiting callers of processes that stopped polling (died) before their deadline.
local function reap_members()
  local dead = redis.call('ZRANGEBYSCORE', D, '-inf', fmt(NOW))
  if #dead > 0 then
    for i = 1, #dead do
      local M = BASE .. 'M:' .. dead[i]
      local lks = redis.call('SMEMBERS', M)
      for j = 1, #lks do
        unqueue(lks[j])
      end
      redis.call('DEL', M, BASE .. 'K:' .. dead[i])
    end
    redis.call('ZREMRANGEBYSCORE', D, '-inf', fmt(NOW))
  end
end

-- The agent with the highest L(i) among those waiting, and its oldest caller's entry; nil if none.
-- L(i) = alpha * Qi / max Qj + (1 - alpha) * Dmax_i / max Dmax_j; ties to the longest wait, then to
-- the earliest arrival (the lower seq), as FairQueue does in one process.
local function best()
  local q = redis.call('HGETALL', Q)
  if #q == 0 then
    return nil
  end
  local alpha = tonumber(redis.call('HGET', S, 'alpha')) or 0.25
  local agents, depths, waits, heads = {}, {}, {}, {}
  local max_depth, max_wait = 0, 0
  for i = 1, #q, 2 do
    local head = redis.call('ZRANGE', BASE .. 'A:' .. q[i], 0, 0, 'WITHSCORES')
    if #head == 0 then
      redis.call('HDEL', Q, q[i]) -- never left so by the scripts; a repair, not a path
    else
      local n = #agents + 1
      agents[n], depths[n], heads[n] = q[i], tonumber(q[i + 1]), head[1]
      waits[n] = NOW - tonumber(head[2])
      max_depth = math.max(max_depth, depths[n])
      max_wait = math.max(max_wait, waits[n])
    end
  end
  if #agents == 0 then
    return nil
  end
  local found, best_score, best_wait, best_head = nil, -1, 0, ''
  for n = 1, #agents do
    local score = 0
    if max_depth > 0 then
      score = alpha * depths[n] / max_depth
    end
    if max_wait > 0 then
      score = score + (1 - alpha) * waits[n] / max_wait
    end
    if found == nil or score > best_score or (score == best_score and (waits[n] > best_wait
        or (waits[n] == best_wait and heads[n] < best_head))) then
      found, best_score, best_wait, best_head = n, score, waits[n], heads[n]
    end
  end
  return agents[found], heads[found]
end

-- Grants every free slot to the best waiting caller, one by one. A grant to a caller of ME is added
-- to out (id, token), for the caller of the script to deliver; others are pushed on their member's
-- wake list.
local function grant_free(out)
  local capacity = tonumber(redis.call('HGET', S, 'capacity')) or 0
  local held = redis.call('ZCARD', H)
  while held < capacity do
    local agent, entry = best()
    if agent == nil then
      return
    end
    local lk = string.match(entry, '^[^|]*|(.*)$')
    if unqueue(lk) then
      local token = take(lk, agent)
      local member, id = string.match(lk, '^(.*)|(.*)$')
      if member == ME then
        out[#out + 1] = tonumber(id)
        out[#out + 1] = token
      else
        redis.call('RPUSH', BASE .. 'K:' .. member, id .. ' ' .. int(token))
      end
      held = held + 1
    else -- an entry without its caller (never left so by the scripts): dropped, not granted
      redis.call('ZREM', BASE .. 'A:' .. agent, entry)
      if redis.call('ZCARD', BASE .. 'A:' .. agent) == 0 then
        redis.call('HDEL', Q, agent)
      end
    end
  end
end

-- Keeps capacity as the name's (a name in use keeps the capacity it has).
local function use_capacity(capacity)
  local stored = tonumber(redis.call('HGET', S, 'capacity'))
  if stored ~= capacity then
    if stored ~= nil and (redis.call('ZCARD', H) > 0 or redis.call('HLEN', E) > 0) then
      error({err = 'PROCTOR_CAPACITY ' .. int(stored)})
    end
    redis.call('HSET', S, 'capacity', int(capacity))
  end
end

-- Gives back lease token if it lives: true if it did.
local function give_back(token)
  if redis.call('ZSCORE', H, token) then
    forget(token)
    redis.call('ZREM', H, token)
    return true
  end
  return false
end

-- Seconds until the earliest finite lease expires, as text; '' when none does.
local function next_expiry()
  local first = redis.call('ZRANGE', H, 0, 0, 'WITHSCORES')
  if #first == 0 or first[2] == 'inf' then
    return ''
  end
  return fmt(tonumber(first[2]) - NOW)
end

reap_leases()
reap_members()
