-- The index's records (RECORD in workers/index/keys.py), their pages and ids, the byte
-- helpers, the LSH bucket field, and freeing documents past the retention window.
-- Uses tables.lua.

local SIGLEN = 2 * NUM_PERM
local LEADLEN = 2 * LEAD_PERM
local RECLEN = SIGLEN + 40 + 2 * FACTS_K + LEADLEN
local HOUR_AT = SIGLEN + 24  -- 0-based offset of the hour field in a record
local LEAD_AT = SIGLEN + 34 + 2 * FACTS_K  -- 0-based offset of the lead signature
local ZERO8 = string.rep('\0', 8)
local ZERO_SIG = string.rep('\0', SIGLEN)
local ZERO_LEAD = string.rep('\0', LEADLEN)

local function u16(s, i)
  local a, b = string.byte(s, i, i + 1)
  return a * 256 + b
end

local function u32(s, i)
  local a, b, c, d = string.byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function pack16(n)
  return string.char(math.floor(n / 256) % 256, n % 256)
end

local function pack32(n)
  n = math.floor(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                     math.floor(n / 256) % 256, n % 256)
end

-- A band's bucket field: a polynomial hash of the band number and its 16-bit values
-- (exact in Lua's doubles: h < 2^32, so h * 31337 < 2^47), 4 bytes. It also picks the
-- shard. Candidates are verified against stored signatures, so a rare collision costs a
-- check, not a decision. Bands `first`, first + 1, ... take `rows` values each of
-- `values`: the signature's bands are numbered from 0, the lead signature's after them.
local function bucket_field(values, band, rows, first)
  local start = (band - first) * rows * 2 + 1
  local h = band * 2654435 + 7
  for r = 0, rows - 1 do
    h = (h * 31337 + u16(values, start + 2 * r)) % 4294967296
  end
  return pack32(h)
end

-- Every bucket field of a stored record's signature and lead signature.
local function record_fields(sig, lead)
  local fields = {}
  for b = 0, BANDS - 1 do fields[b + 1] = bucket_field(sig, b, ROWS, 0) end
  if lead ~= ZERO_LEAD then
    for b = 0, LEAD_BANDS - 1 do
      fields[BANDS + b + 1] = bucket_field(lead, BANDS + b, LEAD_ROWS, BANDS)
    end
  end
  return fields
end

-- The LSH table (l): shard strings of 8-byte entries, a bucket field then a doc number,
-- one entry per document in the bucket. Each function takes one document's bucket
-- fields, reads their shards in one MGET and writes the changed ones in one MSET (two
-- bands may share a shard: each sees the other's change).

-- The positions in `shard` of its entries that start with `prefix` (a bucket field, or a
-- whole entry): a match straddling two entries is none.
local function entries_starting(shard, prefix)
  local init = 1
  return function()
    while true do
      local at = string.find(shard, prefix, init, true)
      if not at then return nil end
      if (at - 1) % 8 == 0 then
        init = at + 8
        return at
      end
      init = at + 1
    end
  end
end

-- The shards of buckets `fields`, read in one MGET: get(b) / set(b, value) band b's
-- shard, as changed so far; write() stores the changed ones in one MSET (and deletes
-- the emptied).
local function lsh_shards(fields)
  local keys = {}
  for b = 1, #fields do keys[b] = lh_key('l', fields[b]) end
  local read, now, changed = redis.call('MGET', unpack(keys)), {}, {}
  local shards = {}
  function shards.get(b) return now[keys[b]] or read[b] or '' end
  function shards.set(b, value)
    local key = keys[b]
    now[key] = value
    if not changed[key] then
      changed[key] = true
      changed[#changed + 1] = key
    end
  end
  function shards.write()
    local args, empty = {}, {}
    for _, key in ipairs(changed) do
      if now[key] == '' then
        empty[#empty + 1] = key
      else
        args[#args + 1], args[#args + 2] = key, now[key]
      end
    end
    if #args > 0 then redis.call('MSET', unpack(args)) end
    if #empty > 0 then redis.call('DEL', unpack(empty)) end
  end
  return shards
end

-- Calls found(num) for every entry of band b's bucket, for b = 1..#fields, then,
-- with `me` (a packed doc number), adds an entry for it to each bucket.
local function lsh_lookup_insert(fields, me, found)
  local shards = lsh_shards(fields)
  for b = 1, #fields do
    local shard = shards.get(b)
    for at in entries_starting(shard, fields[b]) do found(u32(shard, at + 4)) end
    if me then shards.set(b, shard .. fields[b] .. me) end
  end
  shards.write()
end

-- Removes doc `num`'s entry from each of the buckets `fields`.
local function lsh_remove(fields, num)
  local shards, me = lsh_shards(fields), pack32(num)
  for b = 1, #fields do
    local shard = shards.get(b)
    local at = entries_starting(shard, fields[b] .. me)()
    if at then shards.set(b, string.sub(shard, 1, at - 1) .. string.sub(shard, at + 8)) end
  end
  shards.write()
end

local function page_key(num) return K.record_page(math.floor(num / RECORDS_PER_PAGE)) end
local function id_key(num) return K.id_block(math.floor(num / 128)) end

-- An id's field in the id table (d): the first 8 bytes of its SHA-1. Two ids sharing them
-- (about one pair in 2^64) only cost the later one a needless suffix (UNIQUE IDS).
local function id_field(id)
  return (string.gsub(string.sub(redis.sha1hex(id), 1, 16), '..', function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- A live record (see RECORD in the module docstring), or nil once freed.
local function read_record(num)
  local offset = (num % RECORDS_PER_PAGE) * RECLEN
  local rec = redis.call('GETRANGE', page_key(num), offset, offset + RECLEN - 1)
  if string.len(rec) < RECLEN then return nil end
  local ts = u32(rec, SIGLEN + 21)
  if ts == 0 then return nil end
  local fcount = u16(rec, SIGLEN + 33)
  local sketch = {}
  for k = 1, math.min(fcount, FACTS_K) do sketch[k] = u16(rec, SIGLEN + 33 + 2 * k) end
  local tail = LEAD_AT + LEADLEN
  return {num = num, sig = string.sub(rec, 1, SIGLEN),
          ckey = string.sub(rec, SIGLEN + 1, SIGLEN + 8),
          ukey = string.sub(rec, SIGLEN + 9, SIGLEN + 16), nsh = u32(rec, SIGLEN + 17), ts = ts,
          hour = u32(rec, SIGLEN + 25), root = u32(rec, SIGLEN + 29), fcount = fcount,
          sketch = sketch, lead = string.sub(rec, LEAD_AT + 1, tail),
          title = string.sub(rec, tail + 1, tail + 4), version = u16(rec, tail + 5)}
end

-- Estimated Jaccard similarity of two MinHash signatures of `n` u16 values: the share of
-- equal values. `mine` is the first one's bytes ({string.byte(...)}, so that a caller
-- comparing one signature with many unpacks it once), `other` the second, packed.
local function signature_similarity(mine, other, n)
  local theirs, equal = {string.byte(other, 1, 2 * n)}, 0
  for k = 1, 2 * n, 2 do
    if mine[k] == theirs[k] and mine[k + 1] == theirs[k + 1] then equal = equal + 1 end
  end
  return equal / n
end

-- Estimated Jaccard similarity of two texts' leads, from their lead signatures
-- (`Fingerprint.lead`); nil when either has none.
local function lead_similarity(a, b)
  if a == '' or b == '' or a == ZERO_LEAD or b == ZERO_LEAD then return nil end
  return signature_similarity({string.byte(a, 1, LEADLEN)}, b, LEAD_PERM)
end

-- The key of one version's text and headline together, in the content-key table (x):
-- an update that changes only the headline takes its text's content key, and the version
-- it displaced stays findable under this key (UPDATES in accept_documents.lua).
local function version_key(ckey, title_key)
  local hex = string.sub(redis.sha1hex('version:' .. ckey .. title_key), 1, 16)
  return (string.gsub(hex, '..', function(h) return string.char(tonumber(h, 16)) end))
end

-- Free every trace of one indexed document.
local function expire(num)
  local rec = read_record(num)
  if not rec then return end
  if rec.sig ~= ZERO_SIG then lsh_remove(record_fields(rec.sig, rec.lead), num) end
  local me = pack32(num)
  local keys = {{'x', rec.ckey}, {'u', rec.ukey}}
  -- Only a document with an identity can be an earlier version.
  if rec.ukey ~= ZERO8 then keys[3] = {'x', version_key(rec.ckey, rec.title)} end
  for _, kind_key in ipairs(keys) do
    if kind_key[2] ~= ZERO8 then
      local shard = lh_key(kind_key[1], kind_key[2])
      local holder = redis.call('HGET', shard, kind_key[2])
      -- An identity's entry goes on with the input's key (accept_documents.lua).
      if holder and string.sub(holder, 1, 4) == me then
        redis.call('HDEL', shard, kind_key[2])
      end
    end
  end
  if rec.root == num then  -- published as new: it holds its id (UNIQUE IDS)
    local id = redis.call('HGET', id_key(num), num % 128)
    if id then
      local field = id_field(id)
      local shard = lh_key('d', field)
      local held = redis.call('HGET', shard, field)
      if held and u32(held, 1) == num then redis.call('HDEL', shard, field) end
    end
  end
  redis.call('HDEL', id_key(num), num % 128)
  local page = math.floor(num / RECORDS_PER_PAGE)
  redis.call('SETRANGE', page_key(num), (num % RECORDS_PER_PAGE) * RECLEN,
             string.rep('\0', RECLEN))
  if redis.call('HINCRBY', K.record_pages, page, -1) <= 0 then
    redis.call('DEL', page_key(num))
    redis.call('HDEL', K.record_pages, page)
  end
  redis.call('DECR', K.index_count)
end

-- Free up to `limit` expired documents, oldest day first. Within a day's list documents
-- are in insertion order, which is clock order for the ingestion clock: stop at the first
-- one still inside the window. (Expired ones behind it already no longer match.)
local function sweep(cutoff, limit)
  local cutoff_day = math.floor(cutoff / 86400)
  while limit > 0 do
    local oldest = redis.call('ZRANGE', K.retention_days, 0, 0)
    if #oldest == 0 or tonumber(oldest[1]) > cutoff_day then return end
    local list = K.retention_day(oldest[1])
    local head = redis.call('LINDEX', list, 0)
    if not head then
      redis.call('ZREM', K.retention_days, oldest[1])
    else
      local rec = read_record(tonumber(head))
      if rec and rec.ts >= cutoff then return end
      redis.call('LPOP', list)
      expire(tonumber(head))
      limit = limit - 1
    end
  end
end

-- The id a record stands for: its own, or its original's for an indexed near-duplicate.
local function original_id(num)
  return redis.call('HGET', id_key(num), num % 128)
end
