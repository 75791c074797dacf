-- One turn of a shared rate limit (GCRA), as MemoryStore.acquire takes it: O(1) work,
-- plus O(replicas) when the replicas that share the limit are counted.
--
-- KEYS: 1 the limit (hash: v, tat = the theoretical arrival time, in microseconds),
--       2 its users (hash: replica -> its last use).
-- ARGV: 1 replica, 2 interval, 3 tolerance, 4 count ('1' or '0'), 5 the horizon after
--       which a replica stops counting among the users.

local RATE, USERS = KEYS[1], KEYS[2]
local replica = ARGV[1]
local interval = tonumber(ARGV[2]) * US
local tolerance = tonumber(ARGV[3]) * US
local count = ARGV[4] == '1'
local horizon = tonumber(ARGV[5]) * US

expect_type(RATE, 'hash')
expect_type(USERS, 'hash')
local now = clock()

-- Everything is read and checked before anything is written: Redis does not undo the
-- writes of a script that stops with an error.
local stored = read_record(RATE)
local tat = now
if stored ~= nil then
  tat = math.max(number(RATE, 'tat', stored['tat']), now)
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

local wait = tat - tolerance - now
if wait > 0 then
  return {0, exact(wait / US), replicas}
end
tat = tat + interval
redis.call('HSET', RATE, 'v', '1', 'tat', exact(tat))
-- A theoretical arrival time in the past reads as a missing one: the key may go then.
refresh(RATE, (tat - now) / 1000)
return {1, '0', replicas}
