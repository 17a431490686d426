"""Every Redis key name and Lua script newsdedup uses. Nothing else builds key names.

Layout under the configured prefix P (default "newsdedup:"):

  P docs | P duplicates | P dead      output streams
  P stats                             hash: global counters (seen, published, exact, near, ...)
  P stats:source:<source>             hash: the same counters per source
  P stats:dead_reasons                hash: dead-letter reason -> count
  P stats:sources                     set: sources seen (to enumerate the per-source hashes)
  P ix:meta                           hash: index parameters (refuse to mix schemes)
  P ix:next                           counter: compact internal numbers for indexed docs
  P ix:sig                            hash: doc number -> MinHash signature (uint32 LE bytes)
  P ix:info                           hash: doc number -> "<shingles>\\x1f<id>"
  P ix:exact                          hash: content hash -> original's id
  P ix:b:<band>:<bucket>              set: doc numbers in one LSH bucket
  P job:<job>                         hash: one backfill/poll job's totals and counters
  P job:<job>:done                    set: input refs already accounted for (redelivery guard)
  P job:<job>:tasks                   set: task indexes finished
  P jobs                              sorted set: job ids by creation time

Redis Cluster is not supported: the scripts touch keys they discover while running.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAM_NAMES = ("docs", "duplicates", "dead")
JOB_TTL_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def docs(self) -> str:
        return f"{self.prefix}docs"

    @property
    def duplicates(self) -> str:
        return f"{self.prefix}duplicates"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    def stream(self, name: str) -> str:
        if name not in STREAM_NAMES:
            raise ValueError(f"unknown stream {name!r}; expected one of {', '.join(STREAM_NAMES)}")
        return f"{self.prefix}{name}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    def source_stats(self, source: str) -> str:
        return f"{self.prefix}stats:source:{source}"

    @property
    def dead_reasons(self) -> str:
        return f"{self.prefix}stats:dead_reasons"

    @property
    def sources(self) -> str:
        return f"{self.prefix}stats:sources"

    @property
    def index_meta(self) -> str:
        return f"{self.prefix}ix:meta"

    @property
    def index_signatures(self) -> str:
        return f"{self.prefix}ix:sig"

    @property
    def index_pattern(self) -> str:
        return f"{self.prefix}ix:*"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def job_done(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:done"

    def job_tasks(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:tasks"

    @property
    def all_pattern(self) -> str:
        return f"{self.prefix}*"


# Shared Lua: the redelivery guard and the counters every outcome updates.
# A task redelivered after a crash (acks_late) re-runs its inputs; SADD on the job's done
# set makes each input count and publish at most once per job.
_LUA_PRELUDE = r"""
local P = ARGV[1]
local job = ARGV[2]
local input_ref = ARGV[3]
local source = ARGV[4]
local nbytes = tonumber(ARGV[5])

local function bump(field, by)
  redis.call('HINCRBY', P .. 'stats', field, by)
  redis.call('HINCRBY', P .. 'stats:source:' .. source, field, by)
end

local function xadd(stream, maxlen, fields)
  if tonumber(maxlen) > 0 then
    return redis.call('XADD', P .. stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
  return redis.call('XADD', P .. stream, '*', unpack(fields))
end

if job ~= '' then
  if redis.call('SADD', P .. 'job:' .. job .. ':done', input_ref) == 0 then
    return {'already'}
  end
end
redis.call('SADD', P .. 'stats:sources', source)
bump('seen', 1)
bump('bytes_in', nbytes)
"""

# ARGV: 1 prefix, 2 job, 3 input_ref, 4 source, 5 bytes, 6 maxlen,
#       7 reason, then the dead stream's field/value pairs.
RECORD_DEAD_LUA = (
    _LUA_PRELUDE
    + r"""
local maxlen = ARGV[6]
local reason = ARGV[7]
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
bump('dead', 1)
redis.call('HINCRBY', P .. 'stats:dead_reasons', reason, 1)
if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, 'dead', 1) end
local entry = xadd('dead', maxlen, fields)
return {'dead', entry}
"""
)

# ARGV: 1 prefix, 2 job, 3 input_ref, 4 source, 5 bytes,
#       6 doc id, 7 content hash, 8 signature bytes ('' = too short for near matching),
#       9 shingle count, 10 num_perm, 11 jaccard threshold, 12 containment threshold,
#       13 min shingles, 14 max candidates, 15 docs maxlen, 16 duplicates maxlen,
#       17 stripped line count, 18 number of band buckets B, 19..18+B bucket names,
#       then N = next ARGV: doc-stream field/value pairs count, the pairs,
#       then the duplicates-stream field/value pairs (without duplicate_of/similarity/kind).
ACCEPT_DOCUMENT_LUA = (
    _LUA_PRELUDE
    + r"""
local doc_id = ARGV[6]
local chash = ARGV[7]
local sig = ARGV[8]
local nsh = tonumber(ARGV[9])
local num_perm = tonumber(ARGV[10])
local j_threshold = tonumber(ARGV[11])
local c_threshold = tonumber(ARGV[12])
local min_shingles = tonumber(ARGV[13])
local max_candidates = tonumber(ARGV[14])
local docs_maxlen = ARGV[15]
local dups_maxlen = ARGV[16]
local stripped = tonumber(ARGV[17])
local nbands = tonumber(ARGV[18])
local pos = 19 + nbands
local ndoc = tonumber(ARGV[pos])
local doc_fields = {}
for i = pos + 1, pos + ndoc do doc_fields[#doc_fields + 1] = ARGV[i] end
local dup_fields = {}
for i = pos + ndoc + 1, #ARGV do dup_fields[#dup_fields + 1] = ARGV[i] end

local function duplicate(kind, original, similarity, containment)
  dup_fields[#dup_fields + 1] = 'duplicate_of'
  dup_fields[#dup_fields + 1] = original
  dup_fields[#dup_fields + 1] = 'similarity'
  dup_fields[#dup_fields + 1] = similarity
  dup_fields[#dup_fields + 1] = 'containment'
  dup_fields[#dup_fields + 1] = containment
  dup_fields[#dup_fields + 1] = 'kind'
  dup_fields[#dup_fields + 1] = kind
  local entry = xadd('duplicates', dups_maxlen, dup_fields)
  bump(kind, 1)
  if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, kind, 1) end
  -- Later exact copies of this text resolve straight to the original.
  redis.call('HSETNX', P .. 'ix:exact', chash, original)
  return {kind, entry, original, similarity, containment}
end

-- 1. Exact: same matching-normalised content.
local original = redis.call('HGET', P .. 'ix:exact', chash)
if original then
  return duplicate('exact', original, '1', '1')
end

-- 2. Near: LSH candidates, verified against stored signatures.
if sig ~= '' and nsh >= min_shingles then
  local hits = {}
  local order = {}
  for b = 1, nbands do
    local members = redis.call('SMEMBERS', P .. 'ix:b:' .. ARGV[18 + b])
    for _, m in ipairs(members) do
      if hits[m] == nil then
        hits[m] = 0
        order[#order + 1] = m
      end
      hits[m] = hits[m] + 1
    end
  end
  -- Most shared bands first: the likeliest originals are verified before the cap bites.
  table.sort(order, function(a, b)
    if hits[a] ~= hits[b] then return hits[a] > hits[b] end
    return tonumber(a) < tonumber(b)
  end)
  local best, best_score, best_j, best_c = nil, -1, 0, 0
  for i = 1, math.min(#order, max_candidates) do
    local num = order[i]
    local other = redis.call('HGET', P .. 'ix:sig', num)
    local info = redis.call('HGET', P .. 'ix:info', num)
    if other and info then
      local equal = 0
      for k = 0, num_perm - 1 do
        local s = k * 4 + 1
        if string.sub(sig, s, s + 3) == string.sub(other, s, s + 3) then equal = equal + 1 end
      end
      local j = equal / num_perm
      local sep = string.find(info, '\31', 1, true)
      local other_n = tonumber(string.sub(info, 1, sep - 1))
      local smaller = math.min(nsh, other_n)
      local c = 0
      if smaller > 0 then c = math.min(1, (j * (nsh + other_n) / (1 + j)) / smaller) end
      local is_dup = j >= j_threshold or (c >= c_threshold and smaller >= min_shingles)
      if is_dup then
        local score = math.max(j, c)
        if score > best_score then
          best, best_score, best_j, best_c = string.sub(info, sep + 1), score, j, c
        end
      end
    end
  end
  if best then
    return duplicate('near', best, string.format('%.4f', best_j), string.format('%.4f', best_c))
  end
end

-- 3. New: index it and publish.
redis.call('HSET', P .. 'ix:exact', chash, doc_id)
if sig ~= '' and nsh >= min_shingles then
  local num = redis.call('INCR', P .. 'ix:next')
  redis.call('HSET', P .. 'ix:sig', num, sig)
  redis.call('HSET', P .. 'ix:info', num, nsh .. '\31' .. doc_id)
  for b = 1, nbands do
    redis.call('SADD', P .. 'ix:b:' .. ARGV[18 + b], num)
  end
end
local entry = xadd('docs', docs_maxlen, doc_fields)
bump('published', 1)
bump('stripped_lines', stripped)
if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, 'published', 1) end
return {'published', entry}
"""
)
