-- The rare facts of a document and how far two documents' facts agree. Uses records.lua.

-- Document frequency of facts: one string per generation of 2^FACTS_BITS u8 counters
-- (a one-row count-min sketch: a collision can only make a rare fact look common, and
-- then for every document alike). The counts are those of the last one or two
-- generations, so an endless stream neither saturates the sketch nor remembers forever.
-- A byte is enough: the counters saturate at 255 (OVERFLOW SAT) and no fact counted
-- RARE_CAP times is rare, however many documents there are.
--
-- The worker sends each fact twice: its 2-byte hash in one string (ascending), and its
-- counter's BITFIELD operation as four arguments, 'INCRBY' 'u8' '#<cell>' '1', at the end
-- of ARGV. The operations go to BITFIELD straight from ARGV: building them here cost
-- several times the counting itself.
local FACT_CHUNK = 1000  -- facts per BITFIELD call: unpack's stack limit is 8000 values
local RARE_CAP = 250  -- below the saturated 255, so a saturated counter is never rare

-- Counts of ARGV's facts (operations from ARGV[first]) in the current generation's table,
-- incremented by one, plus their counts in the previous table when there is one.
local function count_facts(gen, previous, first, nfacts)
  local counts = {}
  local table_key = K.fact_table(gen)
  if redis.call('EXISTS', table_key) == 0 then
    -- Allocated once at full size: BITFIELD growing it would over-allocate by up to 2x.
    redis.call('SET', table_key, string.rep('\0', 2 ^ FACTS_BITS))
  end
  for lo = 0, nfacts - 1, FACT_CHUNK do
    local hi = math.min(nfacts, lo + FACT_CHUNK) - 1
    local values = redis.call('BITFIELD', table_key, 'OVERFLOW', 'SAT',
                              unpack(ARGV, first + 4 * lo, first + 4 * hi + 3))
    for i = 1, #values do counts[lo + i] = values[i] - 1 end
    if previous > 0 then
      local gets, n = {}, 0
      for i = lo, hi do
        gets[n + 1], gets[n + 2], gets[n + 3] = 'GET', 'u8', ARGV[first + 4 * i + 2]
        n = n + 3
      end
      local old = redis.call('BITFIELD_RO', K.fact_table(gen - 1), unpack(gets))
      for i = 1, #old do counts[lo + i] = counts[lo + i] + old[i] end
    end
  end
  return counts
end

-- The document's rare facts, decided from the counts of the documents before it, then
-- counted itself: (bottom-FACTS_K sketch of their hashes, their number, the indexes of
-- facts too common to ever be rare under the returned tag, the tag).
local function rare_facts(hashes, first)
  local meta = K.index_meta
  local state = redis.call('HMGET', meta, 'df_generation', 'df_docs', 'df_previous_docs')
  local gen = tonumber(state[1] or '0')
  local docs, previous = tonumber(state[2] or '0'), tonumber(state[3] or '0')
  if FACTS_GENERATION > 0 and docs >= FACTS_GENERATION then
    redis.call('DEL', K.fact_table(gen - 1))
    gen, previous, docs = gen + 1, docs, 0
    redis.call('HSET', meta, 'df_generation', gen, 'df_previous_docs', previous)
  end
  redis.call('HSET', meta, 'df_docs', docs + 1)
  local limit = math.min(RARE_CAP, math.max(RARE_FLOOR, RARE_RATIO * (docs + previous)))
  -- The limit only grows within a generation, but stays below the next power of two
  -- for a while: a fact counted at least that often is common for as long as the
  -- generation and that power last. The tag names both; the worker stops sending the
  -- reported facts while it holds, which spares most of the counting.
  local bound = 1
  while bound <= limit do bound = bound * 2 end
  local tag = gen .. ':' .. bound
  local nfacts = string.len(hashes) / 2
  if nfacts == 0 then return {}, 0, '', tag end
  local counts = count_facts(gen, previous, first, nfacts)
  local sketch, count, last, common = {}, 0, -1, {}
  for i = 1, nfacts do  -- ascending: the worker sorted them
    if counts[i] <= limit then
      local h = u16(hashes, 2 * i - 1)
      if h ~= last then
        last = h
        count = count + 1
        if count <= FACTS_K then sketch[count] = h end
      end
    elseif counts[i] >= bound and i <= 65536 then
      common[#common + 1] = pack16(i - 1)
    end
  end
  return sketch, math.min(count, 65535), table.concat(common), tag
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
