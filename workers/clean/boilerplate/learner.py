"""Per-source boilerplate learning: which edge lines a source repeats in many documents.

CCNet-style, streaming: every kept (non-duplicate) document adds one count to each
distinct learnable line (`strip.learnable_lines`: its top and bottom lines) under its
source, in Redis, so every worker process learns from every other. A line counted in at
least `min_docs` documents of the source, and in at least `min_share` of the documents
counted since its counting began (`LearnerSettings.bar`), is learned; the strip stage then
trims learned lines in unbroken runs at the top and bottom of later documents of that
source. Duplicates are not counted, so reprints of one story never teach that its
sentences are furniture. Counting is lossy (see `keyspace.LEARN_LINES_LUA`), so Redis
memory per source stays bounded on an endless stream. (The script still marks a line
learned, for `boilerplate show`, against the share of all the source's documents; the
trimming decision here uses the share since the line's birth bucket.)

Each document's title and lead paragraph (`strip.link_targets`) are counted the same way,
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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis

from workers.clean.boilerplate.strip import LINK_LABELS
from workers.index.dedup import delete_matching
from workers.index.keys import LEARN_LINES_LUA, LEARNER_SPLIT, Keys
from workers.ops.connection import as_text

LineKey = tuple[str, str]  # (source, line hash)


@dataclass(frozen=True, slots=True)
class LearnerSettings:
    """The [boilerplate] settings (workers/config.py BoilerplateSettings)."""

    enabled: bool
    min_docs: int
    min_share: float
    prune_every: int
    zone_lines: int
    # A title or lead (strip.link_targets) is counted this many times at once, so lossy
    # counting keeps it for about link_memory x prune_every documents; 0: no links.
    link_memory: int

    def bar(self, docs: int, since: int = 0) -> float:
        """Documents a line must be counted in, when its source has `docs` counted and the
        line was first counted at about document `since` of the source: the share is of
        the documents since then, so a line an outlet starts using late in a long stream
        (a new programme's standing intro) is learned as soon as one that was always there."""
        return max(self.min_docs, self.min_share * max(docs - since, 0))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One cleaned document as the learner sees it."""

    input_ref: str
    source: str
    lines: Sequence[tuple[str, str]]  # (line hash, text), distinct: strip.learnable_lines
    body: str  # the publish-normalised body, for spotting exact repeats within a chunk
    # (hash, text) other documents may link to it by: strip.link_targets; counted like lines.
    targets: Sequence[tuple[str, str]] = ()
    # Link hashes of its own lines: strip.link_probes; looked up, never counted.
    probes: Sequence[str] = ()


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
        self._script = client.register_script(LEARN_LINES_LUA)
        # Sends (`record`) and reads (`plan`) hold the lock across their round trip, so a
        # chunk's counts are either in what a read sees from Redis or in `_inflight`, never
        # both and never neither.
        self._lock = threading.Lock()
        self._inflight: dict[int, Pending] = {}
        self._learned: dict[str, tuple[str, frozenset[str]]] = {}  # source -> (version, set)

    # ------------------------------------------------------------------ reading

    def plan(self, candidates: Sequence[Candidate]) -> tuple[list[frozenset[str]], Pending]:
        """For each candidate, in order, the line hashes to trim as learned; and the chunk's
        tentative counts, to be passed to `record` once the index has decided. The
        returned `Pending.links` holds, per candidate, the link hashes among its probes
        that another document of the source has as a target (a title or lead seen before:
        see `strip.link_targets`)."""
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
            docs, counts, born, learned = self._read(wanted)
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
            known = learned.get(source, frozenset())
            own = {h for h, _ in candidate.targets}
            trims.append(
                frozenset(
                    h
                    for h, _ in candidate.lines
                    if h in known
                    or counts[(source, h)]
                    >= self.settings.bar(docs[source], born.get((source, h), fresh_since))
                )
            )
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

    def _read(
        self, wanted: dict[str, set[str]]
    ) -> tuple[Counter[str], Counter[LineKey], dict[LineKey, int], dict[str, frozenset[str]]]:
        """Documents counted per source; each wanted line's count and the document its
        counting began at (lossy counting's birth bucket x prune_every); learned sets."""
        sources = list(wanted)
        asked = {source: sorted(wanted[source]) for source in sources}
        pipe = self.client.pipeline(transaction=False)
        for source in sources:
            pipe.hmget(self.keys.learner_meta(source), "docs", "version")
            if asked[source]:
                pipe.hmget(self.keys.learner_counts(source), asked[source])
        replies = iter(pipe.execute())
        docs: Counter[str] = Counter()
        counts: Counter[tuple[str, str]] = Counter()
        born: dict[tuple[str, str], int] = {}
        stale: list[tuple[str, str]] = []
        for source in sources:
            doc_count, version = next(replies)
            docs[source] = int(doc_count or 0)
            values = next(replies) if asked[source] else []
            for digest, value in zip(asked[source], values, strict=True):
                if value is not None:
                    counts[(source, digest)] = int(value) % LEARNER_SPLIT
                    born[(source, digest)] = int(value) // LEARNER_SPLIT * self.settings.prune_every
            version_text = as_text(version) if version is not None else "0"
            cached = self._learned.get(source)
            if cached is None or cached[0] != version_text:
                stale.append((source, version_text))
        if stale:
            pipe = self.client.pipeline(transaction=False)
            for source, _ in stale:
                pipe.hkeys(self.keys.learner_lines(source))
            for (source, version_text), digests in zip(stale, pipe.execute(), strict=True):
                self._learned[source] = (version_text, frozenset(map(as_text, digests)))
        return docs, counts, born, {source: self._learned[source][1] for source in sources}

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
                args: list[str | int | float] = []
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
                        args += [digest, text]
                if ndocs and self.settings.enabled:
                    s = self.settings
                    head: list[str | int | float] = [s.min_docs, s.min_share, s.prune_every, ndocs]
                    self._script(keys=keys, args=[*head, *args])
            finally:
                self._inflight.pop(id(pending), None)

    def discard(self, pending: Pending) -> None:
        """Forget a chunk that will not be recorded (its batch failed and will be retried)."""
        with self._lock:
            self._inflight.pop(id(pending), None)

    # ------------------------------------------------------------------ inspecting

    def learned_lines(self, source: str) -> tuple[int, list[LearnedLine]]:
        """(documents counted for `source`, its learned lines, most counted first)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.learner_meta(source), "docs")
        pipe.hgetall(self.keys.learner_lines(source))
        doc_count, texts = pipe.execute()
        digests = [as_text(d) for d in texts]
        values = self.client.hmget(self.keys.learner_counts(source), digests) if digests else []
        lines = [
            LearnedLine(digest, as_text(texts[raw]), int(value or 0) % LEARNER_SPLIT)
            for digest, raw, value in zip(digests, texts, values, strict=True)
        ]
        # Titles and leads kept for spotting links to them are not boilerplate lines.
        lines = [line for line in lines if not line.text.startswith(LINK_LABELS)]
        lines.sort(key=lambda line: (-line.count, line.text))
        return int(doc_count or 0), lines

    def sources(self) -> list[str]:
        return sorted(as_text(s) for s in self.client.smembers(self.keys.learner_sources))

    def reset(self, source: str | None = None) -> int:
        """Forget what was learned for `source` (or for every source); returns keys deleted.
        Worker processes notice on their next chunk: the learned set's version changes."""
        with self._lock:
            self._learned.clear()
            if source is None:
                return delete_matching(self.client, self.keys, *self.keys.learner_patterns)
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(*self.keys.learner_keys(source))
            pipe.srem(self.keys.learner_sources, source)
            deleted, _ = pipe.execute()
            return int(deleted)
