-- The setl_proc_info templates a batch's records name (settlement/lean.py), before the records.
-- KEYS[1] the templates hash, ARGV pairs: template id, template.
-- Answers the ids another template holds (none written for them; their texts stay whole).
local clash = {}
for i = 1, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 0
      and redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    clash[#clash + 1] = ARGV[i]
  end
end
return clash
