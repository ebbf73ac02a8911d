-- The id of a record the reversal window closed (commit.lua named it), if it is still its owner's.
-- KEYS[1] the id's bucket, ARGV[1] the event key, ARGV[2] the owner's hash.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
