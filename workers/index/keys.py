"""Every Redis key name and Lua script newsdedup uses. Nothing else builds key names.

Layout under the configured prefix P (default "newsdedup:"):

  P docs | P duplicates | P dead      output streams
  P stats                             hash: global counters (seen, published, exact, near, ...)
  P stats:dead_reasons                hash: dead-letter reason -> count
  P stats:m:<minute>                  hash: published/exact/near/dead counted in one minute
                                      (unix time // 60, Redis server clock); expires after
                                      RATE_BUCKET_TTL (rates over 1/5/15 minutes)
  P ix:meta                           hash: index parameters (refuse to mix schemes), watermark
  P ix:next / P ix:count              counters: last doc number given out / docs indexed now
  P ix:r:<n // 256>                   string: fixed-size records of 256 docs (see RECORD below)
  P ix:pages                          hash: record page -> live docs in it (free empty pages)
  P ix:i:<n // 128>                   hash: doc number -> the id it stands for (its own, or
                                      its original's for an indexed near-duplicate)
  P ix:l:<shard>                      hash: LSH bucket (4-byte hash of band number and the
                                      band's values) -> packed 4-byte doc numbers
  P ix:x:<shard> / P ix:u:<shard>     hash: 8-byte content / canonical-URL key -> doc number
  P ix:d:<shard>                      hash: 8-byte id key (SHA-1 of a published id) -> the
                                      doc number holding it (u32), then, once the id was
                                      given again with a suffix, the last suffix (u32):
                                      see "UNIQUE IDS" at ACCEPT_DOCUMENT_LUA
                                      (l, x, u and d are GROWING TABLES, below)
  P ix:t:<day>                        list: doc numbers whose retention clock falls on <day>
  P ix:days                           sorted set: days with a list, oldest first
  P ix:df:<generation>                string: document frequency of facts, a table of
                                      2^facts_bits u8 counters (BITFIELD, saturating)
  P src:names:stats                   set: source names counted (to enumerate src:<s>:stats)
  P src:names:bp                      set: source names the boilerplate learner has counted
  P src:<s>:stats                     hash: the global counters, for one source
  P src:<s>:bp                        hash: docs (documents counted), version (bumped
                                      whenever a line is learned or forgotten)
  P src:<s>:bp:c                      hash: line hash -> counter (see LEARN_LINES_LUA)
  P src:<s>:bp:l                      hash: learned line hash -> the line's text
  P job:<job>                         hash: one backfill/poll job's totals and counters
                                      (published, exact, near, dead, dead:<reason>)
  P job:<job>:done                    sorted set: input refs already accounted for
                                      (redelivery guard), scored by when (server time)
  P job:<job>:tasks                   set: task indexes finished
  P jobs                              sorted set: job ids by creation time
  P feeds                             set: keys of the feeds polled so far (see feed_key)
  P feed:<feed>                       hash: one feed's poll state and status (url, etag,
                                      last_modified, last_polled, last_status, ...)
  P feed:<feed>:lock                  string: the poll task holding the feed (one at a time)
  P feed:<feed>:tries                 hash: entry key -> failed article fetches so far
  P job:feed-<feed> / ...:done        a feed's outcome counters / entries accounted for
                                      (a feed is one never-ending job; trimmed by age)
  P poll:<task id>                    hash: one poll's state and report (for `newsdedup poll`)
  P host:<host>                       string: held while a request to <host> runs and for
                                      the politeness delay after it
  P beat:lock                         string: the one running beat (refuses a second)
  P probe                             string: written (and expiring at once) to find out
                                      whether Redis takes writes (`stats`, `--wait`)

SOURCES: a source name comes from the input (a record's `source`), so it is never pasted
into a key name: <s> is `source_tag(name)`, 32 hex digits of its BLAKE2b-128 digest. No
name can then reach a key of another kind or another source's keys (`sources`, `x:c`,
`*`, newlines: all become 32 hex digits), and key names stay short whatever the name's
length. The names themselves are kept as members of the src:names sets, for display.
The scripts receive per-source keys built here (KEYS), never build them from a name.
Keys of the layout before this one (P stats:sources, P stats:source:<name>, P bp:*) are
never read or written; `newsdedup reset` deletes them.

RECORD (2*num_perm + 66 bytes), one fixed slot per document in its page string:
  signature       2*num_perm   high 16 bits of each MinHash value, big-endian
  content key     8            first 8 bytes of the content hash
  URL key         8            of the canonical URL; zeros when there is none
  shingles        u32          distinct shingles
  timestamp       u32          retention clock, seconds; 0 marks a free slot
  hour            u32          hours since the epoch of the document (published, else
                               ingested); an original's is moved forward by its copies
  root            u32          doc number of the original this record stands for
  facts count     u16          distinct rare facts (hashes)
  facts sketch    16 x u16     the smallest rare-fact hashes, ascending, zero-padded
Fixed-size slots in page strings cost no per-key overhead.

GROWING TABLES: the LSH buckets (l), content keys (x), URL keys (u) and ids (d) are each one
logical hash spread over shard hashes small enough for Redis's compact listpack encoding
(up to 128 entries by default; a shard past it converts for good and costs ~5x per
entry). The number of shards grows with the index by linear hashing (Litwin 1980): with S
shards (meta field `shards:<table>`) and 2^L <= S < 2^(L+1), a field whose first four
bytes read h (big-endian) lives in shard h mod 2^(L+1), or h mod 2^L when that is >= S.
When the table's entries pass LH_LOAD per shard, shard S - 2^L is split: the fields with
h mod 2^(L+1) = S move to the new shard S. Each split moves about LH_LOAD / 2 fields,
so the work is spread evenly over inserts and a small index has few keys; the field alone
says where it lives, so no stored value has to be re-read to move it.

OWNED KEYS: `newsdedup reset` deletes only keys of the families above (and Celery's
queue keys, also under P), matched exactly (`Keys.owns`): another deployment whose prefix
merely starts with P (P = "nd:", its own "nd:b:") keeps its keys. The one overlap left is a
prefix that continues P with one of these names ("nd:ix:" under "nd:"): do not choose one.

Redis Cluster is not supported: the scripts touch keys they discover while running.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

STREAM_NAMES = ("docs", "duplicates", "dead")
JOB_TTL_SECONDS = 7 * 24 * 3600
# Rates over the last minutes are reported for these; the outcomes (all but "seen") are
# also counted per minute (P stats:m:<minute>). Every input counted ends in exactly one
# outcome, so "seen" is their sum and costs the per-document script nothing more.
RATE_KINDS = ("seen", "published", "exact", "near", "dead")
MINUTE_KINDS = RATE_KINDS[1:]
# A minute's bucket lives this long after its first count: the 15-minute window reads
# the current minute and the 15 before it.
RATE_BUCKET_TTL = 20 * 60


def source_tag(source: str) -> str:
    """The fixed-length stand-in for a source name in key names (see SOURCES above): 32
    lowercase hex digits, so no name can produce another kind of key."""
    name = source.encode("utf-8", "surrogatepass")  # any str, even one from a bad file name
    return hashlib.blake2b(name, digest_size=16).hexdigest()


# Redis's glob (SCAN MATCH) treats these as patterns unless escaped with a backslash.
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def glob_escape(text: str) -> str:
    """`text` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


# Job ids (`jobs.new_job_id`, and `polling.feed_job` for a feed's never-ending job), feed
# keys (`polling.feed_key`) and poll task ids (uuid4), as key names hold them.
_JOB_ID = rb"(?:\d{8}T\d{6}-[0-9a-f]{6}|feed-[0-9a-f]{16})"
_FEED = rb"[0-9a-f]{16}"
_TASK_ID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Every key name newsdedup writes under its prefix, without the prefix (module docstring:
# the layout, OWNED KEYS), Celery/kombu's queue keys included.
_OWNED = re.compile(
    rb"|".join(
        [
            rb"docs|duplicates|dead|stats|stats:dead_reasons|stats:m:\d+",
            rb"ix:(?:meta|next|count|pages|days)|ix:[rilxudt]:\d+|ix:df:\d+",
            rb"src:names:(?:stats|bp)|src:[0-9a-f]{32}:(?:stats|bp|bp:c|bp:l)",
            rb"jobs|job:" + _JOB_ID + rb"(?::done|:tasks|:attempts|:cursor)?",
            rb"feeds|feed:" + _FEED + rb"(?::lock|:tries)?|poll:" + _TASK_ID,
            rb"host:.+|beat:lock|probe",
            # The layout before SOURCES: never used, deleted by `reset`.
            rb"stats:sources|stats:source:.*|bp:.*",
            # Celery's queues (celery_app's INGEST_QUEUE, FETCH_QUEUE; kombu adds a
            # separator and a digit for priorities) and kombu's bookkeeping.
            rb"(?:ingest|fetch)(?:\x06\x16\d)?|_kombu\..+|unacked|unacked_index|unacked_mutex",
        ]
    ),
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def owns(self, key: bytes | str) -> bool:
        """Whether `key` is one newsdedup writes under this prefix (OWNED KEYS)."""
        raw = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
        head = self.prefix.encode("utf-8")
        return raw.startswith(head) and _OWNED.fullmatch(raw, len(head)) is not None

    def _pattern(self, glob: str) -> str:
        """A SCAN MATCH pattern: the prefix taken literally, then `glob`."""
        return glob_escape(self.prefix) + glob

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
        return f"{self.prefix}src:{source_tag(source)}:stats"

    @property
    def dead_reasons(self) -> str:
        return f"{self.prefix}stats:dead_reasons"

    @property
    def sources(self) -> str:
        """Set: the names of the sources with counters (`source_stats`)."""
        return f"{self.prefix}src:names:stats"

    def stats_minute(self, minute: int) -> str:
        """The counts of one minute (unix time // 60 on the Redis server's clock)."""
        return f"{self.prefix}stats:m:{minute}"

    @property
    def index_meta(self) -> str:
        return f"{self.prefix}ix:meta"

    @property
    def index_count(self) -> str:
        return f"{self.prefix}ix:count"

    @property
    def index_pattern(self) -> str:
        return self._pattern("ix:*")

    @property
    def learner_sources(self) -> str:
        """Set: the names of the sources the boilerplate learner has counted."""
        return f"{self.prefix}src:names:bp"

    def learner_meta(self, source: str) -> str:
        return f"{self.prefix}src:{source_tag(source)}:bp"

    def learner_counts(self, source: str) -> str:
        return f"{self.prefix}src:{source_tag(source)}:bp:c"

    def learner_lines(self, source: str) -> str:
        return f"{self.prefix}src:{source_tag(source)}:bp:l"

    def learner_keys(self, source: str) -> tuple[str, str, str]:
        """A source's learner keys as LEARN_LINES_LUA takes them: meta, counts, lines."""
        return self.learner_meta(source), self.learner_counts(source), self.learner_lines(source)

    @property
    def learner_patterns(self) -> tuple[str, ...]:
        """SCAN patterns covering every learner key (the sources set included), and the
        previous layout's (P bp:*)."""
        return self._pattern("src:*:bp*"), self._pattern("bp:*")

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def job_done(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:done"

    def job_tasks(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:tasks"

    def job_attempts(self, job_id: str) -> str:
        """Hash: task index -> how many times that batch has been started."""
        return f"{self.prefix}job:{job_id}:attempts"

    def job_cursor(self, job_id: str) -> str:
        """Hash: task index -> the input a careful run of that batch is working on (JSON)."""
        return f"{self.prefix}job:{job_id}:cursor"

    @property
    def feeds(self) -> str:
        return f"{self.prefix}feeds"

    def feed(self, feed: str) -> str:
        return f"{self.prefix}feed:{feed}"

    def feed_lock(self, feed: str) -> str:
        return f"{self.prefix}feed:{feed}:lock"

    def feed_tries(self, feed: str) -> str:
        return f"{self.prefix}feed:{feed}:tries"

    def poll(self, task_id: str) -> str:
        return f"{self.prefix}poll:{task_id}"

    def host_gate(self, host: str) -> str:
        return f"{self.prefix}host:{host}"

    @property
    def beat_lock(self) -> str:
        return f"{self.prefix}beat:lock"

    @property
    def write_probe(self) -> str:
        """A short-lived string written to find out whether Redis takes writes."""
        return f"{self.prefix}probe"

    @property
    def all_pattern(self) -> str:
        return self._pattern("*")


# Arguments per fact operation: see `fact_operation`.
FACT_OPERATION_ARGS = 4


def fact_operation(cell: int) -> tuple[bytes, bytes, bytes, bytes]:
    """The BITFIELD operation that counts a fact in its frequency counter `cell` (the index
    script passes these from its arguments to BITFIELD as they are)."""
    return (b"INCRBY", b"u8", b"#%d" % cell, b"1")


def lsh_bucket_fields(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The LSH bucket field of every band of every signature (uint16 array, one row each),
    as the index script's `band_field` computes it from a stored signature: uint32 of
    shape (signatures, bands). The script relies on the two agreeing (tests/test_index.py
    checks they do)."""
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    band = np.arange(bands, dtype=np.uint64)
    h = np.broadcast_to(band * np.uint64(2654435) + np.uint64(7), values.shape[:2]).copy()
    modulus = np.uint64(1 << 32)
    for row in range(rows):  # h < 2^32, so h * 31337 + v < 2^47: exact in uint64
        h = (h * np.uint64(31337) + values[:, :, row]) % modulus
    fields: np.ndarray = h.astype(np.uint32)
    return fields


_OPERATION_HEAD = np.frombuffer(b"$6\r\nINCRBY\r\n$2\r\nu8\r\n$", dtype=np.uint8)
_OPERATION_TAIL = np.frombuffer(b"\r\n$1\r\n1\r\n", dtype=np.uint8)
_CELL_DIGITS = 8  # cells are below 2^24


def packed_fact_operations(cells: np.ndarray) -> tuple[bytes, np.ndarray]:
    """`fact_operation` of every cell, packed in the Redis protocol as
    `connection.packed_arguments` would, all at once: the bytes, and each operation's
    length in them. Per-fact work in Python cost more than the index's work on them."""
    cells = cells.astype(np.int64)
    if len(cells) and (cells.min() < 0 or cells.max() >= 10**_CELL_DIGITS):
        raise ValueError("fact cells must be below 10^8")
    digits = np.ones(len(cells), dtype=np.int64)
    for power in range(1, _CELL_DIGITS):
        digits += cells >= 10**power
    head, tail = len(_OPERATION_HEAD), len(_OPERATION_TAIL)
    width = head + 4 + _CELL_DIGITS + tail  # head, length digit, CR LF #, digits, tail
    rows = np.empty((len(cells), width), dtype=np.uint8)
    rows[:, :head] = _OPERATION_HEAD
    rows[:, head] = ord("1") + digits  # the length of "#<cell>": 2..9, one digit
    rows[:, head + 1 : head + 4] = np.frombuffer(b"\r\n#", dtype=np.uint8)
    first_digit = head + 4
    for k in range(_CELL_DIGITS):  # right-aligned; the unused leading columns are dropped
        rows[:, first_digit + k] = ord("0") + cells // 10 ** (_CELL_DIGITS - 1 - k) % 10
    rows[:, first_digit + _CELL_DIGITS :] = _OPERATION_TAIL
    keep = np.ones((len(cells), width), dtype=bool)
    columns = np.arange(_CELL_DIGITS)
    keep[:, first_digit : first_digit + _CELL_DIGITS] = columns >= (_CELL_DIGITS - digits)[:, None]
    return rows[keep].tobytes(), width - _CELL_DIGITS + digits


# Shared Lua: the redelivery guard and the counters every outcome updates.
# KEYS[1] is the source's counters (`Keys.source_stats`); ARGV[5] its name, only ever a
# member of the sources set, never part of a key name (SOURCES above).
# A task redelivered after a crash (acks_late) re-runs its inputs; ZADD NX on the job's
# done set makes each input count and publish at most once per job. The score (server
# time) lets a never-ending job, a feed, forget entries by age.
# The outcome (MINUTE_KINDS) also goes to the current minute's bucket (server clock, so
# every worker on every machine adds to the same one): one HINCRBY per document, and an
# EXPIRE only when it is the first of its kind in the bucket.
_LUA_PRELUDE = (
    r"""
local P = ARGV[1]
-- 'publish': decide, index, publish, count. 'rebuild': only (re)index a published doc.
local mode = ARGV[2]
local job = ARGV[3]
local guard = ARGV[4]
local source = ARGV[5]
local source_stats = KEYS[1]
local nbytes = tonumber(ARGV[6])
"""
    + f"local RATE_TTL = {RATE_BUCKET_TTL}\n"
    + f"local MINUTE_KINDS = {{{', '.join(f'{kind} = true' for kind in MINUTE_KINDS)}}}\n"
    + r"""
local clock
local function server_time()
  if not clock then clock = redis.call('TIME') end
  return clock
end

local function bump(field, by)
  if mode ~= 'publish' then return end
  redis.call('HINCRBY', P .. 'stats', field, by)
  redis.call('HINCRBY', source_stats, field, by)
  if MINUTE_KINDS[field] then
    local minute = P .. 'stats:m:' .. math.floor(tonumber(server_time()[1]) / 60)
    if redis.call('HINCRBY', minute, field, by) == by then
      redis.call('EXPIRE', minute, RATE_TTL)
    end
  end
end

local function xadd(stream, maxlen, fields)
  if tonumber(maxlen) > 0 then
    return redis.call('XADD', P .. stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  end
  return redis.call('XADD', P .. stream, '*', unpack(fields))
end

if job ~= '' then
  if redis.call('ZADD', P .. 'job:' .. job .. ':done', 'NX', server_time()[1], guard) == 0 then
    return {'already'}
  end
end
if mode == 'publish' then redis.call('SADD', P .. 'src:names:stats', source) end
bump('seen', 1)
bump('bytes_in', nbytes)
"""
)

# KEYS: 1 the source's counters. ARGV: 1 prefix, 2 mode, 3 job, 4 guard, 5 source, 6 bytes,
#       7 maxlen, 8 reason, then the dead stream's field/value pairs.
RECORD_DEAD_LUA = (
    _LUA_PRELUDE
    + r"""
local maxlen = ARGV[7]
local reason = ARGV[8]
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
bump('dead', 1)
redis.call('HINCRBY', P .. 'stats:dead_reasons', reason, 1)
if job ~= '' then
  redis.call('HINCRBY', P .. 'job:' .. job, 'dead', 1)
  redis.call('HINCRBY', P .. 'job:' .. job, 'dead:' .. reason, 1)
end
local entry = xadd('dead', maxlen, fields)
return {'dead', entry}
"""
)

# The index itself. Everything below works from the stored record, so Python and Lua
# never have to agree on a second hash function: bucket fields and shards are derived
# here from the signature bytes.
#
# ARGV[7] of ACCEPT_DOCUMENT_LUA holds the index settings as one space-separated string
# (built once per process by `DedupIndex`; one argument instead of twenty per document),
# in this order:
INDEX_SETTINGS = (
    "num_perm",
    "bands",
    "rows",
    "threshold",  # J bar when the facts do not settle it
    "containment_threshold",
    "min_shingles",
    "max_candidates",
    "retention_seconds",  # 0 = forever
    "sweep_limit",
    "docs_maxlen",
    "duplicates_maxlen",
    "facts_threshold",  # J bar when the rare facts agree
    "facts_agreement",  # share of the smaller rare-fact set found in the other
    "facts_min_count",  # rare facts needed on both sides for agreement or conflict
    "max_gap_hours",  # 0 = no time condition
    "stale_threshold",  # J bar beyond max_gap_hours
    "rare_floor",
    "rare_ratio",  # a fact is rare when its document frequency <= max(floor, ratio * N)
    "facts_bits",
    "facts_generation",  # documents per frequency-table generation; 0 = one forever
)

_LUA_INDEX = r"""
local CFG = {}
for value in string.gmatch(ARGV[7], '%S+') do CFG[#CFG + 1] = tonumber(value) end
local NUM_PERM, BANDS, ROWS = CFG[1], CFG[2], CFG[3]
local J_WEAK, C_MIN, MIN_SHINGLES, MAX_CANDIDATES = CFG[4], CFG[5], CFG[6], CFG[7]
local RETENTION, SWEEP_LIMIT, DOCS_MAXLEN, DUPS_MAXLEN = CFG[8], CFG[9], CFG[10], CFG[11]
local J_LO, F_MIN, N_MIN, MAX_GAP, J_STALE = CFG[12], CFG[13], CFG[14], CFG[15], CFG[16]
local RARE_FLOOR, RARE_RATIO, FACTS_BITS, FACTS_GENERATION = CFG[17], CFG[18], CFG[19], CFG[20]
local SIGLEN = 2 * NUM_PERM
local FACTS_K = 16
local RECLEN = SIGLEN + 34 + 2 * FACTS_K
local HOUR_AT = SIGLEN + 24  -- 0-based offset of the hour field in a record
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

local function pack16(n)
  return string.char(math.floor(n / 256) % 256, n % 256)
end

local function pack32(n)
  n = math.floor(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                     math.floor(n / 256) % 256, n % 256)
end

-- GROWING TABLES (module docstring). Each call reads a table's shard count once.
local LH_LOAD = 48  -- mean entries per shard: the unsplit ones hold up to twice that
-- Tables start with this many shards (an empty shard costs nothing) and split only past
-- LH_LOAD entries each: a split moves about LH_LOAD / 2 fields, one by one in Lua, which
-- costs a growing index ~0.15 ms per document; below ~4,700 documents the LSH table
-- (42 bands) does not split at all.
local LH_START = {l = 4096, x = 64, u = 64, d = 64}
local LH_SHARDS, LH_HALF, LH_PREFIX = {}, {}, {}  -- table -> S, 2^L <= S, key prefix

local function lh_state(tbl)
  local shards = LH_SHARDS[tbl]
  if not shards then
    shards = tonumber(redis.call('HGET', P .. 'ix:meta', 'shards:' .. tbl) or LH_START[tbl] or 1)
    local half = 1
    while half * 2 <= shards do half = half * 2 end
    LH_SHARDS[tbl], LH_HALF[tbl], LH_PREFIX[tbl] = shards, half, P .. 'ix:' .. tbl .. ':'
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
    shards = shards + 1
    if shards == 2 * half then half = 2 * half end
    grown = true
  end
  if grown then
    LH_SHARDS[tbl], LH_HALF[tbl] = shards, half
    redis.call('HSET', P .. 'ix:meta', 'shards:' .. tbl, shards)
  end
end

-- A band's bucket field: a polynomial hash of the band number and its 16-bit values
-- (exact in Lua's doubles: h < 2^32, so h * 31337 < 2^47), 4 bytes. It also picks the
-- shard. Candidates are verified against stored signatures, so a rare collision costs a
-- check, not a decision.
local function band_field(sig, band)
  local start = band * ROWS * 2 + 1
  local h = band * 2654435 + 7
  for r = 0, ROWS - 1 do
    h = (h * 31337 + u16(sig, start + 2 * r)) % 4294967296
  end
  return pack32(h)
end

local function band_key_field(sig, band)
  local field = band_field(sig, band)
  return lh_key('l', field), field
end

local function page_key(num) return P .. 'ix:r:' .. math.floor(num / 256) end
local function id_key(num) return P .. 'ix:i:' .. math.floor(num / 128) end

-- An id's field in the id table (d): the first 8 bytes of its SHA-1. Two ids sharing them
-- (about one pair in 2^64) only cost the later one a needless suffix (UNIQUE IDS).
local function id_field(id)
  return (string.gsub(string.sub(redis.sha1hex(id), 1, 16), '..', function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

-- A live record (see RECORD in the module docstring), or nil once freed.
local function read_record(num)
  local offset = (num % 256) * RECLEN
  local rec = redis.call('GETRANGE', page_key(num), offset, offset + RECLEN - 1)
  if string.len(rec) < RECLEN then return nil end
  local ts = u32(rec, SIGLEN + 21)
  if ts == 0 then return nil end
  local fcount = u16(rec, SIGLEN + 33)
  local sketch = {}
  for k = 1, math.min(fcount, FACTS_K) do sketch[k] = u16(rec, SIGLEN + 33 + 2 * k) end
  return {num = num, sig = string.sub(rec, 1, SIGLEN),
          ckey = string.sub(rec, SIGLEN + 1, SIGLEN + 8),
          ukey = string.sub(rec, SIGLEN + 9, SIGLEN + 16), nsh = u32(rec, SIGLEN + 17), ts = ts,
          hour = u32(rec, SIGLEN + 25), root = u32(rec, SIGLEN + 29), fcount = fcount,
          sketch = sketch}
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
  if rec.sig ~= ZERO_SIG then
    for b = 0, BANDS - 1 do
      local key, field = band_key_field(rec.sig, b)
      remove_packed(key, field, num)
    end
  end
  local me = pack32(num)
  for _, kind_key in ipairs({{'x', rec.ckey}, {'u', rec.ukey}}) do
    if kind_key[2] ~= ZERO8 then
      local shard = lh_key(kind_key[1], kind_key[2])
      if redis.call('HGET', shard, kind_key[2]) == me then
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
  local table_key = P .. 'ix:df:' .. gen
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
      local old = redis.call('BITFIELD_RO', P .. 'ix:df:' .. (gen - 1), unpack(gets))
      for i = 1, #old do counts[lo + i] = counts[lo + i] + old[i] end
    end
  end
  return counts
end

-- The document's rare facts, decided from the counts of the documents before it, then
-- counted itself: (bottom-FACTS_K sketch of their hashes, their number, the indexes of
-- facts too common to ever be rare under the returned tag, the tag).
local function rare_facts(hashes, first)
  local meta = P .. 'ix:meta'
  local state = redis.call('HMGET', meta, 'df_generation', 'df_docs', 'df_previous_docs')
  local gen = tonumber(state[1] or '0')
  local docs, previous = tonumber(state[2] or '0'), tonumber(state[3] or '0')
  if FACTS_GENERATION > 0 and docs >= FACTS_GENERATION then
    redis.call('DEL', P .. 'ix:df:' .. (gen - 1))
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
"""


# KEYS: 1 the source's counters (`Keys.source_stats`).
# ARGV: 1 prefix, 2 mode, 3 job, 4 guard, 5 source, 6 bytes, 7 index settings (see
#   INDEX_SETTINGS), 8 doc id, 9 content key (8 bytes), 10 URL key (8 bytes or ''),
#   11 signature (2*num_perm bytes or ''), 12 shingles, 13 retention timestamp (s),
#   14 hour, 15 fact hashes (2 bytes each, ascending), 16 stripped lines, 17 N = number
#   of docs-stream arguments, 18 M = number of duplicates-stream arguments, 19 B = number
#   of LSH bucket fields (bands, or 0 without a signature), 20..19+N the docs-stream
#   field/value pairs (starting with id, which the script may change: UNIQUE IDS), then M
#   duplicates-stream ones, then the B bucket fields
#   (`lsh_bucket_fields`), then each fact's frequency-counter operation
#   (4 arguments, see `fact_operation`), in hash order.
#
# The decision for an LSH candidate X with estimated Jaccard J and containment C
# (see bench/NEARDUP_RESEARCH.md for how each part was measured):
#   F = facts_containment; agree / conflict = F >= / < facts_agreement, with at least
#   facts_min_count rare facts on both sides;
#   more than max_gap_hours from X -> duplicate iff J >= stale_threshold and no conflict
#   conflict                       -> not a duplicate (same template, other facts)
#   agree                          -> J >= facts_threshold or contained
#   otherwise                      -> J >= threshold or contained
# A near-duplicate is indexed too, standing for its original, so a later copy that is
# closer to an earlier copy than to the original still finds the original.
#
# UNIQUE IDS: consumers key on `id`, and inputs from different files or outlets may share
# one. A document published as new takes its input's id when no live document of the
# index holds that id, else the first `<id>~<n>` (n = 2, 3, ...) none holds, with the
# input's id in the docs field `input_id`. So no two documents published within the
# retention window (by the retention clock; for ever with retention 0) share an id in
# `docs`; once its holder has left the window, an id can be given again. A document
# already outside the window when it arrives (only with the "published" clock) gets a
# free id but is not indexed, so does not hold it. The id table (d) maps each held id's
# 8-byte key to its holder, freed with it; the input id's entry also remembers the last
# suffix given, so the k-th copy of an id costs one probe, not k. Duplicates keep their
# input's id in `duplicates`, and `duplicate_of` names the original's published id.
ACCEPT_DOCUMENT_LUA = (
    _LUA_PRELUDE
    + _LUA_INDEX
    + r"""
local doc_id = ARGV[8]
local ckey = ARGV[9]
local ukey = ARGV[10]
local sig = ARGV[11]
local nsh = tonumber(ARGV[12])
local ts = tonumber(ARGV[13])
local hour = tonumber(ARGV[14])
local fact_hashes = ARGV[15]
local stripped = tonumber(ARGV[16])
local ndoc, ndup, nband = tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19])
local doc_fields, dup_fields = {}, {}
for i = 20, 19 + ndoc do doc_fields[#doc_fields + 1] = ARGV[i] end
for i = 20 + ndoc, 19 + ndoc + ndup do dup_fields[#dup_fields + 1] = ARGV[i] end
local band_first = 20 + ndoc + ndup

-- The retention clock only moves forward; documents older than the window stop matching
-- at once and are freed a few per call, so memory stays flat under a steady stream.
local watermark = tonumber(redis.call('HGET', P .. 'ix:meta', 'watermark') or '0')
if ts > watermark then
  watermark = ts
  redis.call('HSET', P .. 'ix:meta', 'watermark', ts)
end
local cutoff = 0
if RETENTION > 0 then
  cutoff = watermark - RETENTION
  sweep(cutoff, SWEEP_LIMIT)
end

local function live(num)
  local rec = read_record(num)
  if rec and rec.ts >= cutoff then return rec end
  return nil
end

-- Every document is counted, duplicates included: a wire story's facts become common.
local sketch, fcount, common, facts_tag = rare_facts(fact_hashes, band_first + nband)

-- A story's latest appearance keeps its cluster open for later re-publications.
local function touch_root(rec)
  local root = rec
  if rec.root ~= rec.num then root = live(rec.root) end
  if root and hour > root.hour then
    redis.call('SETRANGE', page_key(root.num), (root.num % 256) * RECLEN + HOUR_AT,
               pack32(hour))
  end
end

local near_ok = sig ~= '' and nsh >= MIN_SHINGLES and nband == BANDS
local indexable = not (RETENTION > 0 and ts < cutoff)  -- else already outside the window
-- The doc number taken while looking up the LSH buckets (step 2), which also inserts the
-- document's bands: a document with near_ok that is indexed always has one.
local reserved = nil

-- Index the document: standing for its original (root, stands_for: the original's id) or
-- as new (root nil), under its published id `stands_for`, which it then holds.
local function index_document(root, stands_for)
  if not indexable then return end
  local num = reserved or redis.call('INCR', P .. 'ix:next')
  local me = pack32(num)
  local stored_sig = sig
  if not near_ok then stored_sig = ZERO_SIG end
  local stored_ukey = ukey
  if ukey == '' then stored_ukey = ZERO8 end
  local fsk = {}
  for k = 1, FACTS_K do fsk[k] = pack16(sketch[k] or 0) end
  local page = page_key(num)
  if redis.call('EXISTS', page) == 0 then
    -- Allocated once at full size: growing it by SETRANGE would over-allocate by up to 2x.
    redis.call('SET', page, string.rep('\0', 256 * RECLEN))
  end
  redis.call('SETRANGE', page, (num % 256) * RECLEN,
             stored_sig .. ckey .. stored_ukey .. pack32(nsh) .. pack32(ts) .. pack32(hour)
             .. pack32(root or num) .. pack16(fcount) .. table.concat(fsk))
  redis.call('HINCRBY', P .. 'ix:pages', math.floor(num / 256), 1)
  redis.call('HSET', id_key(num), num % 128, stands_for)
  if not root then
    local field = id_field(stands_for)
    redis.call('HSET', lh_key('d', field), field, me)
  end
  redis.call('HSET', lh_key('x', ckey), ckey, me)
  if ukey ~= '' then redis.call('HSET', lh_key('u', ukey), ukey, me) end
  local day = math.floor(ts / 86400)
  redis.call('RPUSH', P .. 'ix:t:' .. day, num)
  redis.call('ZADD', P .. 'ix:days', day, day)
  -- Live documents bound each table's entries (shared buckets and documents without a
  -- signature or URL make fewer): tables grow with the index, never shrink.
  local count = redis.call('INCR', P .. 'ix:count')
  if near_ok then lh_grow('l', count * BANDS) end
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

local function duplicate(kind, match, original, similarity, containment)
  if mode ~= 'publish' then
    return {'skipped', '', original, similarity, containment, common, facts_tag}
  end
  for _, v in ipairs({'duplicate_of', original, 'similarity', similarity,
                      'containment', containment, 'kind', kind, 'match', match}) do
    dup_fields[#dup_fields + 1] = v
  end
  local entry = xadd('duplicates', DUPS_MAXLEN, dup_fields)
  bump(kind, 1)
  if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, kind, 1) end
  return {kind, entry, original, similarity, containment, common, facts_tag}
end

-- 1. Exact: the same canonical URL, or the same matching-normalised content.
for _, kind_key in ipairs({{'u', ukey, 'url'}, {'x', ckey, 'content'}}) do
  if kind_key[2] ~= '' then
    local packed = redis.call('HGET', lh_key(kind_key[1], kind_key[2]), kind_key[2])
    if packed then
      local rec = live(u32(packed, 1))
      if rec then
        touch_root(rec)
        return duplicate('exact', kind_key[3], original_id(rec.num), '1', '1')
      end
    end
  end
end

-- 2. Near: LSH candidates, most shared bands first, verified against stored signatures.
-- Not an exact duplicate, so the document will be indexed (as new, or standing for its
-- original): its bands go in while they are looked up. A lookup and an insert each scan
-- the compact shard; most buckets are new, and HSETNX alone does both.
if near_ok then
  local hits, order = {}, {}
  local me
  if indexable then
    reserved = redis.call('INCR', P .. 'ix:next')
    me = pack32(reserved)
  end
  for b = 0, BANDS - 1 do
    -- The bucket fields come from the worker (`lsh_bucket_fields`: the same hash as
    -- band_field, which `expire` uses on stored signatures).
    local field, packed = ARGV[band_first + b], nil
    local key = lh_key('l', field)
    if not me then
      packed = redis.call('HGET', key, field)
    elseif redis.call('HSETNX', key, field, me) == 0 then
      packed = redis.call('HGET', key, field)
      redis.call('HSET', key, field, packed .. me)
    end
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
  for i = 1, math.min(#order, MAX_CANDIDATES) do
    local rec = live(order[i])
    if rec then
      local other, equal = {string.byte(rec.sig, 1, SIGLEN)}, 0
      for k = 1, SIGLEN, 2 do
        if mine[k] == other[k] and mine[k + 1] == other[k + 1] then equal = equal + 1 end
      end
      local j = equal / NUM_PERM
      local smaller = math.min(nsh, rec.nsh)
      local c = 0
      if smaller > 0 then c = math.min(1, (j * (nsh + rec.nsh) / (1 + j)) / smaller) end
      local contained = c >= C_MIN and smaller >= MIN_SHINGLES
      local f = facts_containment(sketch, fcount, rec.sketch, rec.fcount)
      local enough = f ~= nil and math.min(fcount, rec.fcount) >= N_MIN
      local agree, conflict = enough and f >= F_MIN, enough and f < F_MIN
      local dup
      if MAX_GAP > 0 and hour > 0 and rec.hour > 0 and math.abs(hour - rec.hour) > MAX_GAP then
        dup = j >= J_STALE and not conflict
      elseif conflict then
        dup = false
      elseif agree then
        dup = j >= J_LO or contained
      else
        dup = j >= J_WEAK or contained
      end
      -- The most similar qualifying candidate wins: a high containment alone also
      -- matches a short piece that a compilation happens to include.
      if dup and j + c / 1000 > best_score then
        best, best_score, best_j, best_c = rec, j + c / 1000, j, c
      end
    end
  end
  if best then
    local original = original_id(best.num)
    touch_root(best)
    index_document(best.root, original)
    return duplicate('near', 'minhash', original, string.format('%.4f', best_j),
                     string.format('%.4f', best_c))
  end
end

-- 3. New: index it and publish, under an id no live document holds.
local published_id = doc_id
if mode == 'publish' then published_id = claim_id() end
index_document(nil, published_id)
if mode ~= 'publish' then return {'indexed', '', '', '0', '0', common, facts_tag} end
if published_id ~= doc_id then
  doc_fields[2] = published_id  -- the docs-stream fields start with id (see ARGV)
  doc_fields[#doc_fields + 1] = 'input_id'
  doc_fields[#doc_fields + 1] = doc_id
end
local entry = xadd('docs', DOCS_MAXLEN, doc_fields)
bump('published', 1)
bump('stripped_lines', stripped)
if job ~= '' then redis.call('HINCRBY', P .. 'job:' .. job, 'published', 1) end
return {'published', entry, '', '0', '0', common, facts_tag}
"""
)


# ---------------------------------------------------------------------------- write probe

# KEYS[1] the write probe; ARGV[1] padding, never stored. A write that arrives with as many
# bytes as a worker's chunk of script calls: Redis counts a command's arguments against
# maxmemory while it runs it, so a bare SET can pass while the workers' writes are refused.
PROBE_WRITE_LUA = r"""
redis.call('SET', KEYS[1], '1', 'PX', 1000)
return 1
"""
PROBE_PADDING = 256 * 1024


# ---------------------------------------------------------------------------- locks

# KEYS[1] lock; ARGV[1] owner token. Delete the lock only if the caller still owns it.
RELEASE_LOCK_LUA = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] lock; ARGV[1] owner token, ARGV[2] milliseconds. The owner keeps the lock for
# ARGV[2] ms more (a host's politeness delay after a request, or a lease renewal);
# 0 releases it at once.
HOLD_LOCK_LUA = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) <= 0 then return redis.call('DEL', KEYS[1]) end
return redis.call('SET', KEYS[1], ARGV[1], 'XX', 'PX', ARGV[2]) and 1 or 0
"""


# ---------------------------------------------------------------------------- boilerplate learner

# A learner counter packs two numbers: count + born * LEARNER_SPLIT, where `born` is the
# lossy-counting bucket before the one the line was first seen in. HINCRBY by 1 counts.
LEARNER_SPLIT = 2**32

# Counts the learnable lines of documents that were kept (not duplicates), per source,
# with lossy counting (Manku & Motwani 2002) so memory stays bounded on an endless stream:
# every `width` documents of a source, lines whose count + born <= the current bucket are
# dropped. A line is learned when counted in at least max(min_docs, min_share * docs)
# documents; a learned line that is dropped is forgotten too.
#
# KEYS: the sources set (`Keys.learner_sources`), then per document its source's
# `Keys.learner_keys` (meta, counts, lines).
# ARGV: min_docs, min_share, width, ndocs, then per document: source, k, and k pairs
# (line hash, line text). Returns the number of documents counted.
LEARN_LINES_LUA = r"""
local min_docs, min_share, width = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ndocs = tonumber(ARGV[4])
local SPLIT = 4294967296

local function prune(meta, counts, learned, bucket)
  local flat = redis.call('HGETALL', counts)
  local forgotten = 0
  for i = 1, #flat, 2 do
    local v = tonumber(flat[i + 1])
    local count, born = v % SPLIT, math.floor(v / SPLIT)
    if count + born <= bucket then
      redis.call('HDEL', counts, flat[i])
      forgotten = forgotten + redis.call('HDEL', learned, flat[i])
    end
  end
  if forgotten > 0 then redis.call('HINCRBY', meta, 'version', 1) end
end

local pos = 5
for d = 1, ndocs do
  local source, k = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  local meta, counts, learned = KEYS[3 * d - 1], KEYS[3 * d], KEYS[3 * d + 1]
  redis.call('SADD', KEYS[1], source)
  local docs = redis.call('HINCRBY', meta, 'docs', 1)
  local bucket = math.ceil(docs / width)
  local bar = math.max(min_docs, min_share * docs)
  for _ = 1, k do
    local line, text = ARGV[pos], ARGV[pos + 1]
    pos = pos + 2
    local v = redis.call('HINCRBY', counts, line, 1)
    if v == 1 and bucket > 1 then
      v = redis.call('HINCRBY', counts, line, (bucket - 1) * SPLIT)
    end
    if v % SPLIT >= bar and redis.call('HSETNX', learned, line, text) == 1 then
      redis.call('HINCRBY', meta, 'version', 1)
    end
  end
  if docs % width == 0 then prune(meta, counts, learned, bucket) end
end
return ndocs
"""
