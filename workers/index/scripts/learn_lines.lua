-- Counts the learnable lines of documents that were kept (not duplicates), per source,
-- with lossy counting (Manku & Motwani 2002) so memory stays bounded on an endless stream:
-- every A.width documents of a source, lines whose count + born <= the current bucket are
-- dropped. A counter packs count + born * LEARNER_SPLIT, `born` being the bucket before
-- the one the line was first seen in. A line counted in at least max(min_docs,
-- min_share * docs) documents is marked in the source's lines hash (its text, for
-- display); a dropped line is forgotten there too.
--
-- KEYS: the sources set (`Keys.learner_sources`), then per document its source's
-- `Keys.learner_keys` (meta, counts, lines). LearnArgs: each of A.count documents is its
-- source, k, then k pairs (line hash, line text). Returns the number of documents counted.
local function prune(meta, counts, learned, bucket)
  local flat = redis.call('HGETALL', counts)
  local forgotten = 0
  for i = 1, #flat, 2 do
    local v = tonumber(flat[i + 1])
    local count, born = v % LEARNER_SPLIT, math.floor(v / LEARNER_SPLIT)
    if count + born <= bucket then
      redis.call('HDEL', counts, flat[i])
      forgotten = forgotten + redis.call('HDEL', learned, flat[i])
    end
  end
  if forgotten > 0 then redis.call('HINCRBY', meta, 'version', 1) end
end

local pos = A.documents_at
for d = 1, A.count do
  local source, k = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  local meta, counts, learned = KEYS[3 * d - 1], KEYS[3 * d], KEYS[3 * d + 1]
  redis.call('SADD', KEYS[1], source)
  local docs = redis.call('HINCRBY', meta, 'docs', 1)
  local bucket = math.ceil(docs / A.width)
  local bar = math.max(A.min_docs, A.min_share * docs)
  for _ = 1, k do
    local line, text = ARGV[pos], ARGV[pos + 1]
    pos = pos + 2
    local v = redis.call('HINCRBY', counts, line, 1)
    if v == 1 and bucket > 1 then
      v = redis.call('HINCRBY', counts, line, (bucket - 1) * LEARNER_SPLIT)
    end
    if v % LEARNER_SPLIT >= bar and redis.call('HSETNX', learned, line, text) == 1 then
      redis.call('HINCRBY', meta, 'version', 1)
    end
  end
  if docs % A.width == 0 then prune(meta, counts, learned, bucket) end
end
return A.count
