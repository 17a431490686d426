-- The rare facts of a document and how far two documents' facts agree. Uses records.lua.

-- Document frequency of facts: two strings of 2^FACTS_BITS u8 counters (a one-row
-- count-min sketch: a collision can only make a rare fact look common, and then for every
-- document alike), K.fact_counts for the current generation and K.fact_counts_before for
-- the one before. The worker counts a chunk's facts there with plain BITFIELD commands,
-- before the chunk's scripts run (`index.dedup`), and decides which facts are rare from
-- the counts it gets back: BITFIELD called from Lua costs several times the counting
-- itself, in its arguments alone. The script gets the document's rare facts only (their
-- bottom-FACTS_K sketch and their number), and turns the generations over: the counts
-- are those of the last one or two, so an endless stream neither saturates the counters
-- nor remembers forever.

-- Start a new generation once the current one has counted FACTS_GENERATION documents
-- (the worker adds a chunk's documents to df_docs as it counts them, so a generation
-- ends at the first chunk boundary past that).
local function turn_fact_generation()
  if FACTS_GENERATION <= 0 then return end
  local meta = K.index_meta
  local docs = tonumber(redis.call('HGET', meta, 'df_docs') or '0')
  if docs < FACTS_GENERATION then return end
  local gen = tonumber(redis.call('HGET', meta, 'df_generation') or '0')
  redis.call('DEL', K.fact_counts_before)
  -- The worker creates the new current table before it counts there (`index.dedup`).
  if redis.call('EXISTS', K.fact_counts) == 1 then
    redis.call('RENAME', K.fact_counts, K.fact_counts_before)
  end
  redis.call('HSET', meta, 'df_generation', gen + 1, 'df_previous_docs', docs, 'df_docs', 0)
end

-- The packed sketch (ascending u16 hashes) as a table of numbers.
local function unpack_sketch(packed)
  local sketch = {}
  for k = 1, string.len(packed) / 2 do sketch[k] = u16(packed, 2 * k - 1) end
  return sketch
end

-- Share of the smaller rare-fact set found in the other, from the two bottom-k sketches
-- (exact while both sets fit in FACTS_K); nil when either side has none.
local function facts_containment(a, na, b, nb)
  if na == 0 or nb == 0 then return nil end
  local ta, tb = 65535, 65535
  if na > #a then ta = a[#a] end
  if nb > #b then tb = b[#b] end
  local tau = math.min(ta, tb)
  local small, large = a, b
  if nb < na then small, large = b, a end
  local present = {}
  for _, h in ipairs(large) do present[h] = true end
  local sampled, found = 0, 0
  for _, h in ipairs(small) do
    if h <= tau then
      sampled = sampled + 1
      if present[h] then found = found + 1 end
    end
  end
  if sampled == 0 then return nil end
  return found / sampled
end
