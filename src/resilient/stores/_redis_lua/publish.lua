-- A replica publishes its registry snapshot for ttl seconds and reads the operator
-- actions newer than the last one it applied.
--
-- KEYS: 1 publications (zset: replica -> expiry, in microseconds), 2 snapshots (hash: replica -> JSON),
--       3 acted (zset: guard -> sequence of the latest action on it),
--       4 actions (hash: guard -> that action, as JSON).
-- ARGV: 1 replica, 2 document, 3 ttl, 4 since, 5 how long idle keys are kept.

local PUBLISHED, SNAPSHOTS, ACTED, ACTIONS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local replica = ARGV[1]
local document = ARGV[2]
local ttl = tonumber(ARGV[3])
local since = ARGV[4]
local keep = tonumber(ARGV[5])

expect_type(PUBLISHED, 'zset')
expect_type(SNAPSHOTS, 'hash')
expect_type(ACTED, 'zset')
expect_type(ACTIONS, 'hash')
local now = clock()

-- Read and checked before anything is written (Redis does not undo a failed script's
-- writes).
local actions = actions_after(ACTED, ACTIONS, since)
forget_expired(PUBLISHED, SNAPSHOTS, now)
redis.call('ZADD', PUBLISHED, exact(now + ttl * US), replica)
redis.call('HSET', SNAPSHOTS, replica, document)
local kept = math.max(keep, ttl) * 1000
refresh(PUBLISHED, kept)
refresh(SNAPSHOTS, kept)
return actions
