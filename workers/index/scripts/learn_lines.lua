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
-- `Keys.learner_keys` (meta, counts, lines). LearnArgs: each of A.count documents is its
-- source, k, then k pairs (line hash, line text). Returns the number of documents counted.
local function prune(counts, learned, bucket)
  local flat = redis.call('HGETALL', counts)
  for i = 1, #flat, 2 do
    local v = tonumber(flat[i + 1])
    local count, born = v % LEARNER_SPLIT, math.floor(v / LEARNER_SPLIT)
    if count + born <= bucket then
      redis.call('HDEL', counts, flat[i])
      redis.call('HDEL', learned, flat[i])
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
    local v = redis.call('HINCRBY', counts, line, 1)
    if v == 1 and bucket > 1 then
      v = redis.call('HINCRBY', counts, line, (bucket - 1) * LEARNER_SPLIT)
    end
    if v % LEARNER_SPLIT >= A.text_at then redis.call('HSETNX', learned, line, text) end
  end
  if docs % A.width == 0 then prune(counts, learned, bucket) end
end
return A.count
