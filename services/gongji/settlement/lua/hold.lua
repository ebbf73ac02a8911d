-- Family mutual aid (家庭共济), the holder's side: make the amount held from the holder's account
-- for one claim equal to ARGV[2] fen. Idempotent: redoing it changes nothing; 0 refunds.
-- KEYS[1] the holder's state hash  {holder}:state
-- KEYS[2] the holder's holds hash  {holder}:holds   (claim id -> fen held)
-- ARGV[1] claim id, ARGV[2] amount in fen, ARGV[3] the holder's new state token
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local delta = tonumber(ARGV[2]) - held
if delta == 0 then
  return 'ok'
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balc') or '0')
if delta > balance then
  return 'short'
end
redis.call('HSET', KEYS[1], 'balc', tostring(balance - delta), 'ver', ARGV[3])
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return 'ok'
