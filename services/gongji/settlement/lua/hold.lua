-- Family mutual aid (家庭共济), the holder's side: move the amount held from the holder's account for
-- one patient's claim from ARGV[3] (what the plan read) to ARGV[2], only if it is still ARGV[3].
-- KEYS[1] the holder's state hash  {holder}:state
-- KEYS[2] the holder's holds hash  {holder}:holds   ("<patient>:<claim id>" -> fen held)
-- ARGV[1] "<patient>:<claim id>", ARGV[2] new amount, ARGV[3] expected amount,
-- ARGV[4] the balance increment (expected - new, computed by the caller: no arithmetic on money
-- here, and no number formatted by Lua), ARGV[5] the holder's new state token,
-- ARGV[6] (optional) the holder's token the plan read: the hold applies only on that state.
-- Validate first, write last.
local held = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if held ~= ARGV[3] then
  return 'stale'
end
if ARGV[6] and (redis.call('HGET', KEYS[1], 'ver') or '') ~= ARGV[6] then
  return 'stale'
end
if ARGV[2] == ARGV[3] then
  return 'ok'
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balc') or '0')
if balance + tonumber(ARGV[4]) < 0 then
  return 'short'
end
redis.call('HINCRBY', KEYS[1], 'balc', ARGV[4])
redis.call('HSET', KEYS[1], 'ver', ARGV[5])
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 'ok'
