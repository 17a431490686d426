"""The plain data that flows between pipeline stages.

Everything here is a dataclass with no behaviour beyond trivial helpers, so stages stay
pure functions of these values and tasks can rebuild them from JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.config import SourcePolicy


@dataclass(slots=True)
class StrippedLine:
    """One line removed by the boilerplate stage, and the rule that removed it."""

    line_no: int  # 0-based index into the body lines the stripper was given
    text: str
    rule: str


@dataclass(slots=True)
class Document:
    """One article on its way through the pipeline.

    `input_ref` names where it came from (a path, `path:line`, or a feed entry) and is
    unique within one backfill job; `id` is the input's own id (published as is, or as
    `<id>~<n>` when a document in the index already holds it: see `index`).
    """

    id: str
    source: str
    text: str
    input_ref: str
    title: str = ""
    url: str = ""
    published_at: str = ""  # ISO 8601 when the input had a parseable date, else ""
    author: str = ""
    language: str = ""  # as the input or its feed's config declares it; not detected
    stripped: list[StrippedLine] = field(default_factory=list)
    guid: str = ""  # a feed entry's own guid/id: its identity when it has no URL
    # A feed entry's revision (`FeedEntry.revision`): with input_ref, what its job's done
    # set holds, so a changed entry is processed again.
    revision: str = ""
    # Its feed's own dedup policy, when it came from a feed that sets one.
    policy: SourcePolicy | None = None
    # `fingerprint.input_key` of the input as normalised, before stripping (b"" before):
    # a re-read of an unchanged input is a re-fetch, not an update, even when the lines
    # stripped from it changed since (scripts/accept_documents.lua).
    input_key: bytes = b""


@dataclass(slots=True, frozen=True)
class DeadInput:
    """An input that cannot become a Document; it goes to the `dead` stream."""

    input_ref: str
    reason: str  # short machine-readable slug, e.g. "decode_error", "missing_text"
    error: str  # one human-readable line
    id: str = ""  # the input's own id when it could be read
    source: str = ""
    revision: str = ""  # a feed entry's revision, as `Document.revision`

    @classmethod
    def of(cls, doc: Document, reason: str, error: str) -> DeadInput:
        """A document that cannot go on, as the dead input it stands for."""
        return cls(doc.input_ref, reason, error, doc.id, doc.source, doc.revision)


LoadedInput = Document | DeadInput
