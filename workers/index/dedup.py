"""The shared Redis dedup index and the output streams, driven by the scripts in scripts/.

A chunk of documents costs one EVALSHA (scripts/accept_documents.lua) that decides each
one (exact / near / new), indexes it, publishes it to exactly one stream and updates the
counters, atomically; a batch is sent as one pipeline, so a task of 200 documents is one
round trip.

Ids are unique in `docs` among the documents published within the retention window: a
new document whose input id a live indexed document already holds is published as
`<id>~<n>` (the first n = 2, 3, ... free), with its input's id in the field `input_id`
(UNIQUE IDS in scripts/accept_documents.lua). Duplicates keep their input's id in
`duplicates`; their `duplicate_of` is the original's published id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
import redis

from workers.clean.fingerprint import (
    SIGNATURE_BITS,
    Fingerprint,
    FingerprintParams,
    title_key,
    url_key,
)
from workers.clean.urls import canonical_url, permalink_guid
from workers.config import SourcePolicy
from workers.document import DeadInput, Document
from workers.index.args import INDEX_SETTINGS, AcceptArgs, DeadArgs, DocumentArgs
from workers.index.encoding import FACT_OPERATION_ARGS, lsh_bucket_fields
from workers.index.facts import Facts, RareFacts, facts_of, packed_operations, rare_facts
from workers.index.keys import (
    LEAD_BANDS,
    LEAD_PERM,
    LEAD_ROWS,
    Keys,
    done_member,
    record_bytes,
    records_per_page,
    revised_ref,
)
from workers.index.scripts import (
    ACCEPT_DOCUMENTS,
    RECORD_DEAD,
    ScriptCall,
    run_calls,
    run_commands,
)
from workers.ops.connection import as_text, pack_command
from workers.records import DeadRecord, DocRecord, DuplicateRecord


class IndexMismatch(Exception):
    """The index was built with other fingerprint parameters; mixing them gives nonsense."""


@dataclass(frozen=True, slots=True)
class Outcome:
    input_ref: str
    kind: str  # "published" | "exact" | "near" | "dead" | "already"
    duplicate_of: str = ""
    similarity: float = 0.0
    # Fact counter cells the index found common, and the tag they are valid under (see
    # `Fingerprinter.learn_common`).
    common_cells: tuple[int, ...] = ()
    facts_tag: str = ""
    # The entry it was published as, in the stream its kind goes to ("" when none).
    entry_id: str = ""
    # A published document's link to another: "update_of", "partial_of" or "contains"
    # ("" when none), and that document's published id.
    relation: str = ""
    linked: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A document ready for the index: cleaned, fingerprinted, with its input size."""

    doc: Document
    fingerprint: Fingerprint
    bytes_in: int


def _iso(stamp: float) -> str:
    moment = datetime.fromtimestamp(stamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    return _iso(time.time())


# How the sharded tables grow (GROWING TABLES in `keyspace`); recorded so an index laid out
# otherwise (earlier fixed shard counts, LSH shards as hashes) is refused rather than
# misread.
TABLE_LAYOUT = "linear-hash-v2/lsh-strings/records-v3/lead-40x16-6x2"
# The fact frequency tables: u8 saturating counters, the current and the previous
# generation under fixed names, counted by the worker (scripts/facts.lua).
FACT_COUNTERS = "u8-saturating/now-before/worker-counted"
# Published ids are held in the id table (UNIQUE IDS in `keyspace`); an index without one
# would let a new document take the id of one it already holds.
ID_TABLE = "sha1-64-v1"


@dataclass(frozen=True, slots=True)
class IndexLayout:
    """How the index is laid out in Redis; fixed when the index is created."""

    params: FingerprintParams

    def as_metadata(self) -> dict[str, str]:
        return {
            **self.params.as_metadata(),
            "tables": TABLE_LAYOUT,
            "fact_counters": FACT_COUNTERS,
            "ids": ID_TABLE,
            "signature_bits": str(SIGNATURE_BITS),
            "records_per_page": str(self.records_per_page),
        }

    @property
    def records_per_page(self) -> int:
        return records_per_page(record_bytes(self.params.num_perm))


def delete_matching(client: redis.Redis, keys: Keys, *patterns: str) -> int:
    """UNLINK every key matching one of `patterns` (`Keys` builds them) that newsdedup owns
    under `keys.prefix` (`Keys.owns`), with SCAN, so the server is never blocked."""
    deleted = 0
    batch: list[Any] = []
    for pattern in patterns:
        for key in client.scan_iter(match=pattern, count=1000):
            if not keys.owns(key):
                continue
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def identity_key(doc: Document) -> bytes:
    """The 8-byte key of a document's identity (UPDATES in scripts/accept_documents.lua):
    its feed entry's guid, else its canonical URL; b"" when it has neither.

    The guid comes first, as in the feed's own bookkeeping (`FeedEntry.key`): entries of a
    live blog or a section page share one link, and an article keeps its guid when its
    link is renamed. A permalink guid (an http(s) URL) names the same page whoever
    publishes it, so it shares the URLs' key space; any other guid ("1", "12345") is
    unique only within its feed, so it counts within the document's source."""
    if doc.guid:
        if permalink := permalink_guid(doc.guid):
            return url_key(permalink)
        return url_key(f"guid:{doc.source}\x00{doc.guid.strip()}")
    url = canonical_url(doc.url)
    return url_key(url) if url else b""


def iso_to_epoch(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (naive means UTC); None if unparseable."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def plausible_published_epoch(doc: Document, now: float) -> float | None:
    """The document's own date in seconds, when it has one not more than a day ahead."""
    if doc.published_at:
        stamp = iso_to_epoch(doc.published_at)
        if stamp is not None and 0 < stamp <= now + 86400:
            return stamp
    return None


def document_hour(doc: Document, now: float) -> int:
    """Hours since the epoch of the document's plausible own date, else of `now`: the clock
    of the near-duplicate time gap."""
    stamp = plausible_published_epoch(doc, now)
    return int((now if stamp is None else stamp) // 3600)


@dataclass(frozen=True, slots=True)
class DecisionRule:
    """When an LSH candidate is the same article (scripts/accept_documents.lua). The fields
    are `dedup.*` settings of the same names; their defaults live in the config."""

    threshold: float
    containment_threshold: float
    facts_threshold: float
    facts_agreement: float
    facts_min_count: int
    max_gap_hours: float
    stale_threshold: float
    rare_floor: int
    rare_ratio: float
    facts_generation: int
    min_shingles: int
    max_candidates: int
    lead_agreement: float


def retention_timestamp(doc: Document, clock: str, now: float) -> int:
    """Seconds on the retention clock: ingestion time, or the document's plausible own date
    when the clock is "published"."""
    stamp = plausible_published_epoch(doc, now) if clock == "published" else None
    return int(now if stamp is None else stamp)


# Documents per script call: one call blocks the server while it runs (~0.3 ms a
# document), so a big batch (`index rebuild`) is several calls in one pipeline.
DOCUMENTS_PER_CALL = 64


@dataclass(frozen=True, slots=True)
class ScriptBatch:
    """A batch's documents and dead inputs, ready to send (`DedupIndex.build_batch`,
    `run`): a document gets its rare facts when `run` has counted them."""

    mode: str
    job_id: str
    batch: str  # the backfill batch's index, "" outside one (`JobArgs.batch`)
    refs: list[str]  # input_ref of each input, as `run` answers: the documents, the dead
    documents: list[DocumentArgs]
    document_keys: list[str]  # each document's source counters
    facts: list[Facts]  # each document's facts
    dead: list[ScriptCall]


class DedupIndex:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        layout: IndexLayout,
        rule: DecisionRule,
        *,
        retention_seconds: int,
        retention_clock: str,
        sweep_limit: int,
        docs_maxlen: int,
        duplicates_maxlen: int,
        dead_maxlen: int,
        source_policies: Mapping[str, SourcePolicy] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.layout = layout
        self.params = layout.params
        self.rule = rule
        self.retention_seconds = retention_seconds
        self.retention_clock = retention_clock
        self.sweep_limit = sweep_limit
        self.docs_maxlen = docs_maxlen
        self.duplicates_maxlen = duplicates_maxlen
        self.dead_maxlen = dead_maxlen
        # Each source's policy as the script takes it; a feed's own wins (`Document.policy`).
        self._policy_args = {
            source: policy.script_arg(rule.threshold)
            for source, policy in (source_policies or {}).items()
        }
        self._settings_arg = self._index_settings()
        self._checked = False
        # Whether the last count found a previous generation to read (at first: look).
        self._counts_before = True

    def ensure_params(self) -> None:
        """Record the layout on first use; refuse a different one later."""
        if self._checked:
            return
        wanted = self.layout.as_metadata()
        meta_key = self.keys.index_meta
        pipe = self.client.pipeline()
        pipe.hgetall(meta_key)
        for field, value in wanted.items():
            pipe.hsetnx(meta_key, field, value)
        pipe.hgetall(meta_key)
        replies = pipe.execute()
        before, after = (
            {as_text(k): as_text(v) for k, v in r.items()} for r in (replies[0], replies[-1])
        )
        # An index recorded by an older version lacks the newer fields: compare with what it
        # had, so a field it never recorded reads as a mismatch, not as agreement.
        stored = before if "num_perm" in before else after
        # The datasketch version is informative; the hash values depend on the rest.
        differing = {
            field: (stored.get(field), value)
            for field, value in wanted.items()
            if field != "datasketch" and stored.get(field) != value
        }
        if differing:
            details = ", ".join(
                f"{f}: index has {old}, config wants {new}"
                for f, (old, new) in sorted(differing.items())
            )
            raise IndexMismatch(
                f"the dedup index was built with other parameters ({details}); "
                "rebuild it with `newsdedup index rebuild` (or `newsdedup index reset`)"
            )
        self._checked = True

    def _index_settings(self) -> str:
        bands, rows = self.params.bands_rows
        values: dict[str, float] = {
            "num_perm": self.params.num_perm,
            "bands": bands,
            "rows": rows,
            "retention_seconds": self.retention_seconds,
            "sweep_limit": self.sweep_limit,
            "docs_maxlen": self.docs_maxlen,
            "duplicates_maxlen": self.duplicates_maxlen,
            "facts_bits": self.params.facts_bits,
            "records_per_page": self.layout.records_per_page,
        }
        for name in INDEX_SETTINGS:
            if name not in values:
                values[name] = getattr(self.rule, name)
        return " ".join(repr(values[name]) for name in INDEX_SETTINGS)

    def _documents(
        self, guard: str, items: Sequence[tuple[Accepted, str, float]]
    ) -> tuple[list[DocumentArgs], list[str], list[Facts]]:
        """The documents' script arguments, each with its ingested_at text and clock time
        (their rare facts still to come: `run`), each one's source counters, and facts."""
        fingerprints = [item.fingerprint for item, _, _ in items]
        facts = facts_of(fingerprints, self.params.facts_bits)
        buckets = self._bucket_arguments(fingerprints)
        documents = [
            self._document(guard, item, ingested_at, now, bucket)
            for (item, ingested_at, now), bucket in zip(items, buckets, strict=True)
        ]
        keys = [self.keys.source_stats(item.doc.source) for item, _, _ in items]
        return documents, keys, facts

    def _bucket_arguments(self, fingerprints: Sequence[Fingerprint]) -> list[list[bytes]]:
        """Each document's LSH bucket fields: its signature's bands, then its lead
        signature's (none without a signature)."""
        signed = [i for i, fp in enumerate(fingerprints) if fp.signature and fp.lead]
        out: list[list[bytes]] = [[] for _ in fingerprints]
        if not signed:
            return out
        bands, rows = self.params.bands_rows
        signatures = np.frombuffer(
            b"".join(fingerprints[i].signature for i in signed), dtype=">u2"
        ).reshape(len(signed), self.params.num_perm)
        leads = np.frombuffer(b"".join(fingerprints[i].lead for i in signed), dtype=">u2")
        both = np.concatenate(
            (
                lsh_bucket_fields(signatures, bands, rows),
                lsh_bucket_fields(
                    leads.reshape(len(signed), LEAD_PERM), LEAD_BANDS, LEAD_ROWS, bands
                ),
            ),
            axis=1,
        )
        packed_fields = both.astype(">u4").tobytes()
        width = 4 * (bands + LEAD_BANDS)
        for row, i in enumerate(signed):
            document_fields = packed_fields[row * width : (row + 1) * width]
            out[i] = [document_fields[k : k + 4] for k in range(0, width, 4)]
        return out

    def _document(
        self, guard: str, item: Accepted, ingested_at: str, now: float, buckets: list[bytes]
    ) -> DocumentArgs:
        doc, fp = item.doc, item.fingerprint
        # `id` comes first: the script may publish the document under another (UNIQUE IDS).
        doc_fields = DocRecord.for_document(doc, fp.content_hash, ingested_at).to_fields()
        # The script adds what it is a duplicate of, if it is one.
        dup_fields = DuplicateRecord.for_document(doc, fp.content_hash, ingested_at).to_fields()
        return DocumentArgs(
            guard=done_member(guard + revised_ref(doc.input_ref, doc.revision)),
            source=doc.source,
            bytes_in=item.bytes_in,
            doc_id=doc.id,
            content_key=fp.content_key,
            identity_key=identity_key(doc),
            signature=fp.signature,
            shingles=fp.shingles,
            timestamp=retention_timestamp(doc, self.retention_clock, now),
            hour=document_hour(doc, now),
            fact_sketch=b"",
            fact_count=0,
            lead=fp.lead,
            title_key=title_key(doc.title),
            input_key=doc.input_key,
            policy=(
                doc.policy.script_arg(self.rule.threshold)
                if doc.policy is not None
                else self._policy_args.get(doc.source, "")
            ),
            stripped=len(doc.stripped),
            doc_fields=tuple(chain.from_iterable(doc_fields.items())),
            dup_fields=tuple(chain.from_iterable(dup_fields.items())),
            buckets=tuple(buckets),
        )

    def _dead_call(
        self, job_id: str, batch: str, guard: str, dead: DeadInput, bytes_in: int
    ) -> ScriptCall:
        fields = DeadRecord.for_input(dead, utc_now_iso()).to_fields()
        source = dead.source or "(unknown)"
        args = DeadArgs(
            prefix=self.keys.prefix,
            mode="publish",
            job=job_id,
            batch=batch,
            guard=done_member(guard + revised_ref(dead.input_ref, dead.revision)),
            source=source,
            bytes_in=bytes_in,
            maxlen=self.dead_maxlen,
            reason=dead.reason,
            fields=tuple(value for pair in fields.items() for value in pair),
        )
        return RECORD_DEAD.call([self.keys.source_stats(source)], args)

    def build_batch(
        self,
        job_id: str,
        accepted: Sequence[Accepted],
        dead: Sequence[tuple[DeadInput, int]] = (),
        *,
        guard_prefix: str = "",
        batch: str = "",
        now: float | None = None,
    ) -> ScriptBatch:
        """Script calls that decide, index and publish a batch, one per input, built
        without I/O: `run` sends them in one round trip. Apart so a worker can build one
        batch while Redis runs the last (`pipeline.overlapped`).

        `guard_prefix` + input_ref is the member of the job's done set that makes a
        redelivered input a no-op; the prefix (the backfill root) keeps inputs with the
        same relative path under different roots apart. `batch` is the backfill batch's
        index: its inputs count as accounted for once it has ended. `now` overrides the
        clock (for simulations of the retention window)."""
        self.ensure_params()
        clock = time.time() if now is None else now
        ingested_at = utc_now_iso() if now is None else _iso(now)
        documents, keys, facts = self._documents(
            guard_prefix, [(item, ingested_at, clock) for item in accepted]
        )
        refs = [item.doc.input_ref for item in accepted]
        dead_calls = []
        for dead_input, bytes_in in dead:
            dead_calls.append(self._dead_call(job_id, batch, guard_prefix, dead_input, bytes_in))
            refs.append(dead_input.input_ref)
        return ScriptBatch("publish", job_id, batch, refs, documents, keys, facts, dead_calls)

    def build_reindex_batch(self, items: Sequence[tuple[Accepted, float]]) -> ScriptBatch:
        """Calls that index already-published documents, each with the time it was ingested,
        without publishing or counting them again (`run` sends them): kind "indexed", or
        "skipped" when one duplicates another under the new parameters. Used by
        `newsdedup index rebuild`."""
        self.ensure_params()
        documents, keys, facts = self._documents("", [(item, "", at) for item, at in items])
        refs = [item.doc.input_ref for item, _ in items]
        return ScriptBatch("rebuild", "", "", refs, documents, keys, facts, [])

    def run(self, batch: ScriptBatch) -> list[Outcome]:
        """Count the batch's facts, then send its calls as one pipeline; one Outcome per
        input, in order."""
        rare = self._count_facts(batch.facts)
        documents = [
            replace(document, fact_sketch=mine.sketch, fact_count=mine.count)
            for document, mine in zip(batch.documents, rare, strict=True)
        ]
        calls = [
            ACCEPT_DOCUMENTS.call(
                batch.document_keys[start : start + DOCUMENTS_PER_CALL],
                AcceptArgs(
                    prefix=self.keys.prefix,
                    mode=batch.mode,
                    job=batch.job_id,
                    batch=batch.batch,
                    settings=self._settings_arg,
                    documents=tuple(documents[start : start + DOCUMENTS_PER_CALL]),
                ),
            )
            for start in range(0, len(documents), DOCUMENTS_PER_CALL)
        ]
        replies = run_calls(self.client, [*calls, *batch.dead])
        per_input = [
            *chain.from_iterable(replies[: len(calls)]),
            *replies[len(calls) :],
        ]
        decided: list[RareFacts | None] = [*rare, *([None] * len(batch.dead))]
        return self._outcomes(batch.refs, decided, per_input)

    def _count_facts(self, documents: Sequence[Facts]) -> list[RareFacts]:
        """Count the documents' facts, in order, in one round trip, and decide each one's
        rare facts from the counts before it (scripts/facts.lua). Outside the scripts:
        BITFIELD called from Lua costs several times the counting itself."""
        if not documents:
            return []
        keys = self.keys
        read_before = self._counts_before and self.rule.facts_generation > 0
        size = 1 << self.params.facts_bits
        commands = [
            # Creates the current table at its full size when there is none (a new index,
            # a new generation), one byte past the counters; BITFIELD growing it would
            # over-allocate by up to 2x. A no-op on an existing table.
            pack_command(["SETRANGE", keys.fact_counts, size, b"\0"]),
            pack_command(["HINCRBY", keys.index_meta, "df_docs", len(documents)]),
            pack_command(["HMGET", keys.index_meta, "df_generation", "df_previous_docs"]),
        ]
        counted = [facts for facts in documents if len(facts.cells)]
        counting = packed_operations(counted, "INCRBY")
        # The previous generation's counters are read only when there is one.
        reading = packed_operations(counted, "GET") if read_before else []
        for i, facts in enumerate(counted):
            commands.append(
                pack_command(
                    ["BITFIELD", keys.fact_counts, "OVERFLOW", "SAT"],
                    counting[i],
                    FACT_OPERATION_ARGS["INCRBY"] * len(facts.cells),
                )
            )
            if read_before:
                commands.append(
                    pack_command(
                        ["BITFIELD_RO", keys.fact_counts_before],
                        reading[i],
                        FACT_OPERATION_ARGS["GET"] * len(facts.cells),
                    )
                )
        replies = iter(run_commands(self.client, commands))
        next(replies)  # SETRANGE
        docs_after = int(next(replies))
        generation, previous = (int(value or 0) for value in next(replies))
        self._counts_before = previous > 0
        first = docs_after - len(documents)  # documents counted before the batch
        total = sum(len(facts.cells) for facts in counted)
        counts = np.zeros(total, dtype=np.int64)
        if total:
            step = 2 if read_before else 1
            answers = [next(replies) for _ in range(len(counted) * step)]
            # BITFIELD INCRBY answers the count after its own: the documents before it are
            # one fewer.
            counts += np.fromiter(chain.from_iterable(answers[::step]), np.int64, total) - 1
            if read_before:
                counts += np.fromiter(chain.from_iterable(answers[1::step]), np.int64, total)
        seen = first + np.arange(len(documents)) + previous
        rule = self.rule
        return rare_facts(documents, counts, seen, rule.rare_floor, rule.rare_ratio, generation)

    def reset(self) -> int:
        """Delete the whole index (not the streams or stats); returns the keys deleted."""
        self._checked = False
        return delete_matching(self.client, self.keys, self.keys.index_pattern)

    def describe(self) -> dict[str, Any]:
        """Documents indexed, the memory the index uses, its parameters and settings."""
        client = self.client
        meta = {as_text(k): as_text(v) for k, v in client.hgetall(self.keys.index_meta).items()}
        documents = int(client.get(self.keys.index_count) or 0)
        keys = used = 0
        batch: list[Any] = []

        def measure() -> int:
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            return sum(int(n or 0) for n in pipe.execute())

        for key in client.scan_iter(match=self.keys.index_pattern, count=1000):
            batch.append(key)
            keys += 1
            if len(batch) == 1000:
                used += measure()
                batch.clear()
        if batch:
            used += measure()
        info: Any = client.info("memory")
        watermark = int(meta.pop("watermark", "0") or 0)
        return {
            "documents": documents,
            "memory_bytes": used,
            "bytes_per_document": round(used / documents, 1) if documents else None,
            "keys": keys,
            "retention_days": self.retention_seconds / 86400,
            "retention_clock": self.retention_clock,
            "watermark": _iso(watermark) if watermark else None,
            "parameters": meta,
            "decision": asdict(self.rule),
            "redis_used_memory": int(info.get("used_memory", 0)),
            "redis_maxmemory_policy": str(info.get("maxmemory_policy", "")),
        }

    @staticmethod
    def _outcomes(
        refs: Sequence[str], facts: Sequence[RareFacts | None], replies: Sequence[Any]
    ) -> list[Outcome]:
        outcomes = []
        for ref, rare, reply in zip(refs, facts, replies, strict=True):
            kind = as_text(reply[0])
            entry = as_text(reply[1]) if len(reply) > 1 else ""
            if len(reply) < 5:  # 'already', or a dead-letter reply
                outcomes.append(Outcome(ref, kind, entry_id=entry))
                continue
            similarity = float(as_text(reply[3])) if kind in ("exact", "near") else 0.0
            original = as_text(reply[2]) if kind in ("exact", "near") else ""
            common, tag = (rare.common_cells, rare.tag) if rare else ((), "")
            relation, linked = "", ""
            if kind == "published" and len(reply) > 5:
                relation, linked = as_text(reply[5]), as_text(reply[2])
            outcomes.append(
                Outcome(ref, kind, original, similarity, common, tag, entry, relation, linked)
            )
        return outcomes
