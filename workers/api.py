"""newsdedup inside a Python process: submit documents, get each one's outcome back.

    from workers.api import open_index

    with open_index() as index:
        outcomes = index.submit(["text one ...", "text two ..."])

`submit` runs the workers' own pipeline (workers.pipeline.process) in this process, no
Celery: the same cleaning, fingerprints and index scripts, publishing to the same
streams. What it decides is what a worker would decide, and consumers of the streams see
its documents like any others. docs/python-api.md is the user's guide.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import redis

from workers.config import ConfigError, Settings, load_settings, override_settings
from workers.document import Document, LoadedInput
from workers.index.dedup import IndexMismatch, Outcome
from workers.index.keys import JOB_TTL_SECONDS, Keys
from workers.ingest.load import cap_title, document_from_record, encodable, record_text
from workers.ops.connection import (
    RedisUnavailable,
    ServerEvicts,
    as_text,
    server_eviction_risk,
)
from workers.ops.streams import Entry, iter_range
from workers.pipeline.process import process_with_runtime
from workers.records import (
    DeadRecord,
    Decision,
    DocRecord,
    DuplicateRecord,
    StreamRecord,
    read_entry,
)
from workers.worker.jobs import new_job_id
from workers.worker.runtime import connected_runtime

__all__ = [
    "ConfigError",
    "Index",
    "IndexMismatch",
    "InputOutcome",
    "RedisUnavailable",
    "open_index",
    "text_id",
]

# The source of an input that names none.
DEFAULT_SOURCE = "python"
# What `text_id` puts before the digest.
TEXT_ID_PREFIX = "text:"

Status = Literal["published", "duplicate", "dead"]
StreamName = Literal["docs", "duplicates", "dead"]
# An input to `Index.submit`: a text, a record (the keys of a JSONL record), a Document.
Input = str | Mapping[str, Any] | Document

_STREAM_OF_STATUS: dict[Status, StreamName] = {
    "published": "docs",
    "duplicate": "duplicates",
    "dead": "dead",
}
_STREAM_OF_KIND: dict[str, StreamName] = {
    "published": "docs",
    "exact": "duplicates",
    "near": "duplicates",
    "dead": "dead",
}


def text_id(text: str) -> str:
    """The id of an input that brings none: "text:" and the 20 hex digits of the BLAKE2b
    digest (digest_size=10) of its text as given, UTF-8. The same text always gets the same
    id, and two texts the same id with a chance of about n^2 / 2^81."""
    digest = hashlib.blake2b(encodable(text).encode("utf-8"), digest_size=10)
    return TEXT_ID_PREFIX + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What became of one submitted input: the entry it was published as, in `docs`,
    `duplicates` or `dead`, typed as workers.records reads it. The properties give the
    fields most asked for; the others are on `record`."""

    entry_id: str
    """The entry's id in its stream."""
    record: DocRecord | DuplicateRecord | DeadRecord
    """The entry, as every consumer of the stream reads it."""

    @property
    def stream(self) -> StreamName:
        return _STREAM_OF_STATUS[self.status]

    @property
    def status(self) -> Status:
        if isinstance(self.record, DocRecord):
            return "published"
        return "duplicate" if isinstance(self.record, DuplicateRecord) else "dead"

    @property
    def id(self) -> str:
        """Published: the id it was published under (its own, or `<id>~<n>` when a live
        document already held it). Duplicate or dead: the input's own id."""
        return self.record.id

    @property
    def input_ref(self) -> str:
        return self.record.input_ref

    @property
    def duplicate_of(self) -> str | None:
        """The published id of the document this input repeats."""
        return self.record.duplicate_of if isinstance(self.record, DuplicateRecord) else None

    @property
    def kind(self) -> Literal["exact", "near"] | None:
        return self.record.kind if isinstance(self.record, DuplicateRecord) else None

    @property
    def match(self) -> Literal["url", "content", "minhash"] | None:
        return self.record.match if isinstance(self.record, DuplicateRecord) else None

    @property
    def similarity(self) -> float | None:
        return self.record.similarity if isinstance(self.record, DuplicateRecord) else None

    @property
    def containment(self) -> float | None:
        return self.record.containment if isinstance(self.record, DuplicateRecord) else None

    @property
    def rule(self) -> str | None:
        """The rule that published or dropped it (`records.RULES`: "new", "update",
        "partial", "near-jaccard", ...); `decision` has the candidates it weighed."""
        decision = self.decision
        return decision.rule if decision is not None else None

    @property
    def decision(self) -> Decision | None:
        """Why it was published or dropped: the rule and the candidates weighed."""
        return None if isinstance(self.record, DeadRecord) else self.record.reason

    @property
    def update_of(self) -> str | None:
        """An update: the published id of the version it replaces (`version` counts)."""
        return self.record.update_of if isinstance(self.record, DocRecord) else None

    @property
    def version(self) -> int | None:
        return self.record.version if isinstance(self.record, DocRecord) else None

    @property
    def partial_of(self) -> str | None:
        """A partial: the published id of the much longer document holding most of it."""
        return self.record.partial_of if isinstance(self.record, DocRecord) else None

    @property
    def contains(self) -> str | None:
        """A partial: the published id of the much shorter document it holds most of."""
        return self.record.contains if isinstance(self.record, DocRecord) else None

    @property
    def reason(self) -> str | None:
        """Why a dead input is dead (a slug such as `empty_text`)."""
        return self.record.reason if isinstance(self.record, DeadRecord) else None

    @property
    def error(self) -> str | None:
        return self.record.error if isinstance(self.record, DeadRecord) else None

    def as_dict(self) -> dict[str, Any]:
        """The outcome in one flat dict (a row for pandas): None where a field does not
        apply."""
        return {name: getattr(self, name) for name in _SUMMARY}

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items() if value)
        return f"InputOutcome({shown})"


_SUMMARY = (
    "status",
    "id",
    "rule",
    "duplicate_of",
    "kind",
    "match",
    "similarity",
    "containment",
    "update_of",
    "version",
    "partial_of",
    "contains",
    "reason",
    "error",
    "input_ref",
    "stream",
    "entry_id",
)


class Index:
    """An open newsdedup index (`open_index`): submit documents, read the streams. Close it
    when done (or use it as a context manager): an embedded server it started stops once
    no process uses it. One thread at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._resources = ExitStack()
        opened = connected_runtime(settings, writes=True)
        self._runtime, ends = self._resources.enter_context(opened)
        # An index left open is closed before the interpreter tears its modules down:
        # closing it then (stopping an embedded server) would fail with a traceback.
        atexit.register(self._close_at_exit)
        # The Redis the index is in (the embedded server's: its Unix socket), and whether it
        # is the embedded server of `settings.data_dir`.
        self.redis_url = ends.redis_url
        self.embedded = ends.embedded

    @property
    def client(self) -> redis.Redis:
        """A redis-py client of the index's Redis (bytes replies)."""
        return self._runtime.client

    @property
    def keys(self) -> Keys:
        """Its key names: `keys.docs`, `keys.duplicates`, `keys.stream("dead")`, ..."""
        return self._runtime.keys

    def submit(
        self, inputs: Iterable[Input], *, source: str = DEFAULT_SOURCE
    ) -> list[InputOutcome]:
        """Clean, deduplicate and publish `inputs`, in order; one outcome per input, in the
        same order. An input is a text, a record with the keys of a JSONL record (`id`,
        `title`, `text`, `url`, `source`, `published`, ...), or a Document. One without an
        id gets `text_id(text)`; one without a source gets `source`."""
        if isinstance(inputs, str | Mapping | Document):
            raise TypeError("submit takes a list of inputs: wrap a single one in a list")
        job_id = new_job_id()
        loaded = [
            self._loaded(item, f"python:{job_id}#{n}", source) for n, item in enumerate(inputs)
        ]
        refs = [item.input_ref for item in loaded]
        if len(set(refs)) < len(refs):
            twice = next(ref for ref in refs if refs.count(ref) > 1)
            raise ValueError(f"two inputs have the input_ref {twice!r}: refs must differ")
        if (risk := server_eviction_risk(self.client)) is not None:
            raise ServerEvicts(risk, self.redis_url)  # set after the index was opened
        since = self._begin_job(job_id)
        try:
            # A job of its own for each call: the index's redelivery guard (the job's done
            # set) makes a chunk that a lost connection sends again count once, and never
            # stops a later call from submitting the same texts again.
            result = process_with_runtime(self._runtime, loaded, job_id=job_id)
        finally:
            # The call is over: nothing can be sent again, and the job is nobody's to read.
            with contextlib.suppress(redis.RedisError):
                keys = self._runtime.keys
                self._runtime.client.unlink(keys.job(job_id), keys.job_done(job_id))
        decided = {outcome.input_ref: outcome for outcome in result.outcomes}
        return self._outcomes([decided[ref] for ref in refs], since)

    def records(
        self, stream: StreamName, *, limit: int | None = None
    ) -> Iterator[tuple[str, StreamRecord]]:
        """(entry id, typed record) of each entry of `stream`, from the oldest on."""
        for entry_id, entry_fields in iter_range(
            self.client, self.keys.stream(stream), limit=limit
        ):
            yield entry_id, read_entry(stream, entry_fields)

    def close(self) -> None:
        """Disconnect; let go of the embedded server (stopping it if this was its last
        user). Closing twice is harmless."""
        atexit.unregister(self._close_at_exit)
        self._resources.close()

    def _close_at_exit(self) -> None:
        """`close`, for an index still open when the interpreter exits. What keeps it from
        closing (an embedded server that cannot write its data yet) is said in one line, as
        a command says it: an exit handler's error would print a traceback."""
        try:
            self.close()
        except RedisUnavailable as exc:
            print(f"newsdedup: error: {exc}", file=sys.stderr)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _loaded(self, item: Input, ref: str, source: str) -> LoadedInput:
        if isinstance(item, str):
            text = encodable(item)
            return Document(id=text_id(text), source=source, text=text, input_ref=ref)
        if isinstance(item, Mapping):
            record = dict(item)
            return document_from_record(
                record,
                ref,
                default_source=source,
                max_title_chars=self.settings.ingest.max_title_chars,
                default_id=text_id(record_text(record)),
            )
        if isinstance(item, Document):
            # Every text made writable (no lone surrogate: see `encodable`); the id, source
            # and ref filled in when empty and the title capped, as a record's would be.
            return replace(
                item,
                id=encodable(item.id) or text_id(item.text),
                source=encodable(item.source) or source,
                text=encodable(item.text),
                input_ref=encodable(item.input_ref) or ref,
                title=cap_title(encodable(item.title), self.settings.ingest.max_title_chars),
                url=encodable(item.url),
                published_at=encodable(item.published_at),
                author=encodable(item.author),
                language=encodable(item.language),
            )
        raise TypeError(f"an input is a str, a mapping or a Document, not {type(item).__name__}")

    def _begin_job(self, job_id: str) -> str:
        """Create a call's job keys with the expiry of a backfill job's, so that they go
        even if this process dies before it deletes them (the index scripts keep an
        expiry); return the stream id of the server's clock now."""
        keys = self._runtime.keys
        pipe = self._runtime.client.pipeline(transaction=False)
        pipe.time()
        pipe.hset(keys.job(job_id), "kind", "python")
        # Not a member the guard uses: those are 12-byte digests (`done_member`).
        pipe.zadd(keys.job_done(job_id), {b"python": 0})
        for key in (keys.job(job_id), keys.job_done(job_id)):
            pipe.expire(key, JOB_TTL_SECONDS)
        (seconds, micros), *_ = pipe.execute()
        return f"{seconds * 1000 + micros // 1000}-0"

    def _outcomes(self, decided: list[Outcome], since: str) -> list[InputOutcome]:
        """Each input's entry, read back from its stream (one round trip). An input the
        guard answered `already` for (a chunk sent again after its reply was lost) was
        published by the first sending: its entry is found by its ref among the entries
        since the call began."""
        keys = self._runtime.keys
        pipe = self._runtime.client.pipeline(transaction=False)
        for outcome in decided:
            if outcome.entry_id:
                key = keys.stream(_STREAM_OF_KIND[outcome.kind])
                pipe.xrange(key, min=outcome.entry_id, max=outcome.entry_id, count=1)
        read: Iterator[list[Any]] = iter(pipe.execute())
        resent = {o.input_ref for o in decided if not o.entry_id}
        found = self._entries_of(resent, since) if resent else {}
        outcomes = []
        for outcome in decided:
            entry: tuple[StreamName, Entry] | None = None
            if outcome.entry_id:
                replies = next(read)
                if replies:
                    fields = {as_text(k): as_text(v) for k, v in replies[0][1].items()}
                    entry = (_STREAM_OF_KIND[outcome.kind], (outcome.entry_id, fields))
            else:
                entry = found.get(outcome.input_ref)
            if entry is None:
                raise LookupError(
                    f"the entry of input {outcome.input_ref} is gone from its stream "
                    "(trimmed by streams.*_maxlen?)"
                )
            stream, (entry_id, fields) = entry
            outcomes.append(InputOutcome(entry_id, read_entry(stream, fields)))
        return outcomes

    def _entries_of(self, refs: set[str], since: str) -> dict[str, tuple[StreamName, Entry]]:
        found: dict[str, tuple[StreamName, Entry]] = {}
        for stream in ("docs", "duplicates", "dead"):
            key = self._runtime.keys.stream(stream)
            for entry in iter_range(self._runtime.client, key, limit=None, start=since):
                ref = entry[1].get("input_ref", "")
                if ref in refs:
                    found[ref] = (stream, entry)
        return found


def open_index(
    data_dir: str | Path | None = None,
    *,
    redis_url: str | None = None,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Index:
    """Open the index. Settings: the defaults, then `config` (a TOML file; else
    NEWSDEDUP_CONFIG), then the environment (NEWSDEDUP_*, REDIS_URL), then `overrides`
    (nested like the file: `{"prefix": "nd:", "dedup": {"threshold": 0.6}}`) and the
    arguments.

    Redis: `redis_url` when given; with `data_dir`, the embedded server of that folder
    (whatever REDIS_URL says); with neither, REDIS_URL or the config's `redis_url` when
    set, else the embedded server of NEWSDEDUP_DATA_DIR (default ./.newsdedup). The
    embedded server is started, or attached to when another process runs it.

    Raises ConfigError (a bad setting), RedisUnavailable (no Redis, or one that deletes
    keys when full: then at any submit too), and, at the first submit, IndexMismatch (an
    index built with other fingerprint settings); each with a one-line message."""
    if data_dir is not None and redis_url is not None:
        raise ValueError("give data_dir (the embedded server) or redis_url, not both")
    changes = dict(overrides or {})
    if data_dir is not None:
        changes.update(data_dir=Path(data_dir), redis_url=None)
    if redis_url is not None:
        changes["redis_url"] = redis_url
    settings = load_settings(config)
    if changes:
        settings = override_settings(settings, changes)
    return Index(settings)
