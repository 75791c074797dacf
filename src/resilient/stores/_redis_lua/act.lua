-- An operator's action on a guard, recorded for every replica to apply: the latest
-- action per guard and the namespace's sequence, both kept until deleted (an action
-- that expired would be lost to the replicas that start later).
--
-- KEYS: 1 the sequence (hash: v, sequence), 2 acted (zset: guard -> sequence),
--       3 actions (hash: guard -> the action, as JSON).
-- ARGV: 1 guard, 2 action, 3 reason, 4 replica.

local SEQUENCE, ACTED, ACTIONS = KEYS[1], KEYS[2], KEYS[3]
local guard, action, reason, replica = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

expect_type(SEQUENCE, 'hash')
expect_type(ACTED, 'zset')
expect_type(ACTIONS, 'hash')

local sequence = 1
local stored = read_record(SEQUENCE)
if stored ~= nil then
  sequence = integer(SEQUENCE, 'sequence', stored['sequence'], 0) + 1
end
redis.call('HSET', SEQUENCE, 'v', '1', 'sequence', whole(sequence))
redis.call('ZADD', ACTED, whole(sequence), guard)
redis.call('HSET', ACTIONS, guard, cjson.encode({
  v = 1, sequence = sequence, action = action, reason = reason, by = replica,
}))
return sequence
