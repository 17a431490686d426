-- Decide, index and publish a chunk's documents, in order (AcceptArgs; KEYS[i] the i-th
-- document's source counters). Uses common.lua, tables.lua, records.lua and facts.lua.
--
-- One call for many documents: what every document would read or write alike (the
-- settings, the tables' sizes, the watermark, the fact generation, the counters, the
-- retention lists and page counts) is read once and written once per call, and the
-- sweep of expired documents runs once, at the end, for all of them. Each document's
-- decision is the one it would get from a call of its own: the documents before it in
-- the chunk are indexed before it is decided, and expired ones stop matching at once,
-- whether or not they were swept yet.
--
-- The decision for an LSH candidate X with estimated Jaccard J and containment C (the
-- candidate's verdict; see bench/NEARDUP_RESEARCH.md for how each part was measured):
--   F = facts_containment; agree / conflict = F >= / < facts_agreement, with at least
--   facts_min_count rare facts on both sides;
--   more than max_gap_hours from X -> duplicate iff J >= stale_threshold and no conflict
--   conflict                       -> not a duplicate (same template, other facts)
--   J >= threshold                 -> duplicate
--   contained, not trimmed         -> PARTIAL
--   agree                          -> duplicate iff J >= facts_threshold or trimmed
--   otherwise                      -> duplicate iff trimmed
-- where contained = C >= containment_threshold and the other text is much longer
-- (LONGER_BY), and a contained text is a trimmed copy
-- when the two start alike: the similarity of their lead signatures (`Fingerprint.lead`,
-- the first 40 shingles) >= lead_agreement. A trimmed wire copy is its original cut
-- short; a round-up or feature that embeds an article starts with something else.
-- A source's own threshold (`SourcePolicy`) replaces threshold, facts_threshold and (when
-- higher) stale_threshold for its documents.
-- Of the candidates that are duplicates, the most similar wins (J, then C); with none,
-- the document is published, and with a PARTIAL candidate it names the most contained
-- one: `partial_of` (the document is inside the longer X) or `contains` (X is inside it).
-- A near-duplicate is indexed too, standing for its original, so a later copy that is
-- closer to an earlier copy than to the original still finds the original.
--
-- UPDATES: a document with the same identity (a feed entry's guid, else its canonical
-- URL: `dedup.identity_key`) as a live published one, whose text or title changed
-- (anything the matching normalisation does not fold away), is published as an update:
-- `update_of` names the version it replaces and `version` counts (2, 3, ...). The same
-- text and title is an exact duplicate (a re-fetch), and so is the text and title of any
-- document already published (an earlier version: a reverted edit, another feed still
-- carrying it). A source whose policy turns updates off keeps the first version only:
-- any re-fetch is an exact duplicate.
--
-- REASON: every docs and duplicates entry gets `reason`, JSON: the rule that decided and
-- the candidates weighed (the best REASON_CANDIDATES by J), each with its verdict
-- (`records.Decision`).
--
-- UNIQUE IDS: consumers key on `id`, and inputs from different files or outlets may share
-- one. A document published as new takes its input's id when no live document of the
-- index holds that id, else the first `<id>~<n>` (n = 2, 3, ...) none holds, with the
-- input's id in the docs field `input_id`. So no two documents published within the
-- retention window (by the retention clock; for ever with retention 0) share an id in
-- `docs`; once its holder has left the window, an id can be given again. A document
-- already outside the window when it arrives (only with the "published" clock) gets a
-- free id but is not indexed, so does not hold it. The id table (d) maps each held id's
-- 8-byte key to its holder, freed with it; the input id's entry also remembers the last
-- suffix given, so the k-th copy of an id costs one probe, not k. Duplicates keep their
-- input's id in `duplicates`, and `duplicate_of` names the original's published id.

local EXACT_URL = '{"rule":"exact-url","candidates":[]}'
local EXACT_CONTENT = '{"rule":"exact-content","candidates":[]}'
local REASON_CANDIDATES = 5
local LONGER_BY = 1.25  -- "much longer": a contained text's container has 25% more shingles
local LOOSE_CONTAINMENT, SHARED_LEAD = 0.6, 0.6

-- The retention clock only moves forward; documents older than the window stop matching
-- at once and are freed a few per document (the sweep at the end), so memory stays flat
-- under a steady stream.
local watermark = tonumber(redis.call('HGET', K.index_meta, 'watermark') or '0')
local watermark_before = watermark
local cutoff = 0

local function live(num)
  local rec = read_record(num)
  if rec and rec.ts >= cutoff then return rec end
  return nil
end

-- Every document's facts were counted by the worker, duplicates included: a wire
-- story's facts become common (facts.lua).
turn_fact_generation()

-- Written once at the end of the call: new documents by retention day, in order; records
-- added per page; the change in live documents (read when first needed).
local day_docs, day_order, page_added, pages_ready = {}, {}, {}, {}
local live_documents, live_added = nil, 0

-- Decide, index and publish one document (D: DocumentArgs).
local function accept(D, source_stats)
  local doc_id = D.doc_id
  local ckey = D.content_key
  local ukey = D.identity_key
  local sig = D.signature
  local nsh = D.shingles
  local ts = D.timestamp
  local hour = D.hour
  local doc_fields, dup_fields = D.doc_fields, D.dup_fields
  local nband = D.buckets_n

  if ts > watermark then watermark = ts end
  if RETENTION_SECONDS > 0 then cutoff = watermark - RETENTION_SECONDS end

  local sketch, fcount = unpack_sketch(D.fact_sketch), D.fact_count
  -- What the decision reads of a candidate, and its reason reports: the rare facts'
  -- agreement (f = facts_containment; 'few' below facts_min_count on either side) and the
  -- hours between the two (0 when either has no hour).
  local function agreement_of(f, rec)
    if f == nil or math.min(fcount, rec.fcount) < FACTS_MIN_COUNT then return 'few' end
    return f >= FACTS_AGREEMENT and 'agree' or 'conflict'
  end
  local function gap_hours(rec)
    if hour > 0 and rec.hour > 0 then return math.abs(hour - rec.hour) end
    return 0
  end
  -- The source's policy (`SourcePolicy.arg`), else the settings'.
  -- A source's own threshold is its bar on every path: the lowered bar of agreeing
  -- facts is the settings' (tuned with their threshold), not a source's own.
  local near_on, threshold, updates_on = true, THRESHOLD, true
  local facts_bar, stale_bar = FACTS_THRESHOLD, STALE_THRESHOLD
  if D.policy ~= '' then
    local p = {}
    for value in string.gmatch(D.policy, '%S+') do p[#p + 1] = tonumber(value) end
    near_on, threshold, updates_on = p[1] == 1, p[2], p[3] == 1
    if threshold ~= THRESHOLD then
      facts_bar, stale_bar = threshold, math.max(STALE_THRESHOLD, threshold)
    end
  end

  -- A story's latest appearance keeps its cluster open for later re-publications.
  local function touch_root(rec)
    local root = rec
    if rec.root ~= rec.num then root = live(rec.root) end
    if root and hour > root.hour then
      local at = (root.num % RECORDS_PER_PAGE) * RECLEN + HOUR_AT
      redis.call('SETRANGE', page_key(root.num), at, pack32(hour))
    end
  end

  local near_ok = near_on and sig ~= '' and nsh >= MIN_SHINGLES
    and nband == BANDS + LEAD_BANDS
  local indexable = not (RETENTION_SECONDS > 0 and ts < cutoff)  -- else already outside the window
  -- The doc number taken while looking up the LSH buckets (step 2), which also inserts the
  -- document's bands: a document with near_ok that is indexed always has one.
  local reserved = nil

  -- Index the document: standing for its original (root, stands_for: the original's id) or
  -- as new (root nil), under its published id `stands_for`, which it then holds.
  local function index_document(root, stands_for, version)
    if not indexable then return end
    local num = reserved or redis.call('INCR', K.index_next)
    local me = pack32(num)
    local stored_sig = sig
    if not near_ok then stored_sig = ZERO_SIG end
    local stored_lead = D.lead
    if not near_ok or stored_lead == '' then stored_lead = ZERO_LEAD end
    local stored_ukey = ukey
    if ukey == '' then stored_ukey = ZERO8 end
    local fsk = {}
    for k = 1, FACTS_K do fsk[k] = pack16(sketch[k] or 0) end
    local page, page_no = page_key(num), math.floor(num / RECORDS_PER_PAGE)
    if not pages_ready[page_no] then
      if redis.call('EXISTS', page) == 0 then
        -- Allocated once at full size: growing it by SETRANGE would over-allocate by up to 2x.
        redis.call('SET', page, string.rep('\0', RECORDS_PER_PAGE * RECLEN))
      end
      pages_ready[page_no] = true
    end
    redis.call('SETRANGE', page, (num % RECORDS_PER_PAGE) * RECLEN,
               stored_sig .. ckey .. stored_ukey .. pack32(nsh) .. pack32(ts) .. pack32(hour)
               .. pack32(root or num) .. pack16(fcount) .. table.concat(fsk) .. stored_lead
               .. D.title_key
               .. pack16(version or 0))
    page_added[page_no] = (page_added[page_no] or 0) + 1
    redis.call('HSET', id_key(num), num % 128, stands_for)
    if not root then
      local field = id_field(stands_for)
      redis.call('HSET', lh_key('d', field), field, me)
    end
    local content_shard = lh_key('x', ckey)
    if version then
      -- An update with the text of the version that holds its content key (only the
      -- headline changed) takes the key: that version is kept findable by its text and
      -- headline together (1b).
      local held = redis.call('HGET', content_shard, ckey)
      local other = held and live(u32(held, 1))
      if other and other.title ~= D.title_key then
        local vkey = version_key(other.ckey, other.title)
        redis.call('HSET', lh_key('x', vkey), vkey, string.sub(held, 1, 4))
      end
    end
    redis.call('HSET', content_shard, ckey, me)
    -- The identity's entry: the document, then the key of the input as read.
    if ukey ~= '' then redis.call('HSET', lh_key('u', ukey), ukey, me .. D.input_key) end
    local day = math.floor(ts / 86400)
    if not day_docs[day] then
      day_docs[day] = {}
      day_order[#day_order + 1] = day
    end
    local listed = day_docs[day]
    listed[#listed + 1] = num
    -- Live documents bound each table's entries (shared buckets and documents without a
    -- signature or URL make fewer): tables grow with the index, never shrink.
    if not live_documents then
      live_documents = tonumber(redis.call('GET', K.index_count) or '0')
    end
    live_added = live_added + 1
    local count = live_documents + live_added
    if near_ok then lh_grow('l', count * (BANDS + LEAD_BANDS)) end
    lh_grow('x', count)
    if ukey ~= '' then lh_grow('u', count) end
    if not root then lh_grow('d', count) end
  end

  -- The id to publish a new document under (UNIQUE IDS).
  local function claim_id()
    local field = id_field(doc_id)
    local shard = lh_key('d', field)
    local held = redis.call('HGET', shard, field)
    if not held or not live(u32(held, 1)) then return doc_id end
    local n = 1
    if string.len(held) >= 8 then n = u32(held, 5) end
    local candidate
    repeat
      n = n + 1
      candidate = doc_id .. '~' .. n
      local other = id_field(candidate)
      local taken = redis.call('HGET', lh_key('d', other), other)
    until not taken or not live(u32(taken, 1))
    redis.call('HSET', shard, field, string.sub(held, 1, 4) .. pack32(n))
    return candidate
  end

  local function duplicate(kind, match, original, similarity, containment, reason)
    if mode ~= 'publish' then
      return {'skipped', '', original, similarity, containment}
    end
    for _, v in ipairs({'duplicate_of', original, 'similarity', similarity,
                        'containment', containment, 'kind', kind, 'match', match,
                        'reason', reason}) do
      dup_fields[#dup_fields + 1] = v
    end
    local entry = xadd(K.duplicates, DUPLICATES_MAXLEN, dup_fields)
    bump(source_stats, kind, 1)
    if job ~= '' then add(K.job(job), kind, 1) end
    return {kind, entry, original, similarity, containment}
  end

  -- 1. The same identity (guid or URL): a re-fetch, or an update (UPDATES).
  local previous = nil  -- the version an update replaces
  if ukey ~= '' then
    local packed = redis.call('HGET', lh_key('u', ukey), ukey)
    local rec = packed and live(u32(packed, 1))
    if rec then
      -- The same input read again (its cleaned text may differ: lines learned since
      -- strip more of it now), or the same text and headline.
      local reread = D.input_key ~= '' and string.sub(packed, 5) == D.input_key
      local same = reread or (rec.ckey == ckey and rec.title == D.title_key)
      if same or not updates_on then
        touch_root(rec)
        return duplicate('exact', 'url', original_id(rec.num), '1', '1', EXACT_URL)
      elseif rec.root == rec.num then
        previous = rec
      end
      -- Else it stands for another document's original: its own text was never
      -- published, so the changed text is judged as any other.
    end
  end

  -- 1b. An earlier version again (another feed still carrying it, a reverted edit): the
  -- same text and headline as a document already published is no update.
  if previous then
    local packed = redis.call('HGET', lh_key('x', ckey), ckey)
    local rec = packed and live(u32(packed, 1))
    if rec and rec.title ~= D.title_key then
      -- A later version took the content key with another headline (index_document).
      local vkey = version_key(ckey, D.title_key)
      packed = redis.call('HGET', lh_key('x', vkey), vkey)
      rec = packed and live(u32(packed, 1))
    end
    if rec and rec.ckey == ckey and rec.title == D.title_key then
      touch_root(rec)
      return duplicate('exact', 'content', original_id(rec.num), '1', '1', EXACT_CONTENT)
    end
  end

  -- 2. The same content (after matching normalisation), under another identity.
  if not previous then
    local packed = redis.call('HGET', lh_key('x', ckey), ckey)
    local rec = packed and live(u32(packed, 1))
    if rec then
      touch_root(rec)
      return duplicate('exact', 'content', original_id(rec.num), '1', '1', EXACT_CONTENT)
    end
  end

  -- 3. Near: LSH candidates, most shared bands first, verified against stored signatures.
  -- Not an exact duplicate, so the document will be indexed (as new, or standing for its
  -- original): its bands go in while they are looked up, in one read and one write.
  local weighed = {}  -- {rec, j, c, f, verdict}: every live candidate verified
  local best, best_j, best_c, best_rule = nil, 0, 0, nil
  local partial, partial_score = nil, -1
  if near_ok then
    local hits, order = {}, {}
    local me
    if indexable then
      reserved = redis.call('INCR', K.index_next)
      me = pack32(reserved)
    end
    -- The bucket fields come from the worker (`lsh_bucket_fields`: the same hash as
    -- bucket_field, which `expire` uses on stored signatures): the signature's bands, then
    -- the lead signature's (a short trimmed copy shares its original's lead).
    local fields = {}
    for b = 1, BANDS + LEAD_BANDS do fields[b] = ARGV[D.buckets_at + b - 1] end
    lsh_lookup_insert(fields, me, function(num)
      if hits[num] == nil then
        hits[num] = 0
        order[#order + 1] = num
      end
      hits[num] = hits[num] + 1
    end)
    if previous then order = {} end  -- an update: its links are to its earlier version
    table.sort(order, function(a, b)
      if hits[a] ~= hits[b] then return hits[a] > hits[b] end
      return a < b
    end)
    local best_score = -1
    local mine = {string.byte(sig, 1, SIGLEN)}  -- numbers: no string allocation per value
    for i = 1, math.min(#order, MAX_CANDIDATES) do
      local rec = live(order[i])
      if rec then
        local j = signature_similarity(mine, rec.sig, NUM_PERM)
        local smaller = math.min(nsh, rec.nsh)
        local c = 0
        if smaller > 0 then c = math.min(1, (j * (nsh + rec.nsh) / (1 + j)) / smaller) end
        -- Contained: most of the shorter text inside a much longer one (similar lengths
        -- with C that high have J >= 2/3: the J bar decides those).
        local inside = smaller >= MIN_SHINGLES and math.max(nsh, rec.nsh) >= LONGER_BY * smaller
        local contained = inside and c >= CONTAINMENT_THRESHOLD
        local trimmed = false
        if inside and c >= LOOSE_CONTAINMENT then
          local alike = lead_similarity(D.lead, rec.lead) or 0
          -- The containment of a short text in a long one is estimated from J, loosely:
          -- a shared lead stands in for part of that evidence.
          trimmed = (contained and alike >= LEAD_AGREEMENT) or alike >= SHARED_LEAD
        end
        local f = facts_containment(sketch, fcount, rec.sketch, rec.fcount)
        local facts = agreement_of(f, rec)
        local agree, conflict = facts == 'agree', facts == 'conflict'
        local far_apart = MAX_GAP_HOURS > 0 and gap_hours(rec) > MAX_GAP_HOURS
        local verdict, rule = 'below-threshold', nil
        if far_apart then
          if j >= stale_bar and not conflict then
            verdict, rule = 'duplicate', 'near-stale'
          else
            verdict = 'time-gap'
          end
        elseif conflict then
          verdict = 'facts-conflict'
        elseif j >= threshold then
          verdict, rule = 'duplicate', 'near-jaccard'
        elseif contained and not trimmed then
          -- Inside a text that starts otherwise: a part of it, however well the facts
          -- agree (a round-up holds all of its item's facts).
          verdict = 'contains'
          if nsh < rec.nsh then verdict = 'partial_of' end
        elseif agree and j >= facts_bar then
          verdict, rule = 'duplicate', 'near-facts'
        elseif trimmed then
          verdict, rule = 'duplicate', 'near-contained'
        end
        weighed[#weighed + 1] = {rec, j, c, f, verdict}
        -- The most similar qualifying candidate wins: a high containment alone also
        -- matches a short piece that a compilation happens to include.
        if rule and j + c / 1000 > best_score then
          best, best_score, best_j, best_c, best_rule = rec, j + c / 1000, j, c, rule
        end
        local part = verdict == 'partial_of' or verdict == 'contains'
        if part and c + j / 1000 > partial_score then
          partial, partial_score = #weighed, c + j / 1000
        end
      end
    end
  end

  -- The decision's reason (REASON), its candidates by J, best first.
  local function reason(rule)
    if #weighed == 0 then return '{"rule":"' .. rule .. '","candidates":[]}' end
    table.sort(weighed, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[1].num < b[1].num
    end)
    -- Each published id once: several indexed copies may stand for one original.
    local parts, listed = {}, {}
    for i = 1, #weighed do
      if #parts == REASON_CANDIDATES then break end
      local w = weighed[i]
      local rec, f = w[1], w[4]
      local id = original_id(rec.num) or ''
      if not listed[id] then
        listed[id] = true
        parts[#parts + 1] = string.format(
          '{"id":%s,"j":%.4f,"c":%.4f,"facts":"%s","f":%.4f,"rare":[%d,%d],"gap_h":%d,'
            .. '"verdict":"%s"}',
          cjson.encode(id), w[2], w[3], agreement_of(f, rec), f or -1, fcount, rec.fcount,
          gap_hours(rec), w[5])
      end
    end
    return '{"rule":"' .. rule .. '","candidates":[' .. table.concat(parts, ',') .. ']}'
  end

  if best then
    local original = original_id(best.num)
    touch_root(best)
    index_document(best.root, original)
    return duplicate('near', 'minhash', original, string.format('%.4f', best_j),
                     string.format('%.4f', best_c), reason(best_rule))
  end

  -- 4. New (an update, a partial): index it and publish, under an id no live document
  -- holds.
  local published_id = doc_id
  if mode == 'publish' then published_id = claim_id() end
  local version = nil
  if previous then version = math.max(previous.version, 1) + 1 end
  index_document(nil, published_id, version)
  if mode ~= 'publish' then return {'indexed', '', '', '0', '0'} end
  if published_id ~= doc_id then
    doc_fields[2] = published_id  -- the docs-stream fields start with id (DocumentArgs)
    doc_fields[#doc_fields + 1] = 'input_id'
    doc_fields[#doc_fields + 1] = doc_id
  end
  local rule, relation, linked = 'new', '', ''
  if previous then
    rule = 'update'
    local j = 0
    if sig ~= '' and previous.sig ~= ZERO_SIG then
      j = signature_similarity({string.byte(sig, 1, SIGLEN)}, previous.sig, NUM_PERM)
    end
    weighed = {{previous, j, 0, nil, 'earlier-version'}}
    relation, linked = 'update_of', original_id(previous.num)
    for _, v in ipairs({'update_of', linked, 'version', version}) do
      doc_fields[#doc_fields + 1] = v
    end
    bump(source_stats, 'updates', 1)
  elseif partial then
    local w = weighed[partial]
    rule, relation, linked = 'partial', w[5], original_id(w[1].num)
    doc_fields[#doc_fields + 1] = relation  -- 'partial_of' or 'contains'
    doc_fields[#doc_fields + 1] = linked
    bump(source_stats, 'partials', 1)
  elseif not near_on then
    rule = 'near-off'
  end
  doc_fields[#doc_fields + 1] = 'reason'
  doc_fields[#doc_fields + 1] = reason(rule)
  local entry = xadd(K.docs, DOCS_MAXLEN, doc_fields)
  bump(source_stats, 'published', 1)
  bump(source_stats, 'stripped_lines', D.stripped)
  if job ~= '' then add(K.job(job), 'published', 1) end
  return {'published', entry, linked, '0', '0', relation}
end

local replies = {}
at = A.documents_at
for i = 1, A.documents_n do
  local D
  D, at = read_documents(at)
  if first_time(D.guard) then
    count_input(KEYS[i], D.source, D.bytes_in)
    replies[i] = accept(D, KEYS[i])
  else
    replies[i] = {'already'}
  end
end

-- What the documents added up, then the sweep: after the page counts it decrements.
if watermark > watermark_before then
  redis.call('HSET', K.index_meta, 'watermark', watermark)
end
for _, day in ipairs(day_order) do
  redis.call('RPUSH', K.retention_day(day), unpack(day_docs[day]))
  redis.call('ZADD', K.retention_days, day, day)
end
for page_no, n in pairs(page_added) do
  redis.call('HINCRBY', K.record_pages, page_no, n)
end
if live_added > 0 then redis.call('INCRBY', K.index_count, live_added) end
if RETENTION_SECONDS > 0 then
  sweep(watermark - RETENTION_SECONDS, SWEEP_LIMIT * A.documents_n)
end
flush_counts()
return replies
