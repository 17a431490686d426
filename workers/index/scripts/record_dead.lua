-- One input to the dead stream, counted (DeadArgs; uses common.lua).
if not first_time(A.guard) then return {'already'} end
count_input(KEYS[1], A.source, A.bytes_in)
bump(KEYS[1], 'dead', 1)
add(K.dead_reasons, A.reason, 1)
if job ~= '' then
  add(K.job(job), 'dead', 1)
  add(K.job(job), 'dead:' .. A.reason, 1)
end
local entry = xadd(K.dead, A.maxlen, A.fields)
flush_counts()
return {'dead', entry}
