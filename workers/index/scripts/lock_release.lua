-- KEYS[1] a lock (LockArgs). Delete it only if the caller (A.token) still owns it.
if redis.call('GET', KEYS[1]) == A.token then return redis.call('DEL', KEYS[1]) end
return 0
