-- Applies events to the projection, each atomically with its stream version.
-- Per event, KEYS: 1 license hash, 2 sessions zset, 3 holders hash, 4 session hash,
--       5 sentinel, 6 meta.
-- and ARGV: 1 stream kind (L license, S session, X other), 2 stream version,
--       3 check sentinel (1/0), 4 position, 5 recorded_at ms, 6 now ms,
--       7 op, 8.. op arguments.
-- Its reply: ok | dup | closed | skip | flushed | gap:<applied version>.
--
-- One call applies a batch, in order (fewer round trips and script calls:
-- what makes a rebuild fast): ARGV[1] is the number of events n; then, per
-- event, the count of its arguments followed by them; KEYS holds the six
-- keys of each event in turn. Returns one reply per event.
local newest = nil
local function apply(KEYS, ARGV)
  if ARGV[3] == '1' and redis.call('EXISTS', KEYS[5]) == 0 then
    return 'flushed'
  end
  local version = tonumber(ARGV[2])
  local op = ARGV[7]

  -- The newest applied event of the batch goes into the meta hash once,
  -- after the batch (nothing sees the hash in between: a call is atomic).
  local function meta()
    local position = tonumber(ARGV[4])
    if newest == nil or position > newest[2] then
      newest = {KEYS[6], position, ARGV[5], ARGV[6]}
    end
  end

  if ARGV[1] == 'L' then
    local applied = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
    if applied >= version then return 'dup' end
    if version > applied + 1 then return 'gap:' .. applied end
    if op == 'issued' then
      -- ARGV 8 tenant, 9 product, 10 seats, 11 session ttl secs
      redis.call('HSET', KEYS[1], 'tenant', ARGV[8], 'product', ARGV[9], 'seats', ARGV[10],
        'session_ttl_secs', ARGV[11], 'in_use', 0, 'suspended', 0, 'denials_today', 0, 'denials_day', '')
    elseif op == 'seats' then
      redis.call('HSET', KEYS[1], 'seats', ARGV[8])
    elseif op == 'suspended' then
      redis.call('HSET', KEYS[1], 'suspended', 1)
    elseif op == 'reinstated' then
      redis.call('HSET', KEYS[1], 'suspended', 0)
    elseif op == 'acquired' or op == 'revived' then
      -- ARGV 8 session, 9 user, 10 hardware, 11 deadline ms, 12 license.
      -- A new session's stream is empty (version -1); a revived one's
      -- version is unknown here (-2): its next session event sets it.
      local start = (op == 'acquired') and '-1' or '-2'
      if redis.call('HSETNX', KEYS[3], ARGV[8], start .. '\t' .. ARGV[10] .. '\t' .. ARGV[9]) == 1 then
        redis.call('HINCRBY', KEYS[1], 'in_use', 1)
      end
      redis.call('ZADD', KEYS[2], ARGV[11], ARGV[8])
      -- 'since': when this life of the session started (the event's recorded_at).
      redis.call('HSET', KEYS[4], 'license', ARGV[12], 'user', ARGV[9], 'hardware', ARGV[10],
        'deadline', ARGV[11], 'version', start, 'since', ARGV[5])
      redis.call('PEXPIREAT', KEYS[4], ARGV[11])
    elseif op == 'denied' then
      -- ARGV 8 the UTC day of the denial
      if redis.call('HGET', KEYS[1], 'denials_day') == ARGV[8] then
        redis.call('HINCRBY', KEYS[1], 'denials_today', 1)
      else
        redis.call('HSET', KEYS[1], 'denials_today', 1, 'denials_day', ARGV[8])
      end
    elseif op == 'ended' then
      -- ARGV 8 session
      if redis.call('HDEL', KEYS[3], ARGV[8]) == 1 then
        redis.call('HINCRBY', KEYS[1], 'in_use', -1)
      end
      redis.call('ZREM', KEYS[2], ARGV[8])
      redis.call('DEL', KEYS[4])
    end
    redis.call('HSET', KEYS[1], 'version', version)
    meta()
    return 'ok'
  elseif ARGV[1] == 'S' then
    -- ARGV 8 session; heartbeat: 9 deadline ms, 10 license; token: 9 its exp ms
    local raw = redis.call('HGET', KEYS[3], ARGV[8])
    if not raw then
      -- Released or expired (its license event came first): nothing to keep.
      meta()
      return 'closed'
    end
    local v, hardware, user = string.match(raw, '^(-?%d+)\t([^\t]*)\t(.*)$')
    local applied = tonumber(v)
    if applied ~= -2 then
      if applied >= version then return 'dup' end
      if version > applied + 1 then return 'gap:' .. applied end
    end
    redis.call('HSET', KEYS[3], ARGV[8], version .. '\t' .. hardware .. '\t' .. user)
    if op == 'heartbeat' then
      redis.call('ZADD', KEYS[2], ARGV[9], ARGV[8])
      redis.call('HSET', KEYS[4], 'license', ARGV[10], 'user', user, 'hardware', hardware,
        'deadline', ARGV[9], 'version', version, 'last_heartbeat', ARGV[5])
      redis.call('PEXPIREAT', KEYS[4], ARGV[9])
    elseif op == 'token' and redis.call('EXISTS', KEYS[4]) == 1 then
      redis.call('HSET', KEYS[4], 'version', version, 'token_expires', ARGV[9])
    elseif redis.call('EXISTS', KEYS[4]) == 1 then
      redis.call('HSET', KEYS[4], 'version', version)
    end
    meta()
    return 'ok'
  end
  meta()
  return 'skip'
end

local n = tonumber(ARGV[1])
local replies = {}
local at = 2
for e = 0, n - 1 do
  local count = tonumber(ARGV[at])
  local args = {}
  for j = 1, count do
    args[j] = ARGV[at + j]
  end
  at = at + count + 1
  local keys = {}
  for j = 1, 6 do
    keys[j] = KEYS[e * 6 + j]
  end
  replies[e + 1] = apply(keys, args)
end
if newest ~= nil then
  local cur = tonumber(redis.call('HGET', newest[1], 'position') or '0')
  if newest[2] > cur then
    redis.call('HSET', newest[1], 'position', newest[2], 'recorded_at_ms', newest[3],
      'applied_at_ms', newest[4])
  end
end
return replies
