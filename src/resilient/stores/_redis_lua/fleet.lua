-- The snapshots of every replica whose publication has not expired.
--
-- KEYS: 1 publications (zset: replica -> expiry), 2 snapshots (hash: replica -> JSON).

local PUBLISHED, SNAPSHOTS = KEYS[1], KEYS[2]
expect_type(PUBLISHED, 'zset')
expect_type(SNAPSHOTS, 'hash')
local now = clock()

local answer = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', PUBLISHED, '(' .. exact(now), '+inf')) do
  local document = redis.call('HGET', SNAPSHOTS, name)
  if not document then
    bad(SNAPSHOTS, 'has no snapshot of replica ' .. shown(name) .. ', which ' .. PUBLISHED
      .. ' lists')
  end
  table.insert(answer, name)
  table.insert(answer, document)
end
if redis.call('HLEN', SNAPSHOTS) ~= redis.call('ZCARD', PUBLISHED) then
  bad(SNAPSHOTS, 'holds snapshots of replicas that ' .. PUBLISHED .. ' does not list')
end
-- Checked before anything is written: Redis does not undo a failed script's writes.
forget_expired(PUBLISHED, SNAPSHOTS, now)
return answer
