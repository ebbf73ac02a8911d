-- Add one settlement's amounts to its clearing position, once, and to its institution's share.
-- KEYS[1] the position's settlement ids (set)   {clr:<month>:<treatment>><insured>}:seen
-- KEYS[2] the position (hash)                   {clr:<month>:<treatment>><insured>}:flow
-- ARGV[1] setl_id, ARGV[2] the treating institution's fixmedins_code ('' when not known),
-- ARGV[3..] field, increment pairs (integers computed by the caller). An institution's share lives in
-- the same hash under 'inst:<fixmedins_code>:<field>', counted in the same step as the position.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return 'duplicate'
end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  if ARGV[2] ~= '' then
    redis.call('HINCRBY', KEYS[2], 'inst:' .. ARGV[2] .. ':' .. ARGV[i], ARGV[i + 1])
  end
end
return 'ok'
