-- GROWING TABLES (workers/index/keys.py): the LSH buckets (l), content keys (x), URL keys
-- (u) and ids (d), each one logical hash over shard hashes. Each call reads a table's
-- shard count once.
local LH_LOAD = 48  -- mean entries per shard: the unsplit ones hold up to twice that
-- Tables start with this many shards (an empty shard costs nothing) and split only past
-- LH_LOAD entries each: a split moves about LH_LOAD / 2 fields, one by one in Lua, which
-- costs a growing index ~0.15 ms per document; below ~4,700 documents the LSH table
-- (42 bands) does not split at all.
local LH_START = {l = 4096, x = 64, u = 64, d = 64}
-- The LSH table's shards are strings of 8-byte entries (field, value), not hashes: a
-- document reads all its bands' shards in one MGET and writes them in one MSET, where
-- hashes would take a command per band (see `lsh_insert` in records.lua).
local LH_STRINGS = {l = true}
local LH_SHARDS, LH_HALF, LH_PREFIX = {}, {}, {}  -- table -> S, 2^L <= S, key prefix

local function lh_state(tbl)
  local shards = LH_SHARDS[tbl]
  if not shards then
    shards = tonumber(redis.call('HGET', K.index_meta, 'shards:' .. tbl) or LH_START[tbl] or 1)
    local half = 1
    while half * 2 <= shards do half = half * 2 end
    LH_SHARDS[tbl], LH_HALF[tbl], LH_PREFIX[tbl] = shards, half, K.table_shard(tbl, '')
  end
  return shards, LH_HALF[tbl]
end

-- The shard key of `field` (at least 4 bytes) in table `tbl`.
local function lh_key(tbl, field)
  local shards, half = lh_state(tbl)
  local h = struct.unpack('>I4', field)
  local shard = h % (2 * half)
  if shard >= shards then shard = h % half end
  return LH_PREFIX[tbl] .. shard
end

-- Split shards until table `tbl` holds at most LH_LOAD entries per shard on average.
local function lh_grow(tbl, entries)
  local shards, half = lh_state(tbl)
  local grown = false
  while shards * LH_LOAD < entries do
    local from, to = LH_PREFIX[tbl] .. (shards - half), LH_PREFIX[tbl] .. shards
    if LH_STRINGS[tbl] then
      local all = redis.call('GET', from) or ''
      local kept, moved = {}, {}
      for k = 1, string.len(all), 8 do
        local entry = string.sub(all, k, k + 7)
        if struct.unpack('>I4', entry) % (2 * half) == shards then
          moved[#moved + 1] = entry
        else
          kept[#kept + 1] = entry
        end
      end
      if #moved > 0 then
        redis.call('APPEND', to, table.concat(moved))
        if #kept > 0 then
          redis.call('SET', from, table.concat(kept))
        else
          redis.call('DEL', from)
        end
      end
    else
      local all = redis.call('HGETALL', from)
      local moved, gone = {}, {}
      for i = 1, #all, 2 do
        if struct.unpack('>I4', all[i]) % (2 * half) == shards then
          moved[#moved + 1], moved[#moved + 2] = all[i], all[i + 1]
          gone[#gone + 1] = all[i]
        end
      end
      if #gone > 0 then
        redis.call('HSET', to, unpack(moved))
        redis.call('HDEL', from, unpack(gone))
      end
    end
    shards = shards + 1
    if shards == 2 * half then half = 2 * half end
    grown = true
  end
  if grown then
    LH_SHARDS[tbl], LH_HALF[tbl] = shards, half
    redis.call('HSET', K.index_meta, 'shards:' .. tbl, shards)
  end
end
