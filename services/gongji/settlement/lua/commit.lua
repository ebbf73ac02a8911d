-- Commit one settled event for one person, if nothing changed since it was computed.
-- KEYS[1] the person's state hash     {psn}:state
-- KEYS[2] the person's records hash   {psn}:recs   (field: event key, value: packed.value)
-- ARGV[1] expected token, ARGV[2] new token, ARGV[3] this event's field, ARGV[4] its record value,
-- ARGV[5] id of this event (reversal: appended to the original's value as its reversed_by),
-- ARGV[6] (reversal) the original's field, else '',
-- ARGV[7] the first year the person's state keeps ('' : none closed): when it moves (state field
--         'from'), the records and the "<year>:…" state fields of earlier years are deleted,
-- ARGV[8..] state fields and values to set (absolute values computed by the engine).
-- Answers 'ok', or {'ok', field...} naming the records the closing deleted (their ids go next),
-- 'stale' or 'duplicate'.
-- Validate first, write last: Lua does not roll back writes made before an error.
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 1 then
  return 'duplicate'
end
local token = redis.call('HGET', KEYS[1], 'ver') or ''
if token ~= ARGV[1] then
  return 'stale'
end
local original
local closed = {'ok'}
if ARGV[6] ~= '' then
  original = redis.call('HGET', KEYS[2], ARGV[6])
  if not original then
    return 'stale'
  end
  -- After the year (4), the fingerprint's length (1) and the fingerprint, the data: squeezed (a 3,
  -- then its two parts' lengths, 2 bytes each), or JSON; a reversal's mark follows it ("\n" and id).
  local start = 6 + string.byte(original, 5)
  if string.byte(original, start) == 3 then
    local b1, b2, b3, b4 = string.byte(original, start + 1, start + 4)
    if #original > start + 4 + b1 * 256 + b2 + b3 * 256 + b4 then
      return 'stale'
    end
  elseif string.find(original, '\n', start, true) then
    return 'stale'
  end
end
if ARGV[7] ~= '' and ARGV[7] ~= (redis.call('HGET', KEYS[1], 'from') or '') then
  local first = tonumber(ARGV[7])
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if tonumber(string.sub(all[i + 1], 1, 4)) < first then
      redis.call('HDEL', KEYS[2], all[i])
      closed[#closed + 1] = all[i]
    end
  end
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    local year = tonumber(string.match(name, '^(%d+):'))
    if year and year < first then
      redis.call('HDEL', KEYS[1], name)
    end
  end
  redis.call('HSET', KEYS[1], 'from', ARGV[7])
end
if #ARGV > 7 then
  redis.call('HSET', KEYS[1], 'ver', ARGV[2], unpack(ARGV, 8))
else
  redis.call('HSET', KEYS[1], 'ver', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'pending:' .. ARGV[5])  -- its family-account hold, if any, is now on record
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
if original then
  redis.call('HSET', KEYS[2], ARGV[6], original .. '\n' .. ARGV[5])
end
if #closed > 1 then
  return closed
end
return 'ok'
