-- Add one settlement's amounts to its clearing position, once.
-- KEYS[1] the position's settlement ids (set)   {clr:<month>:<treatment>><insured>}:seen
-- KEYS[2] the position (hash)                   {clr:<month>:<treatment>><insured>}:flow
-- ARGV[1] setl_id, ARGV[2..] field, increment pairs (integers computed by the caller)
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 'duplicate'
end
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 'ok'
