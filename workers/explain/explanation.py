"""An entry's explanation: what was decided, by which rule and settings, against which
candidates, and the document it links to, with the passages the two texts share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.explain.find import Found
from workers.explain.passages import SharedPassages, shared_passages
from workers.records import RULES, VERDICTS, Decision, DecisionCandidate, DocRecord, DuplicateRecord

# The `dedup` settings each rule compares against, shown next to it.
RULE_SETTINGS: dict[str, tuple[str, ...]] = {
    "new": ("threshold", "facts_threshold", "containment_threshold", "stale_threshold"),
    "partial": ("containment_threshold", "lead_agreement"),
    "update": (),
    "near-off": (),
    "exact-url": (),
    "exact-content": (),
    "near-jaccard": ("threshold", "facts_agreement", "facts_min_count"),
    "near-facts": ("facts_threshold", "facts_agreement", "facts_min_count"),
    "near-contained": ("containment_threshold", "lead_agreement", "facts_agreement"),
    "near-stale": ("stale_threshold", "max_gap_hours"),
}
# The fields of an entry that link it to another document, in the order they are shown.
LINKS = ("duplicate_of", "update_of", "partial_of", "contains")


@dataclass(frozen=True, slots=True)
class Link:
    """A document the entry names (`relation`: a field of `LINKS`, or `candidate` for the
    best candidate of a document published without a link), and its `docs` entry when it
    is still in the stream."""

    relation: str
    id: str
    found: Found | None


@dataclass(frozen=True, slots=True)
class Explanation:
    entry: Found
    decision: str
    """published, duplicate, update or partial."""
    rule: str
    settings: dict[str, Any]
    candidates: tuple[DecisionCandidate, ...]
    links: tuple[Link, ...]
    compared: Link | None
    """The linked document whose text is compared with the entry's."""
    passages: SharedPassages | None

    @property
    def meaning(self) -> str:
        return RULES.get(self.rule, f"unknown rule {self.rule!r} (a newer version?)")

    @property
    def record(self) -> DocRecord | DuplicateRecord:
        return self.entry.record

    def to_json(self) -> dict[str, Any]:
        record = self.record
        compared = self.compared.found if self.compared else None
        return {
            "id": record.id,
            "stream": self.entry.stream,
            "stream_id": self.entry.stream_id,
            "decision": self.decision,
            "rule": self.rule,
            "meaning": self.meaning,
            "settings": self.settings,
            "candidates": [
                {**c.to_json(), "meaning": VERDICTS.get(c.verdict, "")} for c in self.candidates
            ],
            "links": [
                {
                    "relation": link.relation,
                    "id": link.id,
                    "stream_id": link.found.stream_id if link.found else None,
                    "title": link.found.record.title if link.found else None,
                }
                for link in self.links
            ],
            "a": _side(self.entry),
            "b": _side(compared) if compared else None,
            "b_relation": self.compared.relation if self.compared else None,
            "passages": _passages_json(self.passages),
            "record": record.to_json(),
        }


def _side(found: Found) -> dict[str, Any]:
    record = found.record
    return {
        "id": record.id,
        "stream": found.stream,
        "stream_id": found.stream_id,
        "title": record.title,
        "language": getattr(record, "language", ""),
        "text": record.text,
    }


def _passages_json(shared: SharedPassages | None) -> dict[str, Any] | None:
    if shared is None:
        return None
    return {
        "count": len(shared.passages),
        "a_words": shared.a_words,
        "b_words": shared.b_words,
        "a_coverage": round(shared.coverage("a"), 4),
        "b_coverage": round(shared.coverage("b"), 4),
        "spans": [
            {
                "n": n,
                "words": p.words,
                "a_words": list(p.a_words),
                "b_words": list(p.b_words),
                "a_chars": list(p.a_chars),
                "b_chars": list(p.b_chars),
            }
            for n, p in enumerate(shared.passages, 1)
        ],
    }


def decision_of(found: Found) -> str:
    record = found.record
    if isinstance(record, DuplicateRecord):
        return "duplicate"
    if record.update_of:
        return "update"
    if record.partial_of or record.contains:
        return "partial"
    return "published"


def linked_ids(found: Found) -> list[tuple[str, str]]:
    """(relation, published id) of each document the entry names; for a document
    published without one, its best candidate, the one it came nearest to duplicating."""
    record = found.record
    links = [(name, value) for name in LINKS if (value := getattr(record, name, None))]
    reason = record.reason or Decision("")
    if not links and reason.candidates:
        links.append(("candidate", reason.candidates[0].id))
    return links


def rule_settings(rule: str, dedup: Mapping[str, Any]) -> dict[str, Any]:
    """The settings `rule` compares against, with their values in `dedup`."""
    return {name: dedup[name] for name in RULE_SETTINGS.get(rule, ()) if name in dedup}


def explain_entry(
    found: Found, published: Mapping[str, Found], dedup: Mapping[str, Any]
) -> Explanation:
    """The explanation of entry `found`, given the `docs` entries of the documents it
    links to that are still there (`published`, by id) and the `dedup` settings."""
    reason = found.record.reason or Decision("")
    links = tuple(Link(rel, doc_id, published.get(doc_id)) for rel, doc_id in linked_ids(found))
    compared = next((link for link in links if link.found is not None), None)
    passages = None
    if compared is not None and compared.found is not None:
        passages = shared_passages(found.record.text or "", compared.found.record.text or "")
    return Explanation(
        entry=found,
        decision=decision_of(found),
        rule=reason.rule,
        settings=rule_settings(reason.rule, dedup),
        candidates=reason.candidates,
        links=links,
        compared=compared,
        passages=passages,
    )
