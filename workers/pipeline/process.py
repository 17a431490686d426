"""Composition of the stages: input → clean → fingerprint → index/publish.

The stages (`normalise_document`, `strip_document`, fingerprinting) are pure.
`process_inputs` is the one place that touches Redis: the line learner is read once per
chunk of `SUBMIT_CHUNK` inputs before stripping and written once the index has decided,
and the index is called once per chunk.

A chunk's scripts run in the Redis server while the worker loads, cleans and fingerprints
the next chunk (`overlapped`): the two are on different processes, often different cores,
so neither waits for the other. The index decides in the order chunks are sent, which is
input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from celery.exceptions import SoftTimeLimitExceeded

from workers.clean.boilerplate.learner import Candidate, LineLearner, Pending
from workers.clean.boilerplate.links import link_probes, link_targets
from workers.clean.boilerplate.rules import RuleSet
from workers.clean.boilerplate.strip import learnable_lines, strip_boilerplate
from workers.clean.fingerprint import Fingerprinter, input_key
from workers.clean.matching import fold_lines, matching_tokens, split_tokens
from workers.clean.normalise import has_visible_text, normalise_for_publishing
from workers.config import DEFAULTS
from workers.document import DeadInput, Document, LoadedInput
from workers.index.dedup import Accepted, DedupIndex, Outcome, ScriptBatch, iso_to_epoch
from workers.ops.streams import iter_range
from workers.records import DocRecord

if TYPE_CHECKING:
    from workers.worker.runtime import Runtime

# Inputs per index round trip. Small enough that a task of `ingest.batch_size` inputs is
# several chunks (the first chunk's wait is the only one not overlapped), large enough
# that the round trip itself is noise.
SUBMIT_CHUNK = 50

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def chunked(items: Iterable[_Item], size: int) -> Iterator[list[_Item]]:
    """Consecutive lists of `size` items (the last may be shorter), consumed lazily."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def overlapped(items: Iterable[_Item], send: Callable[[_Item], _Result]) -> Iterator[_Result]:
    """`send(item)` for each item, in order, each on one background thread while the caller's
    iterable produces the next item: double buffering between CPU work here and I/O (the
    Redis server's work) there. At most one send is in flight, so sends stay in order; a
    send's exception is raised here, before anything after it is sent."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsdedup-submit") as pool:
        pending: Future[_Result] | None = None
        for item in items:  # producing this item overlaps the pending send
            if pending is not None:
                result = pending.result()
                pending = pool.submit(send, item)
                yield result
            else:
                pending = pool.submit(send, item)
        if pending is not None:
            yield pending.result()


# A line (paragraph) longer than this is not prose: minified markup, a base64 blob, a
# table dumped on one line. Such a document goes to `dead` as line_too_long.
MAX_LINE_CHARS = 100_000


def normalise_document(doc: Document) -> Document | DeadInput:
    """Title and body normalised for publishing; a document with no text, or with an
    extremely long line, is dead."""
    longest = max((len(line) for line in doc.text.split("\n")), default=0)
    if longest > MAX_LINE_CHARS:
        return DeadInput.of(
            doc, "line_too_long", f"a line of {longest} characters (at most {MAX_LINE_CHARS})"
        )
    title = " ".join(normalise_for_publishing(doc.title).split())
    body = normalise_for_publishing(doc.text)
    if not body or not has_visible_text(body):
        return DeadInput.of(
            doc,
            "empty_text",
            "the document has no visible text" if body else "the document has no text",
        )
    return replace(doc, title=title, text=body, input_key=input_key(title, body))


@dataclass(slots=True, frozen=True)
class Cleaned:
    """A cleaned document and the tokens it is fingerprinted and keyed on."""

    doc: Document
    # `matching_tokens(doc.text)`: the body alone is fingerprinted (a re-headlined copy is
    # still the same article), from the folding the stripping already did.
    tokens: list[str]


def strip_document(
    doc: Document,
    rules: RuleSet,
    learned: frozenset[str] = frozenset(),
    keep_headlines: bool = False,
    link_zone: int = DEFAULTS.boilerplate.zone_lines,
    links: frozenset[str] = frozenset(),
    folded: Sequence[str] | None = None,
) -> Cleaned | DeadInput:
    """Strip boilerplate lines from a normalised document (`folded`: `fold_lines` of its
    text, when the caller has it). One made of nothing but boilerplate (an opinion
    disclaimer alone, a page of share buttons) is no article: it goes to `dead` as
    all_boilerplate rather than out as an empty or furniture-only text. With
    `keep_headlines` (feed entries, where the headline is the news: a video, a live page, a
    price ticker whose summary is a template) it goes out as a headline-only document
    instead, its text the headline, when it has one.

    A cleaned text with no word is dead too: a text of only emoji, punctuation or symbols
    has none (matching folds all of those away), and is no article. Indexed, every such
    text would share the one empty exact-content key, so two different emoji strings
    would be "exact duplicates"."""
    result = strip_boilerplate(
        doc.text,
        title=doc.title,
        source=doc.source,
        rules=rules,
        learned=learned,
        links=links,
        link_zone=link_zone,
        author=doc.author,
        folded=folded,
    )
    if result.all_boilerplate and keep_headlines and doc.title:
        cleaned = Cleaned(replace(doc, text=doc.title, stripped=[]), matching_tokens(doc.title))
    elif result.all_boilerplate:
        return DeadInput.of(doc, "all_boilerplate", "every line of the document is boilerplate")
    else:
        cleaned = Cleaned(
            replace(doc, text=result.text, stripped=result.stripped), split_tokens(result.matching)
        )
    if cleaned.tokens:
        return cleaned
    return DeadInput.of(
        doc, "no_words", "the text has no letter or digit (only symbols, emoji or punctuation)"
    )


def clean_document(doc: Document, rules: RuleSet) -> Cleaned | DeadInput:
    """Normalise and strip one document with the rules alone (no learned lines)."""
    normalised = normalise_document(doc)
    if isinstance(normalised, DeadInput):
        return normalised
    return strip_document(normalised, rules)


def clean_and_fingerprint(
    doc: Document, rules: RuleSet, fingerprinter: Fingerprinter
) -> Accepted | DeadInput:
    """One document, rules only: for tests and tools that index a handful by hand."""
    cleaned = clean_document(doc, rules)
    if isinstance(cleaned, DeadInput):
        return cleaned
    fingerprint = fingerprinter.fingerprint(cleaned.tokens)
    return Accepted(cleaned.doc, fingerprint, len(doc.text.encode("utf-8")))


_Stage = TypeVar("_Stage", bound=Document | Cleaned | DeadInput)


def _safely(doc: Document, stage: Callable[[], _Stage]) -> _Stage | DeadInput:
    # One pathological document must not take its whole batch down (and with it the
    # accounting of 199 good ones): it goes to `dead` with the error instead.
    try:
        return stage()
    except SoftTimeLimitExceeded:  # the task's clock, not this document's fault (yet)
        raise
    except Exception as exc:
        return DeadInput.of(doc, "processing_error", f"{type(exc).__name__}: {exc}")


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for outcome in self.outcomes:
            totals[outcome.kind] = totals.get(outcome.kind, 0) + 1
        return totals


@dataclass(slots=True)
class CleanedChunk:
    accepted: list[Accepted]
    dead: list[tuple[DeadInput, int]]  # with the input's size in bytes
    learning: Pending | None = None  # to hand to `LineLearner.record` once decided


@dataclass(slots=True)
class PreparedChunk:
    """A chunk normalised and folded, with what the line learner is asked about it: the
    first half of `clean_chunk`, the part that needs nothing from Redis."""

    normalised: list[tuple[Document, int]]  # with the input's size in bytes
    folded: list[list[str]]  # `fold_lines` of each document's text
    dead: list[tuple[DeadInput, int]]
    candidates: list[Candidate] | None  # None without a learning learner
    zone: int


def prepare_chunk(
    inputs: Iterable[LoadedInput], rules: RuleSet, learner: LineLearner | None = None
) -> PreparedChunk:
    """Normalise and fold inputs, and gather each one's learnable lines and links."""
    normalised: list[tuple[Document, int]] = []
    dead: list[tuple[DeadInput, int]] = []
    for item in inputs:
        result = (
            item
            if isinstance(item, DeadInput)
            else _safely(item, partial(normalise_document, item))
        )
        if isinstance(result, DeadInput):
            dead.append((result, 0))
        else:
            original = item.text if isinstance(item, Document) else ""
            normalised.append((result, len(original.encode("utf-8"))))

    # Each document's lines are folded once, for the links, the stripping and its tokens.
    folded = [fold_lines(doc.text) for doc, _ in normalised]
    if learner is None or not learner.settings.enabled:
        return PreparedChunk(normalised, folded, dead, None, DEFAULTS.boilerplate.zone_lines)
    zone = learner.settings.zone_lines
    with_links = learner.settings.link_memory
    candidates: list[Candidate] = []
    for (doc, _), lines in zip(normalised, folded, strict=True):
        keys: dict[str, str] = {}  # the learnable lines' keys, for matching variants
        learnable = learnable_lines(
            doc.text, source=doc.source, rules=rules, zone=zone, folded=lines, keys=keys
        )
        candidates.append(
            Candidate(
                doc.input_ref,
                doc.source,
                learnable,
                doc.text,
                link_targets(doc.title, doc.text, lines) if with_links else [],
                link_probes(doc.text, zone, lines) if with_links else [],
                keys,
            )
        )
    return PreparedChunk(normalised, folded, dead, candidates, zone)


@dataclass(slots=True)
class PlannedChunk:
    """A prepared chunk with the learner's answer (one Redis read): what to trim."""

    prepared: PreparedChunk
    trims: list[frozenset[str]]
    links: list[frozenset[str]]
    learning: Pending | None


def plan_chunk(prepared: PreparedChunk, learner: LineLearner | None = None) -> PlannedChunk:
    """The lines each document trims as learned, and the links it has (`LineLearner.plan`)."""
    count = len(prepared.normalised)
    if learner is None or prepared.candidates is None:
        return PlannedChunk(prepared, [frozenset()] * count, [frozenset()] * count, None)
    trims, pending = learner.plan(prepared.candidates)
    return PlannedChunk(prepared, trims, pending.links, pending)


def finish_chunk(
    planned: PlannedChunk,
    rules: RuleSet,
    fingerprinter: Fingerprinter,
    keep_headlines: bool = False,
) -> CleanedChunk:
    """Strip and fingerprint a planned chunk: the second half of `clean_chunk`."""
    prepared = planned.prepared
    dead = list(prepared.dead)
    cleaned: list[tuple[Document, int]] = []
    tokens: list[list[str]] = []
    for (doc, nbytes), learned, found, lines in zip(
        prepared.normalised, planned.trims, planned.links, prepared.folded, strict=True
    ):
        stripped = _safely(
            doc,
            partial(
                strip_document, doc, rules, learned, keep_headlines, prepared.zone, found, lines
            ),
        )
        if isinstance(stripped, DeadInput):
            dead.append((stripped, nbytes))
        else:
            cleaned.append((stripped.doc, nbytes))
            tokens.append(stripped.tokens)
    # One numpy pass for the whole chunk's MinHashes.
    fingerprints = fingerprinter.fingerprint_many(tokens)
    accepted = [
        Accepted(doc, fp, nbytes) for (doc, nbytes), fp in zip(cleaned, fingerprints, strict=True)
    ]
    return CleanedChunk(accepted, dead, planned.learning)


def clean_chunk(
    inputs: Iterable[LoadedInput],
    rules: RuleSet,
    fingerprinter: Fingerprinter,
    learner: LineLearner | None = None,
    keep_headlines: bool = False,
) -> CleanedChunk:
    """Clean and fingerprint inputs, trimming the lines `learner` has learned."""
    planned = plan_chunk(prepare_chunk(inputs, rules, learner), learner)
    return finish_chunk(planned, rules, fingerprinter, keep_headlines)


def process_inputs(
    inputs: Iterable[LoadedInput],
    *,
    job_id: str,
    rules: RuleSet,
    fingerprinter: Fingerprinter,
    index: DedupIndex,
    guard_prefix: str = "",
    batch: str = "",
    now: float | None = None,
    chunk_size: int = SUBMIT_CHUNK,
    learner: LineLearner | None = None,
    keep_headlines: bool = False,
) -> BatchResult:
    # Every chunk's tentative learner counts, so that none outlives this call: recorded
    # ones are gone already, and one never sent (an error, a send failing) is dropped.
    planned_counts: list[Pending] = []

    def send(item: tuple[ScriptBatch, Pending | None]) -> list[Outcome]:
        batch, learning = item
        outcomes = index.run(batch)
        if learner is not None and learning is not None:
            # Only documents kept as new teach the learner (workers/clean/boilerplate/learner.py).
            learner.record(learning, (o.input_ref for o in outcomes if o.kind == "published"))
        return outcomes

    def batches() -> Iterator[tuple[ScriptBatch, Pending | None]]:
        # The learner's read for chunk k+1 goes out before chunk k is sent: sent after,
        # it would queue in Redis behind chunk k's scripts and hold this thread up.
        ready: tuple[ScriptBatch, Pending | None] | None = None
        for chunk in chunked(inputs, chunk_size):
            planned = plan_chunk(prepare_chunk(chunk, rules, learner), learner)
            if planned.learning is not None:
                planned_counts.append(planned.learning)
            if ready is not None:
                yield ready
            cleaned = finish_chunk(planned, rules, fingerprinter, keep_headlines)
            calls = index.build_batch(
                job_id,
                cleaned.accepted,
                cleaned.dead,
                guard_prefix=guard_prefix,
                batch=batch,
                now=now,
            )
            ready = (calls, cleaned.learning)
        if ready is not None:
            yield ready

    # Everything but the round trips happens here, on the caller's thread; the background
    # thread only sends and waits, so the two never queue for the interpreter lock.
    result = BatchResult()
    try:
        for outcomes in overlapped(batches(), send):
            learn_common_facts(fingerprinter, outcomes)
            result.outcomes.extend(outcomes)
    finally:
        if learner is not None:
            for learning in planned_counts:
                learner.discard(learning)
    return result


def process_with_runtime(
    runtime: Runtime,
    inputs: Iterable[LoadedInput],
    *,
    job_id: str,
    guard_prefix: str = "",
    batch: str = "",
    keep_headlines: bool = False,
) -> BatchResult:
    """`process_inputs` with a worker's rules, fingerprinter, index and line learner."""
    return process_inputs(
        inputs,
        job_id=job_id,
        batch=batch,
        rules=runtime.rules,
        fingerprinter=runtime.fingerprinter,
        index=runtime.index,
        guard_prefix=guard_prefix,
        learner=runtime.learner,
        keep_headlines=keep_headlines,
    )


def learn_common_facts(fingerprinter: Fingerprinter, outcomes: Iterable[Outcome]) -> None:
    """Feed the index's reports of common facts back to the fingerprinter."""
    for outcome in outcomes:
        if outcome.facts_tag:
            fingerprinter.learn_common(outcome.facts_tag, outcome.common_cells)


def rebuild_index(runtime: Runtime, *, batch_size: int = 500) -> dict[str, int]:
    """Re-index every document in the `docs` stream (already cleaned) in stream order."""

    def stored() -> Iterator[tuple[Document, float]]:
        for entry_id, fields in iter_range(runtime.client, runtime.keys.docs, limit=None):
            record = DocRecord.from_fields(fields)
            doc = Document(
                id=record.id,
                source=record.source,
                text=record.text,
                input_ref=entry_id,
                title=record.title,
                url=record.url,
                published_at=record.published_at,
                author=record.author,
                language=record.language,
                guid=record.guid or "",  # a feed entry's identity (`dedup.identity_key`)
            )
            yield doc, _ingested_seconds(record.ingested_at, entry_id)

    def fingerprinted(batch: list[tuple[Document, float]]) -> list[tuple[Accepted, float]]:
        fingerprints = runtime.fingerprinter.fingerprint_many(
            [matching_tokens(doc.text) for doc, _ in batch]
        )
        return [
            (Accepted(doc, fp, 0), ingested)
            for (doc, ingested), fp in zip(batch, fingerprints, strict=True)
        ]

    totals: dict[str, int] = {}
    chunks = (
        runtime.index.build_reindex_batch(fingerprinted(batch))
        for batch in chunked(stored(), batch_size)
    )
    for outcomes in overlapped(chunks, runtime.index.run):
        learn_common_facts(runtime.fingerprinter, outcomes)
        for outcome in outcomes:
            totals[outcome.kind] = totals.get(outcome.kind, 0) + 1
    return totals


def _ingested_seconds(ingested_at: str, entry_id: str) -> float:
    stamp = iso_to_epoch(ingested_at)
    if stamp is None:
        return int(entry_id.split("-")[0]) / 1000  # the stream id's own millisecond clock
    return stamp
