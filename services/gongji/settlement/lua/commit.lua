-- Commit one settled event for one person, if nothing changed since it was computed.
-- KEYS[1] the person's state hash   {psn}:state
-- KEYS[2] this event's record hash  {psn}:rec:<id>
-- KEYS[3] (reversal only) the original's record hash, to mark it reversed
-- ARGV[1] expected token, ARGV[2] new token, ARGV[3] fingerprint, ARGV[4] record JSON,
-- ARGV[5] id of this event (reversal: written to the original as reversed_by),
-- ARGV[6..] state fields and values to set (absolute values computed by the engine)
-- Validate first, write last: Lua does not roll back writes made before an error.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'duplicate'
end
local token = redis.call('HGET', KEYS[1], 'ver') or ''
if token ~= ARGV[1] then
  return 'stale'
end
if KEYS[3] then
  if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('HEXISTS', KEYS[3], 'reversed_by') == 1 then
    return 'stale'
  end
end
if #ARGV > 5 then
  redis.call('HSET', KEYS[1], 'ver', ARGV[2], unpack(ARGV, 6))
else
  redis.call('HSET', KEYS[1], 'ver', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'pending:' .. ARGV[5])  -- its family-account hold, if any, is now on record
redis.call('HSET', KEYS[2], 'fp', ARGV[3], 'data', ARGV[4])
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'reversed_by', ARGV[5])
end
return 'ok'
