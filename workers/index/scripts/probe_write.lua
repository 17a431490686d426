-- KEYS[1] the write probe (ProbeArgs). A write that arrives with as many bytes as a
-- worker's chunk of script calls (A.padding, never stored): Redis counts a command's
-- arguments against maxmemory while it runs it, so a bare SET can pass while the workers'
-- writes are refused.
redis.call('SET', KEYS[1], '1', 'PX', 1000)
return 1
