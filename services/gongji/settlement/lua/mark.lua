-- What Redis holds, per input partition of the settlement group: the next offset whose effects
-- are written (SeenMarkers). Called after a batch's writes, before its results are published.
-- KEYS[1]  the marker hash
-- ARGV     triples: field ("<topic>:<partition>"), first, next
--          first >= 0: the batch began at this offset, so the marker must be at least that; a
--          marker missing or lower means Redis lost state it had: answer the field, write nothing
--          first = -1: a partition nobody has settled yet (no marker needed)
--          first = -2: set to next, whatever is there (the rebuild)
-- Returns the fields found behind (empty: every marker moved to max(marker, next)).
local behind = {}
for i = 1, #ARGV, 3 do
  local first = tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if first >= 0 and (current == nil or current < first) then
    behind[#behind + 1] = ARGV[i]
  end
end
if #behind > 0 then
  return behind
end
for i = 1, #ARGV, 3 do
  local first, nxt = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if first == -2 or current == nil or current < nxt then
    redis.call('HSET', KEYS[1], ARGV[i], nxt)
  end
end
return behind
