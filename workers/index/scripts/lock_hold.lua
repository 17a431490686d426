-- KEYS[1] a lock (LockArgs). Its owner (A.token) keeps it for A.milliseconds more (a
-- host's politeness delay after a request, or a lease renewal); 0 releases it at once.
if redis.call('GET', KEYS[1]) ~= A.token then return 0 end
if A.milliseconds <= 0 then return redis.call('DEL', KEYS[1]) end
return redis.call('SET', KEYS[1], A.token, 'XX', 'PX', A.milliseconds) and 1 or 0
