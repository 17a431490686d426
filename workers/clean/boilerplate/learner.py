"""Per-source boilerplate learning: which edge lines a source repeats in many documents.

CCNet-style, streaming: every kept (non-duplicate) document adds one count to each
distinct learnable line (`strip.learnable_lines`: its top and bottom lines) under its
source, in Redis, so every worker process learns from every other. Whether a line is
learned is `is_learned`'s call alone, on the line's counter: counted in at least
`min_docs` documents of the source, and in at least `min_share` of the documents counted
since its counting began. The strip stage trims learned lines in unbroken runs at the top
and bottom of later documents of that source (`LineLearner.plan`), and `boilerplate show`
lists them (`LineLearner.learned_lines`): the same lines. Duplicates are not counted, so
reprints of one story never teach that its sentences are furniture. Counting is lossy
(see workers/index/scripts/learn_lines.lua), so Redis memory per source stays bounded on an
endless stream; the script also keeps the text of every line counted `min_docs` times,
for `boilerplate show` to print.

Each document's title and lead paragraph (`links.link_targets`) are counted the same way,
once, `link_memory` times over, so that they outlive one-off lines for about
`link_memory` buckets without ever reaching the learning bar; a later line equal to one of
them is a link to that article (`Pending.links`, used by `strip.strip_boilerplate`).

A chunk of documents is cleaned before the index has decided about any of them, so
`LineLearner.plan` adds, on top of what Redis holds, tentative counts: from earlier
documents of the same chunk (exact repeats within the chunk left out) and from chunks
this process sent whose counts Redis has not taken yet. That is what lets a new source's
footer go from about its `min_docs`-th document on, even inside one chunk. Only decided,
kept documents are ever written to Redis (`LineLearner.record`).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis

from workers.clean.boilerplate.lines import BYLINE_PART_LABEL, line_key
from workers.clean.boilerplate.links import LINK_LABELS
from workers.clean.boilerplate.variants import VARIANT_MAX_CHARS, VARIANT_MIN_CHARS, LearnedKeys
from workers.index.args import LEARNER_SPLIT, LearnArgs
from workers.index.dedup import delete_matching
from workers.index.keys import Keys, learner_shard
from workers.index.scripts import LEARN_LINES, run_commands
from workers.ops.connection import as_text, pack_command

LineKey = tuple[str, str]  # (source, line hash)

# Each process keeps, per source, the keys of the source's learned lines, to match near
# variants against (`variants.LearnedKeys`). They are read again once the source has
# counted a quarter more documents than at the last read (at least KNOWN_MIN_REFRESH, at
# most KNOWN_REFRESH_DOCS more), or after KNOWN_MAX_AGE seconds: a line learned meanwhile
# only waits for its variants to go, its exact copies go at once.
KNOWN_MIN_REFRESH = 20
KNOWN_REFRESH_DOCS = 100
KNOWN_MAX_AGE = 60.0


@dataclass(frozen=True, slots=True)
class _Known:
    docs: int  # the source's documents counted when read
    at: float  # time.monotonic() when read
    keys: LearnedKeys


@dataclass(frozen=True, slots=True)
class LearnerSettings:
    """The [boilerplate] settings (workers/config.py BoilerplateSettings)."""

    enabled: bool
    min_docs: int
    min_share: float
    prune_every: int
    zone_lines: int
    # A title or lead (links.link_targets) is counted this many times at once, so lossy
    # counting keeps it for about link_memory x prune_every documents; 0: no links.
    link_memory: int

    def bar(self, docs: int, since: int = 0) -> float:
        """Documents a line must be counted in, when its source has `docs` counted and the
        line was first counted at about document `since` of the source: the share is of
        the documents since then, so a line an outlet starts using late in a long stream
        (a new programme's standing intro) is learned as soon as one that was always there."""
        return max(self.min_docs, self.min_share * max(docs - since, 0))


def is_learned(count: int, since: int, docs: int, settings: LearnerSettings) -> bool:
    """The one definition of a learned line, for trimming and for `boilerplate show`: a
    line counted in `count` documents of its source since about document `since` (its
    counter's birth bucket), when the source has `docs` counted, has reached the bar."""
    return count >= settings.bar(docs, since)


def unpack_counter(value: int, settings: LearnerSettings) -> tuple[int, int]:
    """(count, since) of a stored line counter (`count + born * LEARNER_SPLIT`, born being
    the lossy-counting bucket before the one the line was first counted in): `since` is the
    document its counting began at, about."""
    return value % LEARNER_SPLIT, value // LEARNER_SPLIT * settings.prune_every


@dataclass(frozen=True, slots=True)
class Candidate:
    """One cleaned document as the learner sees it."""

    input_ref: str
    source: str
    lines: Sequence[tuple[str, str]]  # (line hash, text), distinct: strip.learnable_lines
    body: str  # the publish-normalised body, for spotting exact repeats within a chunk
    # (hash, text) other documents may link to it by: links.link_targets; counted like lines.
    targets: Sequence[tuple[str, str]] = ()
    # Link hashes of its own lines: links.link_probes; looked up, never counted.
    probes: Sequence[str] = ()
    # Line hash -> `lines.line_key` of its `lines` (folded once, by strip.learnable_lines);
    # a line missing here is folded again when it is matched against learned variants.
    keys: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Pending:
    """A chunk's tentative counts, held until its decided documents are recorded."""

    candidates: list[Candidate]
    lines: Counter[tuple[str, str]] = field(default_factory=Counter)
    docs: Counter[str] = field(default_factory=Counter)
    # Per candidate, its link targets nothing had counted yet: the ones `record` sends.
    fresh_targets: list[list[tuple[str, str]]] = field(default_factory=list)
    # Per candidate, its probes that another document of the source has as a target.
    links: list[frozenset[str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LearnedLine:
    digest: str
    text: str
    count: int


class LineLearner:
    def __init__(self, client: redis.Redis, keys: Keys, settings: LearnerSettings) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        # Sends (`record`) and reads (`plan`) hold the lock across their round trip, so a
        # chunk's counts are either in what a read sees from Redis or in `_inflight`, never
        # both and never neither.
        self._lock = threading.Lock()
        self._inflight: dict[int, Pending] = {}
        self._known: dict[str, _Known] = {}

    # ------------------------------------------------------------------ reading

    def plan(self, candidates: Sequence[Candidate]) -> tuple[list[frozenset[str]], Pending]:
        """For each candidate, in order, the line hashes to trim as learned; and the chunk's
        tentative counts, to be passed to `record` once the index has decided. The
        returned `Pending.links` holds, per candidate, the link hashes among its probes
        that another document of the source has as a target (a title or lead seen before:
        see `links.link_targets`)."""
        pending = Pending(list(candidates))
        if not self.settings.enabled or not candidates:
            pending.links = [frozenset() for _ in candidates]
            return [frozenset() for _ in candidates], pending
        wanted: dict[str, set[str]] = {}
        for candidate in candidates:
            wanted.setdefault(candidate.source, set()).update(h for h, _ in candidate.lines)
            wanted[candidate.source].update(candidate.probes)
            wanted[candidate.source].update(h for h, _ in candidate.targets)
        with self._lock:
            docs, counts, born = self._read(wanted)
            known = self._learned_keys(docs)
            for earlier in self._inflight.values():
                docs.update(earlier.docs)
                counts.update(earlier.lines)
            self._inflight[id(pending)] = pending

        trims: list[frozenset[str]] = []
        seen_bodies: set[bytes] = set()
        for candidate in candidates:
            source = candidate.source
            # A line not counted in Redis yet would be born in the current bucket.
            width = self.settings.prune_every
            fresh_since = max(docs[source] - 1, 0) // width * width
            own = {h for h, _ in candidate.targets}
            exact = frozenset(
                h
                for h, _ in candidate.lines
                if is_learned(
                    counts[(source, h)],
                    born.get((source, h), fresh_since),
                    docs[source],
                    self.settings,
                )
            )
            variants = near_variants(candidate.lines, exact, known.get(source), candidate.keys)
            trims.append(exact | variants)
            pending.links.append(
                frozenset(h for h in candidate.probes if h not in own and counts[(source, h)])
            )
            fresh = [(h, text) for h, text in candidate.targets if not counts[(source, h)]]
            pending.fresh_targets.append(fresh)
            body_key = hashlib.blake2b(candidate.body.encode("utf-8"), digest_size=16).digest()
            if body_key in seen_bodies:
                continue  # an exact repeat within the chunk: the index will call it one
            seen_bodies.add(body_key)
            docs[source] += 1
            pending.docs[source] += 1
            for digest, _ in (*candidate.lines, *candidate.targets):
                counts[(source, digest)] += 1
                pending.lines[(source, digest)] += 1
        return trims, pending

    def _learned_keys(self, docs: Counter[str]) -> dict[str, LearnedKeys]:
        """Per source, the keys of its learned lines (see KNOWN_REFRESH_DOCS): read again
        for the sources whose copy is stale, in two round trips for all of them."""
        now = time.monotonic()
        stale = [
            source
            for source, count in docs.items()
            if count >= self.settings.min_docs and _stale(self._known.get(source), count, now)
        ]
        if stale:
            pipe = self.client.pipeline(transaction=False)
            for source in stale:
                pipe.hgetall(self.keys.learner_lines(source))
            texts: list[dict[str, str]] = [
                {bytes(digest).hex(): as_text(text) for digest, text in raw.items()}
                for raw in pipe.execute()
            ]
            wanted = {
                source: {d for d, text in found.items() if not _unmatched(text)}
                for source, found in zip(stale, texts, strict=True)
            }
            _, counts, born = self._read(wanted)
            for source, found in zip(stale, texts, strict=True):
                learned = [
                    line_key(found[d])
                    for d in wanted[source]
                    if is_learned(
                        counts[(source, d)], born.get((source, d), 0), docs[source], self.settings
                    )
                ]
                self._known[source] = _Known(docs[source], now, LearnedKeys.of(learned))
        return {source: known.keys for source, known in self._known.items()}

    def _read(
        self, wanted: dict[str, set[str]]
    ) -> tuple[Counter[str], Counter[LineKey], dict[LineKey, int]]:
        """Documents counted per source; each wanted line's count and the document its
        counting began at (see `unpack_counter`)."""
        sources = list(wanted)
        # Per source, its wanted line hashes grouped by counter shard: one HMGET each,
        # packed in C (a chunk asks a few hundred).
        asked: dict[str, list[list[str]]] = {}
        commands: list[bytes] = []
        for source in sources:
            meta, shard_prefix, _ = self.keys.learner_keys(source)
            commands.append(pack_command(["HGET", meta, "docs"]))
            shards: dict[int, list[str]] = {}
            for digest in wanted[source]:
                shards.setdefault(learner_shard(digest), []).append(digest)
            asked[source] = list(shards.values())
            # Redis keeps each line hash as its 8 bytes (P src:<s>:bp:l in keys.py).
            commands += [
                pack_command(["HMGET", f"{shard_prefix}{shard}", *map(bytes.fromhex, digests)])
                for shard, digests in shards.items()
            ]
        replies = iter(run_commands(self.client, commands))
        docs: Counter[str] = Counter()
        counts: Counter[tuple[str, str]] = Counter()
        born: dict[tuple[str, str], int] = {}
        for source in sources:
            docs[source] = int(next(replies) or 0)
            for digests in asked[source]:
                for digest, value in zip(digests, next(replies), strict=True):
                    if value is not None:
                        key = (source, digest)
                        counts[key], born[key] = unpack_counter(int(value), self.settings)
        return docs, counts, born

    # ------------------------------------------------------------------ writing

    def record(self, pending: Pending, kept_refs: Iterable[str]) -> None:
        """Count the lines of the chunk's documents the index kept, and drop the chunk's
        tentative counts. The link targets (titles, leads) of the chunk's other documents,
        duplicates included, are counted too: a copy of a story is still an article other
        pages link to, and a target teaches nothing about furniture. They go with a kept
        document of their source (the script counts documents by the entries it is sent),
        or not at all when the chunk kept none of that source."""
        kept = set(kept_refs)
        # A target is sent once, `boost` times over, when first seen: lossy counting then
        # keeps it about `boost` buckets, and it stays below the learning bar.
        boost = min(self.settings.link_memory, self.settings.min_docs - 1)
        fresh = pending.fresh_targets or [[] for _ in pending.candidates]
        with self._lock:
            try:
                riders: dict[str, list[tuple[str, str]]] = {}
                for candidate, targets in zip(pending.candidates, fresh, strict=True):
                    if candidate.input_ref not in kept:
                        riders.setdefault(candidate.source, []).extend(targets)
                keys = [self.keys.learner_sources]
                args: list[bytes | str | int | float] = []
                ndocs = 0
                for candidate, targets in zip(pending.candidates, fresh, strict=True):
                    if candidate.input_ref not in kept:
                        continue
                    ndocs += 1
                    sent = dict([*targets, *riders.pop(candidate.source, [])])
                    counted = [*candidate.lines, *[t for t in sent.items() for _ in range(boost)]]
                    keys += self.keys.learner_keys(candidate.source)
                    args += [candidate.source, len(counted)]
                    for digest, text in counted:
                        args += [bytes.fromhex(digest), text]
                if ndocs and self.settings.enabled:
                    s = self.settings
                    # The script keeps the text of every line counted `min_docs` times (all
                    # that `is_learned` can ever accept), for `learned_lines`; deciding is
                    # `is_learned`'s alone.
                    learn = LearnArgs(s.min_docs, s.prune_every, ndocs, tuple(args))
                    LEARN_LINES(self.client, keys, learn)
            finally:
                self._inflight.pop(id(pending), None)

    def discard(self, pending: Pending) -> None:
        """Forget a chunk that will not be recorded (its batch failed and will be retried)."""
        with self._lock:
            self._inflight.pop(id(pending), None)

    # ------------------------------------------------------------------ inspecting

    def learned_lines(self, source: str) -> tuple[int, list[LearnedLine]]:
        """(documents counted for `source`, its learned lines, most counted first): the
        lines `plan` trims as learned from the source's next document (`is_learned`)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.learner_meta(source), "docs")
        pipe.hgetall(self.keys.learner_lines(source))
        for shard in self.keys.learner_count_shards(source):
            pipe.hgetall(shard)
        doc_count, raw_texts, *shards = pipe.execute()
        counters = {digest: value for shard in shards for digest, value in shard.items()}
        # Line hashes are stored as their 8 bytes (P src:<s>:bp:l in keys.py).
        docs = int(doc_count or 0)
        texts = {bytes(digest).hex(): as_text(text) for digest, text in raw_texts.items()}
        lines: list[LearnedLine] = []
        for raw_digest, value in counters.items():
            count, since = unpack_counter(int(value), self.settings)
            if not is_learned(count, since, docs, self.settings):
                continue
            digest = bytes(raw_digest).hex()
            # The script keeps the text of every line counted `min_docs` times; only a
            # count made under a larger `min_docs` than today's can lack one.
            text = texts.get(digest, f"(text not kept; line hash {digest})")
            # Titles and leads kept for spotting links to them are not boilerplate lines.
            if not text.startswith(LINK_LABELS):
                lines.append(LearnedLine(digest, text, count))
        lines.sort(key=lambda line: (-line.count, line.text))
        return docs, lines

    def sources(self) -> list[str]:
        return sorted(as_text(s) for s in self.client.smembers(self.keys.learner_sources))

    def reset(self, source: str | None = None) -> int:
        """Forget what was learned for `source` (or for every source); returns keys deleted.
        Worker processes notice on their next chunk, which reads the counts afresh."""
        with self._lock:
            if source is None:
                self._known.clear()
                return delete_matching(self.client, self.keys, *self.keys.learner_patterns)
            pipe = self.client.pipeline(transaction=True)
            meta, _, lines = self.keys.learner_keys(source)
            pipe.delete(meta, lines, *self.keys.learner_count_shards(source))
            pipe.srem(self.keys.learner_sources, source)
            deleted, _ = pipe.execute()
            self._known.clear()
            return int(deleted)


def _stale(known: _Known | None, docs: int, now: float) -> bool:
    if known is None:
        return True
    grown = docs - known.docs
    due = max(KNOWN_MIN_REFRESH, min(KNOWN_REFRESH_DOCS, known.docs // 4))
    return grown >= due or (grown > 0 and now - known.at >= KNOWN_MAX_AGE) or grown < 0


def _unmatched(text: str) -> bool:
    # Titles and leads kept to spot links, and byline parts, are no lines to vary on.
    return text.startswith(LINK_LABELS) or text.startswith(BYLINE_PART_LABEL)


def near_variants(
    lines: Sequence[tuple[str, str]],
    exact: frozenset[str],
    known: LearnedKeys | None,
    keys: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """Hashes of the candidate's `lines` ((hash, text)) that are not learned themselves
    (`exact`) but are near variants of a learned line of their source (`known`); `keys`:
    the lines' `line_key`s by hash, when known."""
    if known is None or not known.keys:
        return frozenset()
    return frozenset(
        digest
        for digest, text in lines
        if digest not in exact
        and VARIANT_MIN_CHARS <= len(text) <= VARIANT_MAX_CHARS
        and not text.startswith(BYLINE_PART_LABEL)
        and known.near(keys[digest] if keys and digest in keys else line_key(text))
    )
