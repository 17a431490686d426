"""Every Redis key name and Lua script newsdedup uses. Nothing else builds key names.

Layout under the configured prefix P (default "newsdedup:"):

  P docs | P duplicates | P dead      output streams
  P stats                             hash: global counters (seen, published, exact, near, ...)
  P stats:source:<source>             hash: the same counters per source
  P stats:dead_reasons                hash: dead-letter reason -> count
  P stats:sources                     set: sources seen (to enumerate the per-source hashes)
  P ix:meta                           hash: index parameters (refuse to mix schemes), watermark
  P ix:next / P ix:count              counters: last doc number given out / docs indexed now
  P ix:r:<n // 256>                   string: fixed-size records of 256 docs (see RECORD below)
  P ix:pages                          hash: record page -> live docs in it (free empty pages)
  P ix:i:<n // 128>                   hash: doc number -> the document's own id
  P ix:l:<shard>                      hash: LSH bucket (4-byte hash of band number and the
                                      band's values) -> packed 4-byte doc numbers
  P ix:x:<shard> / P ix:u:<shard>     hash: 8-byte content / canonical-URL key -> doc number
  P ix:t:<day>                        list: doc numbers whose retention clock falls on <day>
  P ix:days                           sorted set: days with a list, oldest first

RECORD (2*num_perm + 24 bytes): the signature's high 16 bits per permutation, big-endian;
the 8-byte content key; the 8-byte URL key (zeros: none); shingle count (u32); retention
timestamp (u32 seconds). Fixed-size slots in page strings cost no per-key overhead, and
the hashes stay small enough for Redis's compact listpack encoding (up to 128 entries of
up to 64 bytes each by default): shard counts are sized from `dedup.capacity`.
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
    def index_count(self) -> str:
        return f"{self.prefix}ix:count"

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
-- 'publish': decide, index, publish, count. 'rebuild': only (re)index a published doc.
local mode = ARGV[2]
local job = ARGV[3]
local guard = ARGV[4]
local source = ARGV[5]
local nbytes = tonumber(ARGV[6])

local function bump(field, by)
  if mode ~= 'publish' then return end
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
  if redis.call('SADD', P .. 'job:' .. job .. ':done', guard) == 0 then
    return {'already'}
  end
end
if mode == 'publish' then redis.call('SADD', P .. 'stats:sources', source) end
bump('seen', 1)
bump('bytes_in', nbytes)
"""

# ARGV: 1 prefix, 2 mode, 3 job, 4 guard, 5 source, 6 bytes, 7 maxlen, 8 reason,
#       then the dead stream's field/value pairs.
RECORD_DEAD_LUA = (
    _LUA_PRELUDE
    + r"""
local maxlen = ARGV[7]
local reason = ARGV[8]
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
bump('dead', 1)
redis.call('HINCRBY', P .. 'stats:dead_reasons', reason, 1)
if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, 'dead', 1) end
local entry = xadd('dead', maxlen, fields)
return {'dead', entry}
"""
)

# The index itself. Everything below works from the stored record, so Python and Lua
# never have to agree on a second hash function: bucket fields and shards are derived
# here from the signature bytes.
_LUA_INDEX = r"""
local NUM_PERM = tonumber(ARGV[13])
local BANDS = tonumber(ARGV[14])
local ROWS = tonumber(ARGV[15])
local LSH_SHARDS = tonumber(ARGV[16])
local KEY_SHARDS = tonumber(ARGV[17])
local SIGLEN = 2 * NUM_PERM
local RECLEN = SIGLEN + 24
local ZERO8 = string.rep('\0', 8)
local ZERO_SIG = string.rep('\0', SIGLEN)

local function u16(s, i)
  local a, b = string.byte(s, i, i + 1)
  return a * 256 + b
end

local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function pack32(n)
  n = math.floor(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                     math.floor(n / 256) % 256, n % 256)
end

-- Two polynomial hashes of a band's 16-bit values (exact in Lua's doubles: h < 2^32, so
-- h * 65599 < 2^49): one picks the shard, the other is the 4-byte field. Candidates are
-- verified against stored signatures, so a rare collision costs a check, not a decision.
local function band_hashes(sig, band)
  local start = band * ROWS * 2 + 1
  local h1, h2 = band * 40503 + 1, band * 2654435 + 7
  for r = 0, ROWS - 1 do
    local v = u16(sig, start + 2 * r)
    h1 = (h1 * 65599 + v) % 4294967296
    h2 = (h2 * 31337 + v) % 4294967296
  end
  return h1, h2
end

local function band_key_field(sig, band)
  local h1, h2 = band_hashes(sig, band)
  return P .. 'ix:l:' .. (h1 % LSH_SHARDS), pack32(h2)
end

local function key_shard(kind, key8)
  return P .. 'ix:' .. kind .. ':' .. (u32(key8, 1) % KEY_SHARDS)
end

local function page_key(num) return P .. 'ix:r:' .. math.floor(num / 256) end
local function id_key(num) return P .. 'ix:i:' .. math.floor(num / 128) end

-- A live record: {sig, content key, url key, shingles, ts}, or nil once freed.
local function read_record(num)
  local offset = (num % 256) * RECLEN
  local rec = redis.call('GETRANGE', page_key(num), offset, offset + RECLEN - 1)
  if string.len(rec) < RECLEN then return nil end
  local ts = u32(rec, SIGLEN + 21)
  if ts == 0 then return nil end
  return {string.sub(rec, 1, SIGLEN), string.sub(rec, SIGLEN + 1, SIGLEN + 8),
          string.sub(rec, SIGLEN + 9, SIGLEN + 16), u32(rec, SIGLEN + 17), ts}
end

local function remove_packed(key, field, num)
  local packed = redis.call('HGET', key, field)
  if not packed then return end
  local me, kept = pack32(num), {}
  for k = 1, string.len(packed), 4 do
    local item = string.sub(packed, k, k + 3)
    if item ~= me then kept[#kept + 1] = item end
  end
  if #kept == 0 then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, table.concat(kept))
  end
end

-- Free every trace of one indexed document.
local function expire(num)
  local rec = read_record(num)
  if not rec then return end
  if rec[1] ~= ZERO_SIG then
    for b = 0, BANDS - 1 do
      local key, field = band_key_field(rec[1], b)
      remove_packed(key, field, num)
    end
  end
  local me = pack32(num)
  for _, kind_key in ipairs({{'x', rec[2]}, {'u', rec[3]}}) do
    if kind_key[2] ~= ZERO8 then
      local shard = key_shard(kind_key[1], kind_key[2])
      if redis.call('HGET', shard, kind_key[2]) == me then
        redis.call('HDEL', shard, kind_key[2])
      end
    end
  end
  redis.call('HDEL', id_key(num), num % 128)
  local page = math.floor(num / 256)
  redis.call('SETRANGE', page_key(num), (num % 256) * RECLEN, string.rep('\0', RECLEN))
  if redis.call('HINCRBY', P .. 'ix:pages', page, -1) <= 0 then
    redis.call('DEL', page_key(num))
    redis.call('HDEL', P .. 'ix:pages', page)
  end
  redis.call('DECR', P .. 'ix:count')
end

-- Free up to `limit` expired documents, oldest day first. Within a day's list documents
-- are in insertion order, which is clock order for the ingestion clock: stop at the first
-- one still inside the window. (Expired ones behind it already no longer match.)
local function sweep(cutoff, limit)
  local cutoff_day = math.floor(cutoff / 86400)
  while limit > 0 do
    local oldest = redis.call('ZRANGE', P .. 'ix:days', 0, 0)
    if #oldest == 0 or tonumber(oldest[1]) > cutoff_day then return end
    local list = P .. 'ix:t:' .. oldest[1]
    local head = redis.call('LINDEX', list, 0)
    if not head then
      redis.call('ZREM', P .. 'ix:days', oldest[1])
    else
      local rec = read_record(tonumber(head))
      if rec and rec[5] >= cutoff then return end
      redis.call('LPOP', list)
      expire(tonumber(head))
      limit = limit - 1
    end
  end
end

local function original_id(num)
  return redis.call('HGET', id_key(num), num % 128)
end
"""

# ARGV: 1 prefix, 2 mode, 3 job, 4 guard, 5 source, 6 bytes, 7 doc id, 8 content key
#   (8 bytes), 9 URL key (8 bytes or ''), 10 signature (2*num_perm bytes or ''),
#   11 shingles, 12 retention timestamp (s), 13 num_perm, 14 bands, 15 rows, 16 LSH
#   shards, 17 key shards, 18 Jaccard threshold, 19 containment threshold, 20 min
#   shingles, 21 max candidates, 22 retention (s, 0 = forever), 23 sweep limit, 24 docs
#   maxlen, 25 duplicates maxlen, 26 stripped lines, 27 N = number of docs-stream
#   arguments, 28..27+N the docs-stream field/value pairs, then the duplicates-stream pairs.
ACCEPT_DOCUMENT_LUA = (
    _LUA_PRELUDE
    + _LUA_INDEX
    + r"""
local doc_id = ARGV[7]
local ckey = ARGV[8]
local ukey = ARGV[9]
local sig = ARGV[10]
local nsh = tonumber(ARGV[11])
local ts = tonumber(ARGV[12])
local j_threshold = tonumber(ARGV[18])
local c_threshold = tonumber(ARGV[19])
local min_shingles = tonumber(ARGV[20])
local max_candidates = tonumber(ARGV[21])
local retention = tonumber(ARGV[22])
local sweep_limit = tonumber(ARGV[23])
local docs_maxlen = ARGV[24]
local dups_maxlen = ARGV[25]
local stripped = tonumber(ARGV[26])
local ndoc = tonumber(ARGV[27])
local doc_fields, dup_fields = {}, {}
for i = 28, 27 + ndoc do doc_fields[#doc_fields + 1] = ARGV[i] end
for i = 28 + ndoc, #ARGV do dup_fields[#dup_fields + 1] = ARGV[i] end

-- The retention clock only moves forward; documents older than the window stop matching
-- at once and are freed a few per call, so memory stays flat under a steady stream.
local watermark = tonumber(redis.call('HGET', P .. 'ix:meta', 'watermark') or '0')
if ts > watermark then
  watermark = ts
  redis.call('HSET', P .. 'ix:meta', 'watermark', ts)
end
local cutoff = 0
if retention > 0 then
  cutoff = watermark - retention
  sweep(cutoff, sweep_limit)
end

local function duplicate(kind, match, original, similarity, containment)
  if mode ~= 'publish' then return {'skipped', '', original, similarity, containment} end
  for _, v in ipairs({'duplicate_of', original, 'similarity', similarity,
                      'containment', containment, 'kind', kind, 'match', match}) do
    dup_fields[#dup_fields + 1] = v
  end
  local entry = xadd('duplicates', dups_maxlen, dup_fields)
  bump(kind, 1)
  if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, kind, 1) end
  return {kind, entry, original, similarity, containment}
end

local function live(num)
  local rec = read_record(num)
  if rec and rec[5] >= cutoff then return rec end
  return nil
end

-- 1. Exact: the same canonical URL, or the same matching-normalised content.
for _, kind_key in ipairs({{'u', ukey, 'url'}, {'x', ckey, 'content'}}) do
  if kind_key[2] ~= '' then
    local packed = redis.call('HGET', key_shard(kind_key[1], kind_key[2]), kind_key[2])
    if packed then
      local num = u32(packed, 1)
      if live(num) then return duplicate('exact', kind_key[3], original_id(num), '1', '1') end
    end
  end
end

-- 2. Near: LSH candidates, most shared bands first, verified against stored signatures.
local band_keys, band_fields = {}, {}
if sig ~= '' and nsh >= min_shingles then
  for b = 0, BANDS - 1 do band_keys[b], band_fields[b] = band_key_field(sig, b) end
end
if sig ~= '' and nsh >= min_shingles then
  local hits, order = {}, {}
  for b = 0, BANDS - 1 do
    local key, field = band_keys[b], band_fields[b]
    local packed = redis.call('HGET', key, field)
    if packed then
      for k = 1, string.len(packed), 4 do
        local num = u32(packed, k)
        if hits[num] == nil then
          hits[num] = 0
          order[#order + 1] = num
        end
        hits[num] = hits[num] + 1
      end
    end
  end
  table.sort(order, function(a, b)
    if hits[a] ~= hits[b] then return hits[a] > hits[b] end
    return a < b
  end)
  local best, best_score, best_j, best_c = nil, -1, 0, 0
  local mine = {string.byte(sig, 1, SIGLEN)}  -- numbers: no string allocation per value
  for i = 1, math.min(#order, max_candidates) do
    local rec = live(order[i])
    if rec then
      local other, equal = {string.byte(rec[1], 1, SIGLEN)}, 0
      for k = 1, SIGLEN, 2 do
        if mine[k] == other[k] and mine[k + 1] == other[k + 1] then equal = equal + 1 end
      end
      local j = equal / NUM_PERM
      local smaller = math.min(nsh, rec[4])
      local c = 0
      if smaller > 0 then c = math.min(1, (j * (nsh + rec[4]) / (1 + j)) / smaller) end
      if j >= j_threshold or (c >= c_threshold and smaller >= min_shingles) then
        local score = math.max(j, c)
        if score > best_score then best, best_score, best_j, best_c = order[i], score, j, c end
      end
    end
  end
  if best then
    return duplicate('near', 'minhash', original_id(best), string.format('%.4f', best_j),
                     string.format('%.4f', best_c))
  end
end

-- 3. New: index it (unless it is already older than the window) and publish.
if retention == 0 or ts >= cutoff then
  local num = redis.call('INCR', P .. 'ix:next')
  local me = pack32(num)
  local stored_sig = sig
  if sig == '' or nsh < min_shingles then stored_sig = ZERO_SIG end
  local stored_ukey = ukey
  if ukey == '' then stored_ukey = ZERO8 end
  local page = page_key(num)
  if redis.call('EXISTS', page) == 0 then
    -- Allocated once at full size: growing it by SETRANGE would over-allocate by up to 2x.
    redis.call('SET', page, string.rep('\0', 256 * RECLEN))
  end
  redis.call('SETRANGE', page, (num % 256) * RECLEN,
             stored_sig .. ckey .. stored_ukey .. pack32(nsh) .. pack32(ts))
  redis.call('HINCRBY', P .. 'ix:pages', math.floor(num / 256), 1)
  redis.call('HSET', id_key(num), num % 128, doc_id)
  if stored_sig ~= ZERO_SIG then
    for b = 0, BANDS - 1 do
      local key, field = band_keys[b], band_fields[b]
      -- Most buckets are new: one call; a shared bucket appends to its packed list.
      if redis.call('HSETNX', key, field, me) == 0 then
        redis.call('HSET', key, field, redis.call('HGET', key, field) .. me)
      end
    end
  end
  redis.call('HSET', key_shard('x', ckey), ckey, me)
  if ukey ~= '' then redis.call('HSET', key_shard('u', ukey), ukey, me) end
  local day = math.floor(ts / 86400)
  redis.call('RPUSH', P .. 'ix:t:' .. day, num)
  redis.call('ZADD', P .. 'ix:days', day, day)
  redis.call('INCR', P .. 'ix:count')
end
if mode ~= 'publish' then return {'indexed'} end
local entry = xadd('docs', docs_maxlen, doc_fields)
bump('published', 1)
bump('stripped_lines', stripped)
if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, 'published', 1) end
return {'published', entry}
"""
)
