-- What every input's script does first (CountedArgs): the redelivery guard, and the
-- counters every outcome updates.
--
-- A task redelivered after a crash (acks_late) re-runs its inputs; ZADD NX on the job's
-- done set makes each input count and publish at most once per job. The score (server
-- time) lets a never-ending job, a feed, forget entries by age.
-- KEYS[1] is the source's counters (`Keys.source_stats`); A.source, the source's name, is
-- only ever a member of the sources set, never part of a key name (SOURCES in keys.py).
-- The outcome (MINUTE_KINDS) also goes to the current minute's bucket (server clock, so
-- every worker on every machine adds to the same one): one HINCRBY per document, and an
-- EXPIRE only when it is the first of its kind in the bucket.
local mode, job = A.mode, A.job
local source_stats = KEYS[1]

local clock
local function server_time()
  if not clock then clock = redis.call('TIME') end
  return clock
end

local function bump(field, by)
  if mode ~= 'publish' then return end
  redis.call('HINCRBY', K.stats, field, by)
  redis.call('HINCRBY', source_stats, field, by)
  if MINUTE_KINDS[field] then
    local minute = K.stats_minute(math.floor(tonumber(server_time()[1]) / 60))
    if redis.call('HINCRBY', minute, field, by) == by then
      redis.call('EXPIRE', minute, RATE_BUCKET_TTL)
    end
  end
end

local function xadd(stream, maxlen, fields)
  if tonumber(maxlen) > 0 then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
  return redis.call('XADD', stream, '*', unpack(fields))
end

if job ~= '' then
  if redis.call('ZADD', K.job_done(job), 'NX', server_time()[1], A.guard) == 0 then
    return {'already'}
  end
end
if mode == 'publish' then redis.call('SADD', K.sources, A.source) end
bump('seen', 1)
bump('bytes_in', A.bytes_in)
