-- The start of every script of resilient's Redis store (the script follows it).
--
-- Values are read strictly: a key of the wrong type, a missing field, a number that is
-- not one or a layout version this code does not know ends the script with an error
-- reply that names the key (the store raises StoreValueError). Nothing is repaired and
-- nothing is guessed, except by an operator's close or reset of a breaker, which
-- rewrites the breaker's keys (breaker.lua). Redis does not undo the writes of a script
-- that stops with an error, so every script reads and checks everything before it
-- writes anything.

-- Scripts read TIME and then write: Redis before 5 replicates that only as effects, and
-- only when asked (from Redis 5 on it is the default, from 7 the only way).
if redis.replicate_commands ~= nil then
  redis.replicate_commands()
end

local function bad(key, problem)
  error({err = 'RESILIENT key ' .. key .. ' ' .. problem})
end

local function shown(text)
  if string.len(text) > 60 then
    text = string.sub(text, 1, 57) .. '...'
  end
  return string.format('%q', text)
end

local function expect_type(key, want)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= want then
    bad(key, 'holds a ' .. found .. ', not a ' .. want)
  end
end

local function number(key, what, text)
  if text == nil then
    bad(key, 'has no ' .. what)
  end
  local value = tonumber(text)
  if value == nil or value ~= value or value == math.huge or value == -math.huge then
    bad(key, 'holds ' .. what .. ' ' .. shown(text) .. ', not a number')
  end
  return value
end

local function integer(key, what, text, minimum)
  local value = number(key, what, text)
  if value ~= math.floor(value) or value < minimum then
    bad(key, 'holds ' .. what .. ' ' .. shown(text) .. ', not an integer >= ' .. minimum)
  end
  return value
end

-- A hash as a table of field -> value; an empty table when the key is missing.
local function read_hash(key)
  local flat = redis.call('HGETALL', key)
  local hash = {}
  for i = 1, #flat, 2 do
    hash[flat[i]] = flat[i + 1]
  end
  return hash
end

-- A hash holding one record: missing means fresh (nil); else its version must be 1.
local function read_record(key)
  local hash = read_hash(key)
  if next(hash) == nil then
    return nil
  end
  if hash['v'] ~= '1' then
    if hash['v'] == nil then
      bad(key, 'has no layout version (field v)')
    end
    bad(key, 'holds layout version ' .. shown(hash['v']) .. ', not 1')
  end
  return hash
end

-- The server's time in microseconds (exact in a double); every time in a decision is
-- this one, never a client's. Durations arrive in seconds and are scaled by US.
local US = 1000000
local function clock()
  local time = redis.call('TIME')
  return tonumber(time[1]) * US + tonumber(time[2])
end

-- A float as text that reads back as the same float.
local function exact(value)
  return string.format('%.17g', value)
end

local function whole(value)
  return string.format('%d', value)
end

-- Optional arguments: '' is none, '=' followed by the value is the value.
local function optional(text)
  if text == '' then
    return nil
  end
  return string.sub(text, 2)
end

-- Seconds for people, as resilient's format_seconds writes them: 12.5, 30, 0.25.
local function seconds_text(value)
  if math.abs(value) >= 1e15 then
    return string.format('%.3g', value)
  end
  local text = string.gsub(string.gsub(string.format('%.3f', value), '0+$', ''), '%.$', '')
  if text == '' or text == '-0' then
    return '0'
  end
  return text
end

-- Expire the key after the given milliseconds, capped at some 3000 years (what a
-- breaker opened for 1e18 s asks for; PEXPIRE takes no more).
local function refresh(key, milliseconds)
  redis.call('PEXPIRE', key, string.format('%d', math.ceil(math.min(milliseconds, 1e14))))
end

-- HSET or ZADD of a list of pairs, in pieces small enough for Lua's stack; then the
-- key's expiry. Nothing is written for an empty list.
local function write_all(command, key, pairs_list, milliseconds)
  if #pairs_list == 0 then
    return
  end
  local piece = 2000
  for first = 1, #pairs_list, piece do
    local last = math.min(first + piece - 1, #pairs_list)
    redis.call(command, key, unpack(pairs_list, first, last))
  end
  refresh(key, milliseconds)
end

-- Drop the publications that expired (expiry <= now) and their snapshots.
local function forget_expired(published, snapshots, now)
  local gone = redis.call('ZRANGEBYSCORE', published, '-inf', exact(now))
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', published, '-inf', exact(now))
    for first = 1, #gone, 2000 do
      redis.call('HDEL', snapshots, unpack(gone, first, math.min(first + 1999, #gone)))
    end
  end
end

-- The latest actions with a sequence above `since`, oldest first, flat:
-- sequence, guard, action, reason, by, ...
local function actions_after(acted, actions, since)
  local flat = redis.call('ZRANGEBYSCORE', acted, '(' .. since, '+inf', 'WITHSCORES')
  local answer = {}
  for i = 1, #flat, 2 do
    local guard = flat[i]
    local sequence = integer(acted, 'the sequence of guard ' .. shown(guard), flat[i + 1], 1)
    local text = redis.call('HGET', actions, guard)
    if not text then
      bad(actions, 'has no action on guard ' .. shown(guard) .. ', which ' .. acted .. ' lists')
    end
    local ok, record = pcall(cjson.decode, text)
    if not ok or type(record) ~= 'table' or record['v'] ~= 1 or record['sequence'] ~= sequence
        or type(record['action']) ~= 'string' or type(record['reason']) ~= 'string'
        or type(record['by']) ~= 'string' then
      bad(actions, 'holds action ' .. shown(text) .. ' on guard ' .. shown(guard)
        .. ', not a version-1 action of sequence ' .. whole(sequence))
    end
    table.insert(answer, sequence)
    table.insert(answer, guard)
    table.insert(answer, record['action'])
    table.insert(answer, record['reason'])
    table.insert(answer, record['by'])
  end
  return answer
end
