-- What every script that accounts for inputs shares (JobArgs, InputArgs): the redelivery
-- guard, and the counters every outcome updates.
--
-- A task redelivered after a crash (acks_late) re-runs its inputs; the job's done set
-- makes each input count and publish at most once per job. The score (server time) lets
-- a never-ending job, a feed, forget entries by age.
-- A source's counters are a key the caller passes in KEYS (`Keys.source_stats`); the
-- source's name is only ever a member of the sources set, never part of a key name
-- (SOURCES in keys.py). The outcome (MINUTE_KINDS) also goes to the current minute's
-- bucket (server clock, so every worker on every machine adds to the same one), with an
-- EXPIRE only when it is the first of its kind in the bucket.
--
-- A call accounts for many inputs: the counters are added up in the script and written
-- once per call (`flush_counts`), one HINCRBY per key and field, not per input.
local mode, job, batch = A.mode, A.job, A.batch

local clock
local function server_time()
  if not clock then clock = redis.call('TIME') end
  return clock
end

local added, added_order = {}, {}  -- key -> field -> amount; keys in first-use order
local minute_keys = {}
local sources_seen, sources_order = {}, {}

local function add(key, field, by)
  local fields = added[key]
  if not fields then
    fields = {}
    added[key] = fields
    added_order[#added_order + 1] = key
  end
  fields[field] = (fields[field] or 0) + by
end

local function bump(source_stats, field, by)
  if mode ~= 'publish' then return end
  add(K.stats, field, by)
  add(source_stats, field, by)
  if MINUTE_KINDS[field] then
    local minute = K.stats_minute(math.floor(tonumber(server_time()[1]) / 60))
    minute_keys[minute] = true
    add(minute, field, by)
  end
end

local function xadd(stream, maxlen, fields)
  if tonumber(maxlen) > 0 then
    return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
  return redis.call('XADD', stream, '*', unpack(fields))
end

-- Whether the input is new to the job (always, outside a job); marks it done.
-- A batch that ends takes its inputs out of the done set and joins the job's ended
-- batches in one transaction (worker/batches.py): a second copy of the batch still
-- running then (a redelivery, a resend) finds the batch ended, here, in the same atomic
-- step that would otherwise find its inputs new.
local batch_ended
local function first_time(guard)
  if job == '' then return true end
  if batch ~= '' then
    if batch_ended == nil then
      batch_ended = redis.call('SISMEMBER', K.job_tasks(job), batch) == 1
    end
    if batch_ended then return false end
  end
  return redis.call('ZADD', K.job_done(job), 'NX', server_time()[1], guard) == 1
end

-- Count an input that is new to the job: seen, its bytes, its source.
local function count_input(source_stats, source, bytes_in)
  if mode == 'publish' and not sources_seen[source] then
    sources_seen[source] = true
    sources_order[#sources_order + 1] = source
  end
  bump(source_stats, 'seen', 1)
  bump(source_stats, 'bytes_in', bytes_in)
end

-- Write what the call added up.
local function flush_counts()
  if #sources_order > 0 then redis.call('SADD', K.sources, unpack(sources_order)) end
  for _, key in ipairs(added_order) do
    local minute = minute_keys[key]
    for field, by in pairs(added[key]) do
      if by ~= 0 and redis.call('HINCRBY', key, field, by) == by and minute then
        redis.call('EXPIRE', key, RATE_BUCKET_TTL)
      end
    end
  end
end
