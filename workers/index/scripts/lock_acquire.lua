-- KEYS[1] a lock (LockArgs). Take it for A.milliseconds if it is free, or keep it that long
-- if its owner (A.token) already holds it: a redelivered task takes its own lock back
-- instead of waiting for it to expire. Returns {1, 0} when held, else {0, the PTTL of the
-- holder's lock} (-1: it never expires), which tells a waiting caller when to look again.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= A.token then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], A.token, 'PX', A.milliseconds)
return {1, 0}
