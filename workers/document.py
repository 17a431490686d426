"""The plain data that flows between pipeline stages.

Everything here is a dataclass with no behaviour beyond trivial helpers, so stages stay
pure functions of these values and tasks can rebuild them from JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(slots=True, frozen=True)
class DeadInput:
    """An input that cannot become a Document; it goes to the `dead` stream."""

    input_ref: str
    reason: str  # short machine-readable slug, e.g. "decode_error", "missing_text"
    error: str  # one human-readable line
    id: str = ""  # the input's own id when it could be read
    source: str = ""


LoadedInput = Document | DeadInput
