"""The output contract: one typed record per entry of each output stream.

newsdedup publishes to three Redis streams under its key prefix: `docs` (one entry per
unique, cleaned document), `duplicates` (one per input found to repeat a published one)
and `dead` (one per input that could not be processed, with the reason). Each entry is
one of the records below, flattened to string fields (`to_fields`); `from_fields` reads
an entry back, typed. The workers build their entries here, `newsdedup tail` reads them
here, and so can any consumer:

    import redis
    from workers.records import DocRecord

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    for entry_id, fields in r.xrange("newsdedup:docs", count=10):
        doc = DocRecord.from_fields(fields)
        print(entry_id, doc.id, doc.source, doc.stripped_lines, doc.title)

Some fields are filled by the index script (workers/index), which decides what the input
is: it may publish a document under another id (then `input_id` names the input's own)
and it adds to a duplicate what it is a duplicate of (`duplicate_of`, `similarity`,
`containment`, `kind`, `match`). A field that is None is not on the wire: the worker
leaves the index's fields None, and `input_id` is absent unless the id was changed.

Reading is lenient: a field an entry lacks (written by an older version) reads as empty
(zero, empty list), and a field a record does not know is left to the caller.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import UnionType
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from workers.document import DeadInput, Document
from workers.markdown import table

_Record = TypeVar("_Record", bound="_StreamRecord")


@dataclass(frozen=True, slots=True)
class RemovedLine:
    """One line the boilerplate stage removed, and the rule that removed it."""

    line: str
    rule: str


# Why the index decided what it did (`reason` in `docs` and `duplicates`): the rule that
# made the decision, then the candidates it weighed. Each slug, and what it means.
RULES: dict[str, str] = {
    "new": "published: no candidate qualified",
    "partial": "published: most of one text is inside a much longer one (partial_of / contains)",
    "update": (
        "published: the same guid or URL as a published document, its text or headline changed"
    ),
    "near-off": "published: near-duplicate matching is off for its source",
    "exact-url": "duplicate: the same guid or URL and the same text, or a trivial edit of it",
    "exact-content": "duplicate: the same text (after matching normalisation)",
    "near-jaccard": "duplicate: estimated Jaccard at or above the threshold",
    "near-facts": "duplicate: rare facts agree, Jaccard at or above the facts threshold",
    "near-contained": (
        "duplicate: one text inside a much longer one that starts alike (a trimmed copy, "
        "or a longer version of the earlier text)"
    ),
    "near-stale": "duplicate: far apart in time, Jaccard at or above the stale threshold",
    "": "not recorded (an entry written by an older version)",
}
# A candidate's verdict: what it would have made of the document on its own.
VERDICTS: dict[str, str] = {
    "duplicate": "qualifies as the original",
    "partial_of": "a much longer text holding most of this one",
    "contains": "a much shorter text held in this one",
    "facts-conflict": "similar, but their rare facts (names, numbers) conflict",
    "time-gap": "too far apart in time for its similarity",
    "below-threshold": "not similar enough",
    "earlier-version": "the version an update replaces (the same guid or URL)",
}


@dataclass(frozen=True, slots=True)
class DecisionCandidate:
    """One published document the index weighed against an input."""

    id: str
    """Its published id."""
    similarity: float
    """Estimated Jaccard similarity of the two texts' shingles."""
    containment: float
    """Estimated share of the shorter text's shingles inside the other."""
    facts: Literal["agree", "conflict", "few"]
    """The rare facts (names, numbers): `agree`, `conflict`, or `few` to tell."""
    facts_share: float
    """Share of the smaller rare-fact set found in the other; -1 when there are none."""
    rare_facts: tuple[int, int]
    """Rare facts on each side: the input's, the candidate's."""
    gap_hours: int
    """Hours between the two documents' dates."""
    verdict: str
    """What it would have made of the input on its own (`VERDICTS`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "j": self.similarity,
            "c": self.containment,
            "facts": self.facts,
            "f": self.facts_share,
            "rare": list(self.rare_facts),
            "gap_h": self.gap_hours,
            "verdict": self.verdict,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DecisionCandidate:
        rare = value.get("rare") or (0, 0)
        return cls(
            id=str(value.get("id", "")),
            similarity=float(value.get("j", 0)),
            containment=float(value.get("c", 0)),
            facts=value.get("facts", "few"),
            facts_share=float(value.get("f", -1)),
            rare_facts=(int(rare[0]), int(rare[1])),
            gap_hours=int(value.get("gap_h", 0)),
            verdict=str(value.get("verdict", "")),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule that decided an input (`RULES`) and the candidates it weighed, best first."""

    rule: str
    candidates: tuple[DecisionCandidate, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Decision:
        candidates = value.get("candidates") or ()
        return cls(
            str(value.get("rule", "")), tuple(DecisionCandidate.from_json(c) for c in candidates)
        )


@dataclass(frozen=True, slots=True)
class _StreamRecord:
    """What the records share: each field to and from its text on the wire."""

    stream: ClassVar[str]
    # Fields an entry may lack (None in the record): not there unless they apply.
    optional: ClassVar[frozenset[str]] = frozenset()
    # Fields the index script adds to what the worker sends (None in what it sends).
    filled_by_index: ClassVar[tuple[str, ...]] = ()

    def to_fields(self) -> dict[str, str]:
        """The entry's fields as written to the stream, in order; None fields left out."""
        out = {}
        for name, to_text in _writers(type(self)):  # once per document: kept lean
            value = getattr(self, name)
            if value is not None:
                out[name] = value if to_text is None else to_text(value)
        return out

    @classmethod
    def from_fields(
        cls: type[_Record], entry: Mapping[str, str] | Mapping[bytes, bytes]
    ) -> _Record:
        """The record of a stream entry's fields (str or bytes, as a Redis client gives)."""
        given = {_text(k): _text(v) for k, v in entry.items()}
        values = {}
        for c in _codecs(cls):
            text = given.get(c.name)
            if text is not None:
                values[c.name] = c.from_text(text)
            elif not c.nullable:
                values[c.name] = c.from_text("")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready and typed (numbers, lists), in wire order; None fields left out."""
        return {
            c.name: c.to_json(value)
            for c in _codecs(type(self))
            if (value := getattr(self, c.name)) is not None
        }

    @classmethod
    def schema(cls) -> list[tuple[str, str, str]]:
        """(name, type, description) of each field, in wire order."""
        docs = _attribute_docs(cls)  # read from the source: only for the docs, not at work
        return [
            (c.name, c.type_name + (", optional" if c.name in cls.optional else ""), docs[c.name])
            for c in _codecs(cls)
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class DocRecord(_StreamRecord):
    """An entry of `docs`: one unique, cleaned document."""

    stream: ClassVar[str] = "docs"
    optional: ClassVar[frozenset[str]] = frozenset(
        {"input_id", "guid", "partial_of", "contains", "update_of", "version"}
    )
    filled_by_index: ClassVar[tuple[str, ...]] = (
        "reason",
        "partial_of",
        "contains",
        "update_of",
        "version",
    )

    id: str  # first: the index may publish the document under another id
    """The input's own id, or `<id>~<n>` (n = 2, 3, ...) when a document published within
    the retention window already has it: ids are unique in `docs`."""
    source: str
    """Outlet / source name."""
    url: str
    """The article URL when the input had one."""
    title: str
    """Normalised title."""
    text: str
    """Cleaned text; paragraphs separated by one empty line."""
    published_at: str
    """ISO 8601 when the input had a parseable date, else empty."""
    author: str
    """The author when the input or feed entry names one, else empty."""
    language: str
    """As declared by the input (`language`/`lang`) or its feed's config, else empty."""
    ingested_at: str
    """ISO 8601 UTC."""
    content_hash: str
    """Hash of the matching-normalised text (equal for exact duplicates)."""
    stripped_lines: int
    """How many boilerplate lines were removed."""
    stripped: tuple[RemovedLine, ...]
    """JSON list of `{"line", "rule"}`: what was removed and by which rule."""
    input_ref: str
    """Where it came from: `path`, `path:line` or `path#index` (a path escaped as under
    "Inputs" when not UTF-8); for a feed entry its identity, `guid:<guid>`,
    `url:<canonical link>` or `hash:<hex>`."""
    input_id: str | None = None
    """Only when the index gave `id` a suffix: the input's own id."""
    guid: str | None = None
    """Only for a feed entry with one: its guid as the feed gives it, its identity for
    updates (`newsdedup index rebuild` reads it back)."""
    reason: Decision | None = None
    """JSON: why it was published, `{"rule", "candidates"}` (see "Decisions" below;
    filled by the index)."""
    partial_of: str | None = None
    """Only for a partial: the published id of a much longer document holding most of
    this one (a round-up or feature embedding it)."""
    contains: str | None = None
    """Only for a partial: the published id of a much shorter document most of which this
    one holds."""
    update_of: str | None = None
    """Only for an update: the published id of the version it replaces (the same guid or
    URL, its text or headline changed)."""
    version: int | None = None
    """Only for an update: 2 for the first update of a document, 3 for the next, ..."""

    @classmethod
    def for_document(cls, doc: Document, content_hash: str, ingested_at: str) -> DocRecord:
        return cls(
            **_from_document(cls, doc),
            ingested_at=ingested_at,
            content_hash=content_hash,
            stripped_lines=len(doc.stripped),
            stripped=tuple(RemovedLine(s.text, s.rule) for s in doc.stripped),
            guid=doc.guid or None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateRecord(_StreamRecord):
    """An entry of `duplicates`: an input that repeats a published document. The worker
    writes the first fields; the index, which finds the original, adds the last six."""

    stream: ClassVar[str] = "duplicates"
    optional: ClassVar[frozenset[str]] = frozenset({"text"})
    filled_by_index: ClassVar[tuple[str, ...]] = (
        "duplicate_of",
        "similarity",
        "containment",
        "kind",
        "match",
        "reason",
    )

    id: str
    """The input's own id."""
    source: str
    """Outlet / source name."""
    url: str
    """The article URL when the input had one."""
    title: str
    """Normalised title."""
    text: str | None = None
    """Cleaned text, as it would have been published (for `newsdedup explain`)."""
    published_at: str
    """ISO 8601 when the input had a parseable date, else empty."""
    ingested_at: str
    """ISO 8601 UTC."""
    content_hash: str
    """Hash of the matching-normalised text."""
    input_ref: str
    """Where it came from, as in `docs`."""
    duplicate_of: str | None = None
    """The original's published id (filled by the index)."""
    similarity: float | None = None
    """Estimated Jaccard similarity to the original; 1 for exact (filled by the index)."""
    containment: float | None = None
    """Estimated share of the shorter text inside the other (filled by the index)."""
    kind: Literal["exact", "near"] | None = None
    """`exact` or `near` (filled by the index)."""
    match: Literal["url", "content", "minhash"] | None = None
    """What matched: `url`, `content` or `minhash` (filled by the index)."""
    reason: Decision | None = None
    """JSON: why, `{"rule", "candidates"}` (see "Decisions" below; filled by the index)."""

    @classmethod
    def for_document(cls, doc: Document, content_hash: str, ingested_at: str) -> DuplicateRecord:
        """The worker's part; the index fills in the rest if the document is a duplicate."""
        return cls(**_from_document(cls, doc), ingested_at=ingested_at, content_hash=content_hash)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadRecord(_StreamRecord):
    """An entry of `dead`: an input that could not be processed, and why."""

    stream: ClassVar[str] = "dead"

    id: str
    """The input's own id when it could be read, else its `input_ref` (a feed failure: the
    feed URL)."""
    input_ref: str
    """Where it came from, as in `docs`."""
    source: str
    """Outlet / source name, when known."""
    reason: str
    """Why, as a short slug (the reasons are listed below)."""
    error: str
    """What went wrong, in one line."""
    failed_at: str
    """ISO 8601 UTC."""

    @classmethod
    def for_input(cls, dead: DeadInput, failed_at: str) -> DeadRecord:
        return cls(
            id=dead.id or dead.input_ref,
            input_ref=dead.input_ref,
            source=dead.source,
            reason=dead.reason,
            error=dead.error,
            failed_at=failed_at,
        )


# The fields a record takes from a Document under the same name.
_DOCUMENT_FIELDS = frozenset(
    ("id", "source", "url", "title", "text", "published_at", "author", "language", "input_ref")
)


def _from_document(cls: type, doc: Document) -> dict[str, Any]:
    return {name: getattr(doc, name) for name in _document_field_names(cls)}


_DOCUMENT_NAMES: dict[type, tuple[str, ...]] = {}


def _document_field_names(cls: type) -> tuple[str, ...]:
    # `fields()` walks the class each call: once per class, not twice per document.
    if cls not in _DOCUMENT_NAMES:
        _DOCUMENT_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name in _DOCUMENT_FIELDS)
    return _DOCUMENT_NAMES[cls]


StreamRecord = DocRecord | DuplicateRecord | DeadRecord
RECORD_TYPES: dict[str, type[StreamRecord]] = {
    record.stream: record for record in (DocRecord, DuplicateRecord, DeadRecord)
}


def read_entry(stream: str, entry: Mapping[str, str]) -> StreamRecord:
    """The typed record of an entry of `stream` ("docs", "duplicates" or "dead")."""
    return RECORD_TYPES[stream].from_fields(entry)


# ---------------------------------------------------------------------------- conversions


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one field goes to and from its text on the wire, and to JSON."""

    name: str
    type_name: str
    nullable: bool  # None is a value: the field is then not on the wire
    to_text: Callable[[Any], str]
    from_text: Callable[[str], Any]
    to_json: Callable[[Any], Any]


_CODECS: dict[type, tuple[_Codec, ...]] = {}


def _codecs(cls: type) -> tuple[_Codec, ...]:
    """The codecs of a record class's fields, in order; built once per class."""
    if cls not in _CODECS:
        hints = get_type_hints(cls)
        _CODECS[cls] = tuple(_codec(f.name, hints[f.name]) for f in fields(cls))
    return _CODECS[cls]


def _attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a class, as one line."""
    (node,) = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    assert isinstance(node, ast.ClassDef)
    docs = {}
    for field_node, doc_node in itertools.pairwise(node.body):
        if (
            isinstance(field_node, ast.AnnAssign)
            and isinstance(field_node.target, ast.Name)
            and isinstance(doc_node, ast.Expr)
            and isinstance(doc_node.value, ast.Constant)
            and isinstance(doc_node.value.value, str)
        ):
            docs[field_node.target.id] = " ".join(doc_node.value.value.split())
    return docs


def _same(value: Any) -> Any:
    return value


def _int(text: str) -> int:
    return int(text) if text else 0


def _float(text: str) -> float:
    return float(text) if text else 0.0


def _lines_json(lines: tuple[RemovedLine, ...]) -> list[dict[str, str]]:
    return [{"line": removed.line, "rule": removed.rule} for removed in lines]


def _lines_text(lines: tuple[RemovedLine, ...]) -> str:
    return json.dumps(_lines_json(lines), ensure_ascii=False)


def _lines(text: str) -> tuple[RemovedLine, ...]:
    return tuple(RemovedLine(v["line"], v["rule"]) for v in (json.loads(text) if text else []))


def _decision_text(decision: Decision) -> str:
    return json.dumps(decision.to_json(), ensure_ascii=False, separators=(",", ":"))


def _decision(text: str) -> Decision:
    return Decision.from_json(json.loads(text)) if text else Decision("")


def _decision_json(decision: Decision) -> dict[str, Any]:
    return decision.to_json()


_Conversions = tuple[str, Callable[[Any], str], Callable[[str], Any], Callable[[Any], Any]]
# By a field's type (a Literal is a str, a tuple is of RemovedLine): the name docs/streams.md
# gives it, to text, from text, to JSON.
_BY_TYPE: dict[Any, _Conversions] = {
    str: ("string", _same, _same, _same),
    int: ("integer", str, _int, _same),
    float: ("number", repr, _float, _same),
    tuple: ("list", _lines_text, _lines, _lines_json),
    Decision: ("decision", _decision_text, _decision, _decision_json),
}


_WRITERS: dict[type, tuple[tuple[str, Callable[[Any], str] | None], ...]] = {}


def _writers(cls: type) -> tuple[tuple[str, Callable[[Any], str] | None], ...]:
    """(name, to text) of a record class's fields; None for text, which is written as is."""
    if cls not in _WRITERS:
        _WRITERS[cls] = tuple(
            (c.name, None if c.to_text is _same else c.to_text) for c in _codecs(cls)
        )
    return _WRITERS[cls]


def _codec(name: str, kind: Any) -> _Codec:
    nullable = get_origin(kind) in (Union, UnionType) and type(None) in get_args(kind)
    if nullable:
        (kind,) = [arg for arg in get_args(kind) if arg is not type(None)]
    origin = get_origin(kind)
    type_name, to_text, from_text, to_json = _BY_TYPE[str if origin is Literal else origin or kind]
    return _Codec(name, type_name, nullable, to_text, from_text, to_json)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def markdown_tables() -> str:
    """The schema of each stream as Markdown tables: docs/streams.md's, generated
    (`python -m workers.records`)."""
    out = []
    for record in RECORD_TYPES.values():
        summary = " ".join((record.__doc__ or "").split(": ", 1)[-1].split())
        out += [f"`{record.stream}`: {summary}", ""]
        fields_ = ((f"`{name}`", type_name, doc) for name, type_name, doc in record.schema())
        out += table(("field", "type", "meaning"), fields_)
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown_tables(), end="")
