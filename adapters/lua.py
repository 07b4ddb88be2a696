"""Every Lua script ums-find runs in Redis: the fenced write and the generation control (see their callers)."""

# ---- the projection (adapters/store.py)

# Is `new` newer than the stored `cur`? Both values lead with their version (adapters/values.py):
# compact, 14 bytes after a first byte below "-" (time 6, partition + 1 in 2 with 65535 a repair,
# offset 6; big-endian, exact in Lua's doubles), or text "time,partition,offset,". A stored
# value with neither (an older format) is always replaced.
NEWER = """
local function version(v)
  local b = string.byte(v, 1)
  if b and b < 45 then
    if #v < 15 then return nil end
    local t1, t2, t3, t4, t5, t6, p1, p2, o1, o2, o3, o4, o5, o6 = string.byte(v, 2, 15)
    local p = p1 * 256 + p2
    if p == 65535 then p = 2147483647 else p = p - 1 end
    return ((((t1 * 256 + t2) * 256 + t3) * 256 + t4) * 256 + t5) * 256 + t6, p,
      ((((o1 * 256 + o2) * 256 + o3) * 256 + o4) * 256 + o5) * 256 + o6
  end
  local s, p, o = string.match(v, '^(%-?%d+),(%-?%d+),(%-?%d+),')
  if not s then return nil end
  return tonumber(s), tonumber(p), tonumber(o)
end
local function newer(new, cur)
  local s, p, o = version(cur)
  if not s then return true end
  local ns, np, no = version(new)
  return ns > s or (ns == s and (np > p or (np == p and no > o)))
end
"""
# The fence, for many users in one call: KEYS[i] gets ARGV[i] only when ARGV[i]'s
# version is newer than the stored one; equal or older changes nothing. Each key is
# fenced on its own, so the result is the same as one call per user. On Redis Cluster
# every call holds keys of one hash slot only.
FENCED_SET = (
    NEWER
    + """
local applied = 0
for i = 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if not cur or newer(ARGV[i], cur) then
    redis.call('SET', KEYS[i], ARGV[i])
    applied = applied + 1
  end
end
return applied
"""
)
# Compare-and-set of one user's value: repairs replace exactly what they inspected.
REPLACE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"


# ---- generations: claim, lease, flip, positions (adapters/generations.py)

# KEYS: live, rebuild, seq, pos-prefix-unused; ARGV: token, lease_ms.
# Claims the next generation for a rebuild: {n, ''}; {0, holder's claim} while a claim
# exists; {-1, ''} when there is no pointer (Redis wiped since the caller created it).
START = """
local live = redis.call('GET', KEYS[1])
if not live then return {-1, ''} end
local held = redis.call('GET', KEYS[2])
if held then return {0, held} end
local gen = tonumber(string.match(live, '^(%d+)'))
local n = redis.call('INCR', KEYS[3])
if n <= gen then n = gen + 1; redis.call('SET', KEYS[3], n) end
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. n, 'PX', ARGV[2])
redis.call('DEL', KEYS[4] .. n)
return {n, ''}
"""
# KEYS: rebuild; ARGV: claim, lease_ms.
RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
# KEYS: rebuild; ARGV: claim.
ABANDON = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
# KEYS: rebuild, pace; ARGV: events per second. Paces the running rebuild (`ums-find pace`): the
# pace names the claimed generation, so a later rebuild never takes an earlier one's. Returns that
# generation, 0 when no rebuild runs.
PACE = """
local claim = redis.call('GET', KEYS[1])
if not claim then return 0 end
local generation = string.match(claim, ':(%d+)$')
redis.call('SET', KEYS[2], generation .. ':' .. ARGV[1])
return tonumber(generation)
"""
# Shared by FLIP and RETOPIC: a fill hash emptied of its partitions' marks (offsets), keeping
# "mysql", which counts the rows a MySQL snapshot wrote and says the generation was filled so.
_CLEAR_FILL = """
local function clear_fill(key)
  local mysql = redis.call('HGET', key, 'mysql')
  redis.call('DEL', key)
  if mysql then redis.call('HSET', key, 'mysql', mysql) end
end
"""
# KEYS: live, rebuild, pos-prefix; ARGV: claim, target, epoch, then field, mark pairs.
# Makes the claimed generation live (same epoch) and hands it the live generation's
# positions: consumers wrote every batch to both since the claim, so the new generation
# holds everything up to those positions. Returns the old live generation, -1 without the
# claim, or -2 when the rebuild's own marks (MARK_FILLED) are short of what it wrote: Redis
# lost some of its writes, and nothing flips. The rebuild's partition marks go (the consumers
# mark the live generation from its positions on); its "mysql" mark stays, to say that a MySQL
# snapshot filled the generation (consumer/gaps.py: no check from a partition's beginning).
# Positions (each with its leader epoch) are handed over only when both generations were read
# from the same topic (adapters/lineage.py); the new one inherits the old one's topic record
# when it has none.
FLIP = (
    _CLEAR_FILL
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
local live = redis.call('GET', KEYS[1])
if not live then return -1 end
local gen, epoch = string.match(live, '^(%d+):(.*)$')
if epoch ~= ARGV[3] then return -1 end
local fill = KEYS[3] .. 'fill:' .. ARGV[2]
for i = 4, #ARGV, 2 do
  if tonumber(redis.call('HGET', fill, ARGV[i]) or '-1') < tonumber(ARGV[i + 1]) then return -2 end
end
clear_fill(fill)
local old = KEYS[3] .. gen
local new = KEYS[3] .. ARGV[2]
local topic_old = redis.call('GET', KEYS[3] .. 'topic:' .. gen)
local topic_new = redis.call('GET', KEYS[3] .. 'topic:' .. ARGV[2])
if not (topic_old and topic_new and topic_old ~= topic_new) then
  local pos = redis.call('HGETALL', old)
  for i = 1, #pos, 2 do
    local field = pos[i]
    if string.sub(field, 1, 2) ~= 'e:' then
      local cur = tonumber(redis.call('HGET', new, field) or '-1')
      if tonumber(pos[i + 1]) > cur then
        redis.call('HSET', new, field, pos[i + 1])
        redis.call('HSET', new, 'e:' .. field, redis.call('HGET', old, 'e:' .. field) or '-1')
      end
    end
  end
  if topic_old and not topic_new then redis.call('SET', KEYS[3] .. 'topic:' .. ARGV[2], topic_old) end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. epoch)
redis.call('DEL', KEYS[2])
return tonumber(gen)
"""
)
# KEYS: pos:topic:<gen>, pos:<gen>, pos:fill:<gen>; ARGV: the topic id the caller found recorded
# ('' none), the event topic's id now (adapters/lineage.py). Unless someone changed the record
# since it was read (returns 0): records the id, and when another one was recorded, deletes
# the generation's positions and its partitions' fill marks, which are offsets of that other
# topic (returns 2; 1 when nothing was recorded). MySQL's mark counts rows, and stays.
RETOPIC = (
    _CLEAR_FILL
    + """
local found = redis.call('GET', KEYS[1]) or ''
if found ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if found == '' then return 1 end
redis.call('DEL', KEYS[2])
clear_fill(KEYS[3])
return 2
"""
)
# The body shared by SAVE_POSITIONS and MARK_FILLED: per field of `hash`, ARGV from `first`
# on holds groups of `step`: field, value, floor (and for positions the leader epoch). The
# floor is the value the caller last knew stored (-1: none); no one moves one back, so finding
# less means Redis lost acknowledged writes (restarted from an older snapshot, a replica
# promoted before it caught up): nothing is saved, and the fields found behind come back as
# {field, found, ...}. Else each value is saved where it is ahead (value -1: nothing to save
# there, only the floor checked), and with it its epoch as field "e:<field>": epoch * 2^32 + the
# value's low 32 bits (adapters/generations.py epoch_value; -1: unknown), so that one an older
# consumer left behind when it moved the value is not taken for the new value's. At an equal
# value, a newer epoch is saved: the message before it was read again in a newer epoch
# (consumer/truncation.py).
_FORWARD_ONLY = """
local found, behind = {}, {}
for i = first, #ARGV, step do
  local cur = tonumber(redis.call('HGET', hash, ARGV[i]) or '-1')
  found[i] = cur
  if cur < tonumber(ARGV[i + 2]) then
    behind[#behind + 1] = ARGV[i]
    behind[#behind + 1] = cur
  end
end
if #behind > 0 then return behind end
for i = first, #ARGV, step do
  local value = tonumber(ARGV[i + 1])
  if value > found[i] then
    redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
    if step == 4 then redis.call('HSET', hash, 'e:' .. ARGV[i], ARGV[i + 3]) end
  elseif step == 4 and value >= 0 and value == found[i] then
    local cur = tonumber(redis.call('HGET', hash, 'e:' .. ARGV[i]) or '-1') or -1
    local new = tonumber(ARGV[i + 3])
    if new >= 0 and (cur < 0 or cur % 4294967296 ~= value % 4294967296 or cur < new) then
      redis.call('HSET', hash, 'e:' .. ARGV[i], ARGV[i + 3])
    end
  end
end
return 1
"""
# KEYS: live, pos:<gen>, pos:fill:<gen>, pos:topic:<gen>; ARGV: "<gen>:<epoch>", the topic id the
# caller's positions were checked against ('' none), then partition, offset, floor, leader epoch
# for every partition the caller has positioned or saved (offset -1: only the floor checked).
# The leader epoch is the one of the message before the offset (KIP-320): a consumer resuming
# there asks the leader whether the log still holds that message (consumer/truncation.py).
# Positions move forward only, and only while the pointer is still the one the batch was
# written under and the generation's topic is the caller's (adapters/lineage.py): after a
# wipe, a flip or a topic replaced the caller repositions instead (returns 0). A position
# is saved only up to the partition's fill mark, which the batch sent after its data
# (adapters/marks.py): a mark short of it means Redis lost the batch after acknowledging it,
# and those partitions come back as behind, with their positions; floors: see _FORWARD_ONLY.
SAVE_POSITIONS = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  local topic = redis.call('GET', KEYS[4])
  if topic and topic ~= ARGV[2] then return 0 end
end
local short = {}
for i = 3, #ARGV, 4 do
  local offset = tonumber(ARGV[i + 1])
  if offset >= 0 and tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '-1') < offset then
    short[#short + 1] = ARGV[i]
    short[#short + 1] = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '-1')
  end
end
if #short > 0 then return short end
local hash, first, step = KEYS[2], 3, 4
"""
    + _FORWARD_ONLY
)
# KEYS: pos:fill:<gen>; ARGV: field, value, floor, ... How far a generation's data is written
# (adapters/marks.py): per partition the next offset, "mysql" the rows a backfill wrote. Sent
# after the data on the same connection; floors: see _FORWARD_ONLY.
MARK_FILLED = "local hash, first, step = KEYS[1], 1, 3\n" + _FORWARD_ONLY


# ---- the sweep (adapters/sweep.py)

# KEYS: live, rebuild, seq; ARGV: the highest generation number the sweep is about to judge.
# Returns {pointer, claim, seq} after retiring every number up to ARGV[1]: raising seq makes
# START hand out only higher numbers, so within this pointer's epoch a generation that is
# neither live nor claimed now never will be. No pointer: {'', '', 0} and nothing changes.
RETIRE = """
local live = redis.call('GET', KEYS[1])
if not live then return {'', '', 0} end
local claim = redis.call('GET', KEYS[2]) or ''
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local top = tonumber(ARGV[1])
if top > seq then
  redis.call('SET', KEYS[3], top)
  seq = top
end
return {live, claim, seq}
"""
# KEYS: live, rebuild, pos:<g1>, pos:<g2>, ...; ARGV: g1, g2, ...
# Deletes the positions of generations that are neither live nor claimed, checked in the
# same script (one slot): a flip or a new pointer can never come between. No pointer: none.
DROP_POSITIONS = """
local live = redis.call('GET', KEYS[1])
if not live then return 0 end
local gen = tonumber(string.match(live, '^(%d+)'))
local claim = redis.call('GET', KEYS[2])
local claimed = claim and tonumber(string.match(claim, ':(%d+)$'))
local dropped = 0
for i = 3, #KEYS do
  local g = tonumber(ARGV[i - 2])
  if g ~= gen and g ~= claimed then dropped = dropped + redis.call('DEL', KEYS[i]) end
end
return dropped
"""
