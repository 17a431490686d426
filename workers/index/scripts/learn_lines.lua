-- Counts the learnable lines of documents that were kept (not duplicates), per source,
-- with lossy counting (Manku & Motwani 2002) so memory stays bounded on an endless stream:
-- every A.width documents of a source, lines whose count + born <= the current bucket are
-- dropped. A counter packs count + born * LEARNER_SPLIT, `born` being the bucket before
-- the one the line was first seen in. Whether a line is learned is decided in Python
-- (`learner.is_learned`, on these counters); the lines hash only keeps the text of every
-- line counted A.text_at times (all that can ever be learned), for display, and forgets
-- it with the counter.
--
-- KEYS: the sources set (`Keys.learner_sources`), then per document its source's
-- `Keys.learner_keys` (meta, the counter shards' prefix, lines). LearnArgs: each of
-- A.count documents is its source, k, then k pairs (line hash as 8 bytes, line text).
-- Returns the number of documents counted.

-- A line hash's counter shard (`learner_shard` in workers/index/keys.py; a line hash is
-- its 8 bytes here): `counts` is the shards' common prefix.
local function shard_key(counts, line)
  return counts .. (string.byte(line, 1) % LEARNER_SHARDS)
end

local function prune(counts, learned, bucket)
  for shard = 0, LEARNER_SHARDS - 1 do
    local key = counts .. shard
    local flat = redis.call('HGETALL', key)
    local gone = {}
    for i = 1, #flat, 2 do
      local v = tonumber(flat[i + 1])
      local count, born = v % LEARNER_SPLIT, math.floor(v / LEARNER_SPLIT)
      if count + born <= bucket then gone[#gone + 1] = flat[i] end
    end
    if #gone > 0 then
      redis.call('HDEL', key, unpack(gone))
      redis.call('HDEL', learned, unpack(gone))
    end
  end
end

local pos = A.documents_at
for d = 1, A.count do
  local source, k = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  local meta, counts, learned = KEYS[3 * d - 1], KEYS[3 * d], KEYS[3 * d + 1]
  redis.call('SADD', KEYS[1], source)
  local docs = redis.call('HINCRBY', meta, 'docs', 1)
  local bucket = math.ceil(docs / A.width)
  for _ = 1, k do
    local line, text = ARGV[pos], ARGV[pos + 1]
    pos = pos + 2
    local shard = shard_key(counts, line)
    local v = redis.call('HINCRBY', shard, line, 1)
    if v == 1 and bucket > 1 then
      v = redis.call('HINCRBY', shard, line, (bucket - 1) * LEARNER_SPLIT)
    end
    if v % LEARNER_SPLIT >= A.text_at then redis.call('HSETNX', learned, line, text) end
  end
  if docs % A.width == 0 then prune(counts, learned, bucket) end
end
return A.count
