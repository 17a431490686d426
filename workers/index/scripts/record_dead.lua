-- One input to the dead stream, counted (DeadArgs; uses common.lua).
bump('dead', 1)
redis.call('HINCRBY', K.dead_reasons, A.reason, 1)
if job ~= '' then
  redis.call('HINCRBY', K.job(job), 'dead', 1)
  redis.call('HINCRBY', K.job(job), 'dead:' .. A.reason, 1)
end
local entry = xadd(K.dead, A.maxlen, A.fields)
return {'dead', entry}
