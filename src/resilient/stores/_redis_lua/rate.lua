-- One turn of a shared rate limit (GCRA), as MemoryStore.acquire takes it (the rule is
-- resilient/_core/_gcra.py's): O(1) work, plus O(replicas) when the replicas that share
-- the limit are counted.
--
-- KEYS: 1 the limit (hash, layout version 1: v; start = when the bucket was last empty, in
--       microseconds; calls = the turns taken since; interval = their seconds apart; tat =
--       start + calls * interval, the theoretical arrival time, in microseconds),
--       2 its users (hash: replica -> its last use).
-- ARGV: 1 replica, 2 interval, 3 tolerance, 4 count ('1' or '0'), 5 the horizon after
--       which a replica stops counting among the users.
--
-- Turns are counted, not summed: a float sum of intervals drifts by an ulp a call, and the
-- last call of a burst would be refused. tat alone is what earlier versions kept, and one
-- of them, during a rolling upgrade, still reads and writes that field only; so tat is
-- written too, and start, calls and interval count only while they give the tat stored.
-- Otherwise the bucket begins at tat with no turns counted, which is what tat alone says.

local RATE, USERS = KEYS[1], KEYS[2]
local replica = ARGV[1]
local interval = tonumber(ARGV[2])  -- seconds, as turns are compared (see below)
local tolerance = tonumber(ARGV[3])
local count = ARGV[4] == '1'
local horizon = tonumber(ARGV[5]) * US
-- The turns of burst beyond one, exactly: tolerance is (burst - 1) * interval.
local slack = 0
if interval > 0 then
  slack = math.floor(tolerance / interval + 0.5)
end

-- The theoretical arrival time of a bucket, in microseconds.
local function arrival(start, calls, every)
  return start + calls * every * US
end

expect_type(RATE, 'hash')
expect_type(USERS, 'hash')
local now = clock()

-- Everything is read and checked before anything is written: Redis does not undo the
-- writes of a script that stops with an error.
local stored = read_record(RATE)
local start, calls = now, 0  -- a missing key: the bucket is empty
if stored ~= nil then
  local tat = number(RATE, 'tat', stored['tat'])
  local was = interval
  start = tat
  if stored['start'] ~= nil then
    local counted_start = number(RATE, 'start', stored['start'])
    local counted = integer(RATE, 'calls', stored['calls'], 0)
    local every = number(RATE, 'interval', stored['interval'])
    if exact(arrival(counted_start, counted, every)) == stored['tat'] then
      start, calls, was = counted_start, counted, every
    end
  end
  if was ~= interval then  -- a new interval applies from the next turn on
    start, calls = arrival(start, calls, was), 0
  end
end
local replicas = 0
local stale = {}
if count then
  replicas = 1  -- this replica, whose last use is now
  for name, last in pairs(read_hash(USERS)) do
    local used = number(USERS, 'the last use of replica ' .. shown(name), last)
    if name ~= replica then
      if used <= now - horizon then
        table.insert(stale, name)
      else
        replicas = replicas + 1
      end
    end
  end
end

redis.call('HSET', USERS, replica, exact(now))
for first = 1, #stale, 2000 do
  redis.call('HDEL', USERS, unpack(stale, first, math.min(first + 1999, #stale)))
end
-- Every user's entry is past the horizon once the key has been idle for that long.
refresh(USERS, horizon / 1000 + 1000)

-- The decision, in seconds: every turn taken in the past means the bucket is empty; else
-- the next turn is due unless it lies more than the slack ahead. For calls at one instant
-- elapsed is exactly 0, and the wait's sign is that of calls - slack.
local elapsed = (now - start) / US
if calls * interval < elapsed then
  start, calls, elapsed = now, 0, 0
end
local wait = (calls - slack) * interval - elapsed
if wait > 0 then
  return {0, exact(wait), replicas}
end
calls = calls + 1
local tat = arrival(start, calls, interval)
redis.call('HSET', RATE, 'v', '1', 'tat', exact(tat), 'start', exact(start),
  'calls', whole(calls), 'interval', exact(interval))
-- A theoretical arrival time in the past reads as a missing one: the key may go then.
refresh(RATE, (tat - now) / 1000)
return {1, '0', replicas}
