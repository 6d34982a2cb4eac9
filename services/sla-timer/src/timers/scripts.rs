//! The Lua scripts, one call (one round trip, one slot) per operation:
//! arm, cancel, claim, acknowledge, and the next due time of a shard.

pub(crate) const ARM: &str = r"
-- KEYS: due, claimed; ARGV, per ticket: record key, id(11B), record, spec,
-- then (due, member) pairs. The record starts with the deadline version (16
-- bytes). spec is the number of pairs, followed by the bits of the timers that
-- already fired (w=1, 1=2, 2=4) when arming from a rebuild. A ticket whose
-- record already holds this version is left alone: its timers were armed
-- then, and any that are gone have fired. Returns how many timers were armed.
local call, sub = redis.call, string.sub
local due, claimed = KEYS[1], KEYS[2]
local n, i, adds = 0, 1, {}
while i <= #ARGV do
  local key, t, rec, spec = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cnt = tonumber(sub(spec, 1, 1))
  local arm = call('HSETNX', key, t, rec) == 1
  if not arm and sub(call('HGET', key, t), 1, 16) ~= sub(rec, 1, 16) then
    call('ZREM', due, t .. 'w', t .. '1', t .. '2')
    call('ZREM', claimed, t .. 'w', t .. '1', t .. '2')
    call('HSET', key, t, rec)
    arm = true
  end
  if arm then
    if #spec == 1 then
      for j = i + 4, i + 3 + 2 * cnt do adds[#adds + 1] = ARGV[j] end
    else
      local f = tonumber(sub(spec, 2))
      for j = 0, cnt - 1 do
        local m = ARGV[i + 5 + 2 * j]
        local k = sub(m, 12, 12)
        local bit = (k == 'w' and 1) or (k == '1' and 2) or 4
        if math.floor(f / bit) % 2 == 0 then
          adds[#adds + 1] = ARGV[i + 4 + 2 * j]
          adds[#adds + 1] = m
        end
      end
    end
    if #adds >= 4000 then
      n = n + call('ZADD', due, unpack(adds))
      adds = {}
    end
  end
  i = i + 4 + 2 * cnt
end
if #adds > 0 then n = n + call('ZADD', due, unpack(adds)) end
return n";

pub(crate) const CANCEL: &str = r"
-- KEYS: due, claimed, record bucket; ARGV: ticket(16B), forget(0/1)
-- Removes the ticket's timers. The record keeps the unit (a reopened ticket
-- goes back to it) unless forget=1; its version is voided so nothing fires.
local n = 0
for _, k in ipairs({'w', '1', '2'}) do
  n = n + redis.call('ZREM', KEYS[1], ARGV[1] .. k) + redis.call('ZREM', KEYS[2], ARGV[1] .. k)
end
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[3], ARGV[1])
else
  local rec = redis.call('HGET', KEYS[3], ARGV[1])
  if rec then redis.call('HSET', KEYS[3], ARGV[1], string.rep('\0', 16) .. string.sub(rec, 17)) end
end
return n";

pub(crate) const CLAIM: &str = r"
-- KEYS: due, claimed; ARGV: now, claim ttl, max, record key prefix, buckets
-- Returns {member, due, record, ...}: claims that expired (an instance died
-- before acknowledging) and timers due by now.
local now = tonumber(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local buckets = tonumber(ARGV[5])
local function record(m)
  local b = (string.byte(m, 10) * 256 + string.byte(m, 11)) % buckets
  return redis.call('HGET', ARGV[4] .. b, string.sub(m, 1, 11))
end
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)
for _, m in ipairs(expired) do
  redis.call('ZADD', KEYS[2], until_, m)
  local rec = record(m)
  if rec then
    table.insert(out, m); table.insert(out, tostring(now)); table.insert(out, rec)
  else
    redis.call('ZREM', KEYS[2], m)
  end
end
local left = max - #expired
if left > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, left)
  if #due > 0 then
    local members, adds = {}, {}
    for i = 1, #due, 2 do
      members[#members + 1] = due[i]
      adds[#adds + 1] = until_
      adds[#adds + 1] = due[i]
    end
    redis.call('ZREM', KEYS[1], unpack(members))
    redis.call('ZADD', KEYS[2], unpack(adds))
    for i = 1, #due, 2 do
      local rec = record(due[i])
      if rec then
        table.insert(out, due[i]); table.insert(out, due[i + 1]); table.insert(out, rec)
      else
        redis.call('ZREM', KEYS[2], due[i])
      end
    end
  end
end
return out";

pub(crate) const ACK: &str = r"
-- KEYS: claimed; ARGV: members. The timers' events are durable: release the
-- claims. (A fired timer is never armed again: its version's record stays.)
return redis.call('ZREM', KEYS[1], unpack(ARGV))";

pub(crate) const NEXT: &str = r"
-- KEYS: due, claimed, alive; returns {earliest ms or -1, alive 0/1}
-- (alive: the marker was set by this run of the server; __ALIVE__ is
-- whistle_runtime::marker's check)
local d = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local c = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local best = -1
if d[2] then best = tonumber(d[2]) end
if c[2] and (best < 0 or tonumber(c[2]) < best) then best = tonumber(c[2]) end
if __ALIVE__ then return {best, 1} end
return {best, 0}";
