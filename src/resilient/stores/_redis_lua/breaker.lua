-- One report to a shared circuit breaker, decided and written in one atomic step.
--
-- The decision is MemoryStore's _decide (resilient/stores/_memory.py), step for step and
-- with the same reason texts: 1. the operator's action; 2. the counts (late unless of the
-- current epoch while closed or disabled); 3. a finished trial (late unless its lease is
-- current); 4. the fleet window judged (closed only); 5. an open breaker whose time is up
-- moves to half-open when the report asks for a trial; 6. a trial lease, if one is free.
-- Close and reset read the stored breaker leniently, so that they repair what the other
-- reports refuse to read (see below).
--
-- KEYS: 1 the breaker (hash), 2 its trial leases (zset: token -> lease expiry),
--       3 its window buckets (hash: bucket index -> "calls:failures:slow"),
--       4 the replicas counted in the window (hash: replica -> its last counted call).
-- ARGV: the rules (1-11), how long idle keys are kept (12), then the report (13-23).
-- Times are microseconds of the server's clock; durations in rules and answers, seconds.

local STATE, TRIALS, BUCKETS, SEEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local window = tonumber(ARGV[1])
local bucket_count = tonumber(ARGV[2])
local minimum_calls = tonumber(ARGV[3])
local minimum_replicas = tonumber(ARGV[4])
local failure_rate_threshold = tonumber(ARGV[5])
local slow_call_rate_threshold = optional(ARGV[6])
if slow_call_rate_threshold ~= nil then
  slow_call_rate_threshold = tonumber(slow_call_rate_threshold)
end
local open_duration = tonumber(ARGV[7])
local open_duration_max = tonumber(ARGV[8])
local open_duration_multiplier = tonumber(ARGV[9])
local half_open_calls = tonumber(ARGV[10])
local trial_lease = tonumber(ARGV[11])
local keep = tonumber(ARGV[12])

local replica = ARGV[13]
local report_epoch = tonumber(ARGV[14])
local successes = tonumber(ARGV[15])
local failures = tonumber(ARGV[16])
local slow = tonumber(ARGV[17])
local last_failure = optional(ARGV[18])
local wants_trial = ARGV[19] == '1'
local trial_token = optional(ARGV[20])
if trial_token ~= nil then
  trial_token = tonumber(trial_token)
end
local trial_outcome = optional(ARGV[21])
local action = optional(ARGV[22])
local action_reason = optional(ARGV[23])

local now = clock()
local STATES = {closed = true, open = true, half_open = true, forced_open = true, disabled = true}

-- A whole number >= minimum read from text, or nil: the lenient twin of integer().
local function whole_or_nil(text, minimum)
  local value = tonumber(text or '')
  if value == nil or value ~= math.floor(value) or value < minimum or value >= 2 ^ 53 then
    return nil
  end
  return value
end

local b
local trials = {}  -- token -> lease expiry
local trial_count = 0
local buckets = {}  -- index -> {calls, failures, slow}
local seen = {}  -- replica -> its last counted call

if action == 'close' or action == 'reset' then
  -- Close and reset overwrite the breaker, so they read nothing strictly: an operator
  -- repairs a value the store cannot read with them. The leases, buckets and replicas
  -- are dropped unread (the action clears them anyway). Of the record, what reads well
  -- is kept, so that a sound breaker closes exactly as any other report would move it:
  -- its epoch and fencing counter keep growing, and calls admitted before stay late.
  -- What does not read well starts fresh: an unreadable state counts as not closed (so
  -- the action moves the breaker), an unreadable epoch restarts at 1 (as after the keys
  -- expire; replicas learn the new epoch from the answer).
  local kind = redis.call('TYPE', STATE)['ok']
  local stored = {}
  if kind == 'hash' then
    stored = read_hash(STATE)
  end
  local state = stored['state']
  if kind == 'none' then
    state = 'closed'  -- no record at all: a fresh breaker
  elseif not STATES[state or ''] then
    state = 'unreadable'
  end
  local open_until = tonumber(stored['open_until'] or '')
  if open_until == nil or open_until ~= open_until or math.abs(open_until) == math.huge then
    open_until = 0
  end
  b = {
    state = state,
    epoch = whole_or_nil(stored['epoch'], 1) or 1,
    reason = stored['reason'],
    by = stored['by'],
    open_until = open_until,
    open_for = open_duration,
    consecutive_opens = 0,
    fence = whole_or_nil(stored['fence'], 0) or 0,
    trials_succeeded = 0,
  }
else
  expect_type(STATE, 'hash')
  expect_type(TRIALS, 'zset')
  expect_type(BUCKETS, 'hash')
  expect_type(SEEN, 'hash')

  -- The breaker as stored, or a fresh one.
  local stored = read_record(STATE)
  if stored == nil then
    b = {
      state = 'closed', epoch = 1, reason = nil, by = nil, open_until = 0,
      open_for = open_duration, consecutive_opens = 0, fence = 0, trials_succeeded = 0,
    }
  else
    if not STATES[stored['state'] or ''] then
      bad(STATE, 'holds state ' .. shown(stored['state'] or '') .. ', not a breaker state')
    end
    b = {
      state = stored['state'],
      epoch = integer(STATE, 'epoch', stored['epoch'], 1),
      reason = stored['reason'],
      by = stored['by'],
      open_until = number(STATE, 'open_until', stored['open_until']),
      open_for = number(STATE, 'open_for', stored['open_for']),
      consecutive_opens = integer(STATE, 'consecutive_opens', stored['consecutive_opens'], 0),
      fence = integer(STATE, 'fence', stored['fence'], 0),
      trials_succeeded = integer(STATE, 'trials_succeeded', stored['trials_succeeded'], 0),
    }
  end

  local flat = redis.call('ZRANGE', TRIALS, 0, -1, 'WITHSCORES')
  for i = 1, #flat, 2 do
    trials[integer(TRIALS, 'trial token', flat[i], 1)] =
      number(TRIALS, 'the lease expiry of trial ' .. shown(flat[i]), flat[i + 1])
    trial_count = trial_count + 1
  end

  for index, counts in pairs(read_hash(BUCKETS)) do
    local calls, failed, slowed = string.match(counts, '^(%d+):(%d+):(%d+)$')
    if calls == nil then
      bad(BUCKETS, 'holds counts ' .. shown(counts) .. ', not "calls:failures:slow"')
    end
    buckets[integer(BUCKETS, 'bucket index', index, 0)] =
      {tonumber(calls), tonumber(failed), tonumber(slowed)}
  end

  for name, last in pairs(read_hash(SEEN)) do
    seen[name] = number(SEEN, 'the last call of replica ' .. shown(name), last)
  end
end

local before = b.state
local late = 0

local function move(state, reason)
  if state ~= 'half_open' then
    trials = {}
    trial_count = 0
  end
  b.trials_succeeded = 0
  b.state = state
  b.reason = reason
  b.by = replica
  b.epoch = b.epoch + 1
end

local function open_(reason)
  if b.consecutive_opens == 0 then
    b.consecutive_opens = 1
  end
  b.open_until = now + b.open_for * US
  move('open', reason .. '; open for ' .. seconds_text(b.open_for) .. ' s')
end

local function reopen(reason)
  b.consecutive_opens = b.consecutive_opens + 1
  b.open_for = math.min(open_duration_max, b.open_for * open_duration_multiplier)
  open_(reason)
end

local function clear()
  buckets = {}
  seen = {}
  b.open_for = open_duration
  b.consecutive_opens = 0
end

local function percent(ratio)
  return string.format('%d%%', math.floor(ratio * 100 + 0.5))
end

-- 1. The operator's action.
if action ~= nil then
  local reason = action_reason
  if reason == nil or reason == '' then
    reason = string.gsub(action, '_', ' ') .. ' by operator'
  end
  local target
  if action == 'close' or action == 'reset' then
    clear()
    target = 'closed'
  elseif action == 'force_open' then
    target = 'forced_open'
  else
    target = 'disabled'
  end
  if b.state ~= target then
    move(target, reason)
  elseif target == 'closed' then
    b.epoch = b.epoch + 1  -- no transition, but calls admitted before belong to the old window
  end
end

-- 2. The counts.
local calls = successes + failures
local bucket_length = window * US / bucket_count
if calls > 0 then
  if report_epoch == b.epoch and (b.state == 'closed' or b.state == 'disabled') then
    local index = math.floor(now / bucket_length)
    local counts = buckets[index]
    if counts == nil then
      counts = {0, 0, 0}
      buckets[index] = counts
    end
    counts[1] = counts[1] + calls
    counts[2] = counts[2] + failures
    counts[3] = counts[3] + slow
    seen[replica] = now
  else
    late = late + calls
  end
end

-- 3. A finished trial.
if b.state == 'half_open' then
  for token, expiry in pairs(trials) do
    if expiry <= now then
      trials[token] = nil
      trial_count = trial_count - 1
    end
  end
end
if trial_token ~= nil then
  if b.state == 'half_open' and trials[trial_token] ~= nil then
    trials[trial_token] = nil
    trial_count = trial_count - 1
    if trial_outcome == 'failure' then
      local failure = ''
      if last_failure ~= nil and last_failure ~= '' then
        failure = ' (' .. last_failure .. ')'
      end
      reopen('trial call failed' .. failure)
    elseif trial_outcome == 'slow' then
      reopen('trial call slow')
    elseif trial_outcome == 'success' then
      b.trials_succeeded = b.trials_succeeded + 1
      if b.trials_succeeded >= half_open_calls then
        clear()
        if half_open_calls == 1 then
          move('closed', 'trial call succeeded')
        else
          move('closed', 'all ' .. whole(half_open_calls) .. ' trial calls succeeded')
        end
      end
    end
  else
    late = late + 1
  end
end

-- 4. The fleet window, judged while closed.
local horizon = now - window * US
local oldest = math.floor(horizon / bucket_length) + 1  -- buckets wholly inside the window
for index in pairs(buckets) do
  if index < oldest then
    buckets[index] = nil
  end
end
for name, last in pairs(seen) do
  if last <= horizon then
    seen[name] = nil
  end
end
local window_calls, window_failures, window_slow, replicas = 0, 0, 0, 0
for _, counts in pairs(buckets) do
  window_calls = window_calls + counts[1]
  window_failures = window_failures + counts[2]
  window_slow = window_slow + counts[3]
end
for _ in pairs(seen) do
  replicas = replicas + 1
end
if b.state == 'closed' and window_calls >= minimum_calls and replicas >= minimum_replicas then
  local plural = 's'
  if replicas == 1 then
    plural = ''
  end
  local evidence = 'over the last ' .. seconds_text(window) .. ' s (' .. whole(window_calls)
    .. ' calls from ' .. whole(replicas) .. ' replica' .. plural .. ')'
  local failure_rate = window_failures / window_calls
  local slow_rate = window_slow / window_calls
  if failure_rate >= failure_rate_threshold then
    local last = ''
    if last_failure ~= nil and last_failure ~= '' then
      last = '; last failure: ' .. last_failure
    end
    open_('fleet failure rate ' .. percent(failure_rate) .. ' >= '
      .. percent(failure_rate_threshold) .. ' ' .. evidence .. last)
  elseif slow_call_rate_threshold ~= nil and slow_rate >= slow_call_rate_threshold then
    open_('fleet slow-call rate ' .. percent(slow_rate) .. ' >= '
      .. percent(slow_call_rate_threshold) .. ' ' .. evidence)
  end
end

-- 5. An open breaker whose time is up admits trials when asked for one.
if b.state == 'open' and wants_trial and now >= b.open_until then
  local admitting = whole(half_open_calls) .. ' trial calls'
  if half_open_calls == 1 then
    admitting = '1 trial call'
  end
  move('half_open', 'open for ' .. seconds_text(b.open_for) .. ' s; admitting ' .. admitting)
end

-- 6. A trial lease, if one is free.
local token = false
local retry_after = false
if b.state == 'open' then
  retry_after = exact(math.max(0, b.open_until - now) / US)
elseif b.state == 'half_open' then
  if wants_trial and trial_count + b.trials_succeeded < half_open_calls then
    b.fence = b.fence + 1
    token = b.fence
    trials[token] = now + trial_lease * US
    trial_count = trial_count + 1
  elseif trial_count + b.trials_succeeded >= half_open_calls then
    local soonest = nil
    for _, expiry in pairs(trials) do
      if soonest == nil or expiry < soonest then
        soonest = expiry
      end
    end
    retry_after = exact(math.max(0, (soonest or now) - now) / US)
  end
end

-- Written back whole: O(buckets + replicas + trials), all bounded by the rules.
local kept = keep * 1000 + math.max(0, b.open_until - now) / 1000
local fields = {
  'v', '1', 'state', b.state, 'epoch', whole(b.epoch), 'open_until', exact(b.open_until),
  'open_for', exact(b.open_for), 'consecutive_opens', whole(b.consecutive_opens),
  'fence', whole(b.fence), 'trials_succeeded', whole(b.trials_succeeded),
}
if b.reason ~= nil then
  table.insert(fields, 'reason')
  table.insert(fields, b.reason)
end
if b.by ~= nil then
  table.insert(fields, 'by')
  table.insert(fields, b.by)
end
redis.call('DEL', STATE, TRIALS, BUCKETS, SEEN)
redis.call('HSET', STATE, unpack(fields))
refresh(STATE, kept)
local leases = {}
for lease, expiry in pairs(trials) do
  table.insert(leases, exact(expiry))
  table.insert(leases, whole(lease))
end
write_all('ZADD', TRIALS, leases, kept)
local bucket_fields = {}
for index, counts in pairs(buckets) do
  table.insert(bucket_fields, whole(index))
  table.insert(bucket_fields, whole(counts[1]) .. ':' .. whole(counts[2]) .. ':' .. whole(counts[3]))
end
write_all('HSET', BUCKETS, bucket_fields, kept)
local seen_fields = {}
for name, last in pairs(seen) do
  table.insert(seen_fields, name)
  table.insert(seen_fields, exact(last))
end
write_all('HSET', SEEN, seen_fields, kept)

local reason = b.reason or false
local by = b.by or false
local moved = 0
if b.state ~= before then
  moved = 1
end
return {
  b.state, b.epoch, reason, by, moved, retry_after, token, late, window_calls,
  window_failures, window_slow, replicas, exact(b.open_for), b.consecutive_opens,
}
