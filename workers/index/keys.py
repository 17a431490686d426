"""Every Redis key name newsdedup uses, defined once in `LAYOUT`: the `Keys` methods, the
Lua scripts (`scripts.py` gives them a `K` table built from it) and `Keys.owns` all
derive from that one table. Nothing else builds key names.

Layout under the configured prefix P (default "newsdedup:"):

  P docs | P duplicates | P dead      output streams
  P stats                             hash: global counters (seen, published, exact, near, ...)
  P stats:dead_reasons                hash: dead-letter reason -> count
  P stats:m:<minute>                  hash: published/exact/near/dead counted in one minute
                                      (unix time // 60, Redis server clock); expires after
                                      RATE_BUCKET_TTL (rates over 1/5/15 minutes)
  P ix:meta                           hash: index parameters (refuse to mix schemes), watermark
  P ix:next / P ix:count              counters: last doc number given out / docs indexed now
  P ix:r:<n // R>                     string: fixed-size records of R docs (see RECORD below)
  P ix:pages                          hash: record page -> live docs in it (free empty pages)
  P ix:i:<n // 128>                   hash: doc number -> the id it stands for (its own, or
                                      its original's for an indexed near-duplicate)
  P ix:l:<shard>                      string: LSH bucket entries, 8 bytes each: the
                                      bucket (4-byte hash of band number and the band's
                                      values), then a doc number (u32); one per document
                                      in the bucket
  P ix:x:<shard> / P ix:u:<shard>     hash: 8-byte content / canonical-URL key -> doc number
                                      (x also holds, for an earlier version whose text an
                                      update kept, its text-and-headline key: version_key
                                      in scripts/records.lua)
  P ix:d:<shard>                      hash: 8-byte id key (SHA-1 of a published id) -> the
                                      doc number holding it (u32), then, once the id was
                                      given again with a suffix, the last suffix (u32):
                                      see UNIQUE IDS in scripts/accept_documents.lua
                                      (l, x, u and d are GROWING TABLES, below)
  P ix:t:<day>                        list: doc numbers whose retention clock falls on <day>
  P ix:days                           sorted set: days with a list, oldest first
  P ix:df:now / P ix:df:before        string: document frequency of facts in the current
                                      and the previous generation, each a table of
                                      2^facts_bits u8 counters (BITFIELD, saturating;
                                      scripts/facts.lua)
  P src:names:stats                   set: source names counted (to enumerate src:<s>:stats)
  P src:names:bp                      set: source names the boilerplate learner has counted
  P src:<s>:stats                     hash: the global counters, for one source
  P src:<s>:bp                        hash: docs (documents counted)
  P src:<s>:bp:c:<n>                  hash: line hash -> counter (scripts/learn_lines.lua),
                                      for the line hashes of shard n (`learner_shard`:
                                      LEARNER_SHARDS small hashes, which Redis keeps
                                      compact, instead of one large one)
  P src:<s>:bp:l                      hash: line hash -> the line's text (lines that
                                      may be learned: `learner.is_learned` decides)
                                      In both, a line hash is its 8 bytes, not the 16
                                      hex digits Python and the rules file write.
  P job:<job>                         hash: one backfill/poll job's totals and counters
                                      (published, exact, near, dead, dead:<reason>)
  P job:<job>:done                    sorted set: inputs already accounted for, each as
                                      `done_member` of its ref
                                      (redelivery guard), scored by when (server time)
  P job:<job>:tasks                   set: task indexes finished
  P job:<job>:plan                    hash: task index -> its batch (TaskSpec JSON), for
                                      the batches not yet ended: what a lost message is
                                      sent again from (workers/worker/lost.py)
  P job:<job>:watch                   string: the lost-batch sweep's view of the job (JSON:
                                      its progress, since when, the batches not found)
  P jobs                              sorted set: job ids by creation time
  P jobs:sweep                        string: the worker sweeping for lost batches now
  P feeds                             set: keys of the feeds polled so far (see feed_key)
  P feed:<feed>                       hash: one feed's poll state and status (url, etag,
                                      last_modified, last_polled, last_status, ...)
  P feed:<feed>:lock                  string: the poll task holding the feed (one at a time)
  P feed:<feed>:tries                 hash: entry key -> failed article fetches so far
  P feed:<feed>:deferred              hash: entry key -> an entry left for the next poll
                                      (FeedEntry JSON): taken then even when the feed
                                      no longer lists it
  P job:feed-<feed> / ...:done        a feed's outcome counters / entries accounted for
                                      (a feed is one never-ending job; trimmed by age)
  P poll:<task id>                    hash: one poll's state and report (for `newsdedup poll`)
  P host:<host>                       string: held while a request to <host> runs and for
                                      the politeness delay after it
  P beat:lock                         string: the one running beat (refuses a second)
  P probe                             string: written (and expiring at once) to find out
                                      whether Redis takes writes (`stats`, `--wait`)
  P workers                           set: <w> of every worker that said it was running
  P worker:<w>                        string: a running worker's name and queues (JSON),
                                      written every few seconds, expiring soon after
                                      (workers/worker/presence.py); <w> is the name's
                                      `source_tag`

SOURCES: a source name comes from the input (a record's `source`), so it is never pasted
into a key name: <s> is `source_tag(name)`, 32 hex digits of its BLAKE2b-128 digest. No
name can then reach a key of another kind or another source's keys (`sources`, `x:c`,
`*`, newlines: all become 32 hex digits), and key names stay short whatever the name's
length. The names themselves are kept as members of the src:names sets, for display.
The scripts receive per-source keys built here (KEYS), never build them from a name.
Keys of earlier layouts (P stats:sources, P stats:source:<name>, P bp:*, the fact
tables by generation number, P ix:df:<n>, and a source's line counters in one hash,
P src:<s>:bp:c) are never read or written; `newsdedup reset` deletes them.

RECORD (2*num_perm + 104 bytes), one fixed slot per document in its page string:
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
  lead signature  16 x u16     `Fingerprint.lead`: the MinHash of the first 40 shingles;
                               zeros when there is none
  title key       4            of the normalised title (an update may change only it)
  version         u16          0 for a first version; 2, 3, ... for its updates
Fixed-size slots in page strings cost no per-key overhead. A page holds R =
`records_per_page` records: as many as fit, up to 256, in the allocator's size class
below the one 256 would need (360-byte records: 227, in 80 KiB instead of 96 KiB).

GROWING TABLES: the LSH buckets (l), content keys (x), URL keys (u) and ids (d) are each
one logical hash spread over shard hashes small enough for Redis's compact listpack
encoding (up to 128 entries by default; a shard past it converts for good and costs ~5x
per entry). The LSH table's shards are strings of 8-byte entries instead, so that a
document's 42 bands cost one MGET and one MSET, not a command each. The number of shards
grows with the index by linear hashing (Litwin 1980): with S shards (meta field
`shards:<table>`) and 2^L <= S < 2^(L+1), a field whose first four bytes read h
(big-endian) lives in shard h mod 2^(L+1), or h mod 2^L when that is >= S. When the
table's entries pass LH_LOAD per shard, shard S - 2^L is split: the fields with h mod
2^(L+1) = S move to the new shard S. Each split moves about LH_LOAD / 2 fields, so the
work is spread evenly over inserts and a small index has few keys; the field alone says
where it lives, so no stored value has to be re-read to move it.

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
from string import Formatter

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

# Every key name, without the prefix: {placeholders} are filled by the caller (Python) or
# are the arguments of the key's function in the scripts' `K` table (Lua), in order.
LAYOUT: dict[str, str] = {
    # output streams
    "docs": "docs",
    "duplicates": "duplicates",
    "dead": "dead",
    # counters
    "stats": "stats",
    "dead_reasons": "stats:dead_reasons",
    "stats_minute": "stats:m:{minute}",
    "sources": "src:names:stats",
    "source_stats": "src:{tag}:stats",
    # the index
    "index_meta": "ix:meta",
    "index_next": "ix:next",
    "index_count": "ix:count",
    "record_page": "ix:r:{page}",
    "record_pages": "ix:pages",
    "id_block": "ix:i:{block}",
    "table_shard": "ix:{tbl}:{shard}",
    "retention_day": "ix:t:{day}",
    "retention_days": "ix:days",
    "fact_counts": "ix:df:now",
    "fact_counts_before": "ix:df:before",
    # the boilerplate learner
    "learner_sources": "src:names:bp",
    "learner_meta": "src:{tag}:bp",
    "learner_counts": "src:{tag}:bp:c:{shard}",
    "learner_lines": "src:{tag}:bp:l",
    # jobs
    "jobs": "jobs",
    "job": "job:{job}",
    "job_done": "job:{job}:done",
    "job_tasks": "job:{job}:tasks",
    "job_attempts": "job:{job}:attempts",
    "job_cursor": "job:{job}:cursor",
    "job_plan": "job:{job}:plan",
    "job_watch": "job:{job}:watch",
    "sweep_lock": "jobs:sweep",
    # feeds
    "feeds": "feeds",
    "feed": "feed:{feed}",
    "feed_lock": "feed:{feed}:lock",
    "feed_tries": "feed:{feed}:tries",
    "feed_deferred": "feed:{feed}:deferred",
    "poll": "poll:{task}",
    "host_gate": "host:{host}",
    "beat_lock": "beat:lock",
    "write_probe": "probe",
    # running workers
    "workers": "workers",
    "worker": "worker:{tag}",
}

# What each placeholder can hold, for `Keys.owns` (OWNED KEYS): job ids
# (`jobs.new_job_id`, and `poll.feed_job` for a feed's never-ending job), feed keys
# (`status.feed_key`), poll task ids (uuid4), the growing tables' letters.
_PLACEHOLDERS: dict[str, bytes] = {
    "minute": rb"\d+",
    "tag": rb"[0-9a-f]{32}",
    "page": rb"\d+",
    "block": rb"\d+",
    "tbl": rb"[lxud]",
    "shard": rb"\d+",
    "day": rb"\d+",
    "job": rb"(?:\d{8}T\d{6}-[0-9a-f]{6}|feed-[0-9a-f]{16})",
    "feed": rb"[0-9a-f]{16}",
    "task": rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "host": rb".+",
}
# Keys under P that newsdedup does not name itself but owns: earlier layouts (never used,
# deleted by `reset`: before SOURCES; fact tables named by generation), Celery's queues
# (worker.app's INGEST_QUEUE and FETCH_QUEUE; kombu adds a separator and a digit for
# priorities) and kombu's bookkeeping.
_ALSO_OWNED = (
    rb"stats:sources|stats:source:.*|bp:.*|ix:df:\d+|src:[0-9a-f]{32}:bp:c",
    rb"(?:ingest|fetch)(?:\x06\x16\d)?|_kombu\..+|unacked|unacked_index|unacked_mutex",
)


def placeholders(template: str) -> list[str]:
    """The placeholders of a LAYOUT template, in order."""
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def _owned_pattern() -> re.Pattern[bytes]:
    def regex(template: str) -> bytes:
        out = b""
        for literal, name, _, _ in Formatter().parse(template):
            out += re.escape(literal.encode())
            if name:
                out += _PLACEHOLDERS[name]
        return out

    return re.compile(b"|".join([*(regex(t) for t in LAYOUT.values()), *_ALSO_OWNED]), re.DOTALL)


_OWNED = _owned_pattern()


# The sizes in a RECORD that the worker computes to: the rare facts' bottom-k sketch, and
# the lead signature with its LSH bands (`clean.fingerprint`: LEAD_SHINGLES and why).
FACTS_K = 16
LEAD_PERM = 16
LEAD_BANDS = 6
LEAD_ROWS = 2


def record_bytes(num_perm: int) -> int:
    """The size of a RECORD."""
    return 2 * num_perm + 104


def records_per_page(record_size: int) -> int:
    """Records per page string (R in RECORD). jemalloc, Redis's allocator, rounds a
    large allocation up to one of four size classes per doubling (2^k times 1.25, 1.5,
    1.75, 2): 256 records of 360 bytes (92,176 bytes with the string's header) take a
    96 KiB class, 4 KiB of it unused. A few records fewer fit the class below."""
    header = 16  # the string's header and terminator, rounded up
    wanted = 256 * record_size + header
    power = 1 << (wanted.bit_length() - 1)
    classes = [power * (4 + i) // 4 for i in range(5)]  # 2^k * 1, 1.25, ... 2
    below = max(c for c in classes if c < wanted)
    fitting = (below - header) // record_size
    return fitting if fitting >= 224 else 256  # not worth more pages


# Counter shards per source: a source's lossy counting keeps some thousands of line
# hashes (5,500 for the largest outlet after 10,000 SaudiNewsNet articles), and a hash
# stays a compact listpack (about 25 bytes per entry instead of 75) only up to 128
# entries (Redis's hash-max-listpack-entries).
LEARNER_SHARDS = 128


def learner_shard(digest: str) -> int:
    """The counter shard of a line hash (16 hex digits): its first byte, mod
    LEARNER_SHARDS. scripts/learn_lines.lua computes the same from the 8 bytes."""
    return int(digest[:2], 16) % LEARNER_SHARDS


def source_tag(source: str) -> str:
    """The fixed-length stand-in for a source name in key names (see SOURCES above): 32
    lowercase hex digits, so no name can produce another kind of key."""
    name = source.encode("utf-8", "surrogatepass")  # any str, even one from a bad file name
    return hashlib.blake2b(name, digest_size=16).hexdigest()


def revised_ref(input_ref: str, revision: str) -> str:
    """The ref a job's done set knows an input by: a feed entry's key and its revision
    (`FeedEntry.revision`), so that an entry that changed is new to the set."""
    return f"{input_ref}#{revision}" if revision else input_ref


def done_member(guard: str) -> bytes:
    """The member of a job's done set (P job:<job>:done) that stands for one input,
    `guard` being the input's ref after its job's guard prefix: 12 bytes of its BLAKE2b
    digest. Refs are paths, lines and feed entry keys of any length; the set holds one
    member per input for as long as the job's keys live, so a short fixed member keeps
    it small. Two of a job's inputs share a member with a chance of about n^2 / 2^97."""
    return hashlib.blake2b(guard.encode("utf-8", "surrogatepass"), digest_size=12).digest()


# Redis's glob (SCAN MATCH) treats these as patterns unless escaped with a backslash.
_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def glob_escape(text: str) -> str:
    """`text` as a SCAN MATCH pattern that matches only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def key(self, name: str, **parts: object) -> str:
        """The key LAYOUT[name] under the prefix, its placeholders filled from `parts`."""
        return self.prefix + LAYOUT[name].format(**parts)

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
        return self.key("docs")

    @property
    def duplicates(self) -> str:
        return self.key("duplicates")

    def stream(self, name: str) -> str:
        if name not in STREAM_NAMES:
            raise ValueError(f"unknown stream {name!r}; expected one of {', '.join(STREAM_NAMES)}")
        return self.key(name)

    @property
    def stats(self) -> str:
        return self.key("stats")

    def source_stats(self, source: str) -> str:
        return self.key("source_stats", tag=source_tag(source))

    @property
    def dead_reasons(self) -> str:
        return self.key("dead_reasons")

    @property
    def sources(self) -> str:
        """Set: the names of the sources with counters (`source_stats`)."""
        return self.key("sources")

    def stats_minute(self, minute: int) -> str:
        """The counts of one minute (unix time // 60 on the Redis server's clock)."""
        return self.key("stats_minute", minute=minute)

    @property
    def index_meta(self) -> str:
        return self.key("index_meta")

    @property
    def index_count(self) -> str:
        return self.key("index_count")

    @property
    def fact_counts(self) -> str:
        """The current generation's fact counters (scripts/facts.lua)."""
        return self.key("fact_counts")

    @property
    def fact_counts_before(self) -> str:
        """The previous generation's fact counters."""
        return self.key("fact_counts_before")

    @property
    def index_pattern(self) -> str:
        return self._pattern("ix:*")

    @property
    def learner_sources(self) -> str:
        """Set: the names of the sources the boilerplate learner has counted."""
        return self.key("learner_sources")

    def learner_meta(self, source: str) -> str:
        return self.key("learner_meta", tag=source_tag(source))

    def learner_count_shards(self, source: str) -> list[str]:
        """Every counter shard of `source`, in shard order."""
        tag = source_tag(source)
        return [self.key("learner_counts", tag=tag, shard=n) for n in range(LEARNER_SHARDS)]

    def learner_lines(self, source: str) -> str:
        return self.key("learner_lines", tag=source_tag(source))

    def learner_keys(self, source: str) -> tuple[str, str, str]:
        """A source's learner keys as scripts/learn_lines.lua takes them: meta, the counter
        shards' common prefix (the script appends `learner_shard`), lines."""
        counts = self.key("learner_counts", tag=source_tag(source), shard="")
        return self.learner_meta(source), counts, self.learner_lines(source)

    @property
    def learner_patterns(self) -> tuple[str, ...]:
        """SCAN patterns covering every learner key (the sources set included), and the
        previous layout's (P bp:*)."""
        return self._pattern("src:*:bp*"), self._pattern("bp:*")

    @property
    def jobs(self) -> str:
        return self.key("jobs")

    def job(self, job_id: str) -> str:
        return self.key("job", job=job_id)

    def job_done(self, job_id: str) -> str:
        return self.key("job_done", job=job_id)

    def job_tasks(self, job_id: str) -> str:
        return self.key("job_tasks", job=job_id)

    def job_attempts(self, job_id: str) -> str:
        """Hash: task index -> how many times that batch has been started."""
        return self.key("job_attempts", job=job_id)

    def job_cursor(self, job_id: str) -> str:
        """Hash: task index -> the input a careful run of that batch is working on (JSON)."""
        return self.key("job_cursor", job=job_id)

    def job_plan(self, job_id: str) -> str:
        """Hash: task index -> the batch's TaskSpec JSON, while the batch has not ended."""
        return self.key("job_plan", job=job_id)

    def job_watch(self, job_id: str) -> str:
        """String: what the lost-batch sweep last saw of the job (JSON)."""
        return self.key("job_watch", job=job_id)

    @property
    def sweep_lock(self) -> str:
        """String: held by the worker sweeping for lost batches (one at a time)."""
        return self.key("sweep_lock")

    @property
    def feeds(self) -> str:
        return self.key("feeds")

    def feed(self, feed: str) -> str:
        return self.key("feed", feed=feed)

    def feed_lock(self, feed: str) -> str:
        return self.key("feed_lock", feed=feed)

    def feed_tries(self, feed: str) -> str:
        return self.key("feed_tries", feed=feed)

    def feed_deferred(self, feed: str) -> str:
        return self.key("feed_deferred", feed=feed)

    def poll(self, task_id: str) -> str:
        return self.key("poll", task=task_id)

    def host_gate(self, host: str) -> str:
        return self.key("host_gate", host=host)

    @property
    def beat_lock(self) -> str:
        return self.key("beat_lock")

    @property
    def write_probe(self) -> str:
        """A short-lived string written to find out whether Redis takes writes."""
        return self.key("write_probe")

    @property
    def workers(self) -> str:
        """Set: the tags of the workers that said they were running (`worker`)."""
        return self.key("workers")

    def worker(self, tag: str) -> str:
        """String: a running worker's name and queues, expiring unless renewed."""
        return self.key("worker", tag=tag)

    @property
    def all_pattern(self) -> str:
        return self._pattern("*")
