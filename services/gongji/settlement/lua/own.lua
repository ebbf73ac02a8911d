-- An event id claimed for its person, first come first owner.
-- KEYS[1] the id's bucket, ARGV[1] the event key, ARGV[2] the person's owner hash.
-- Answers the owner's hash.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
