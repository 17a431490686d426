"""The explanation of each case and its three renderings: terminal text, JSON, HTML."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from support.explain_cases import ROUND_UP, SHORT_ITEM, cases

from workers.config import DedupSettings
from workers.explain.explanation import (
    RULE_SETTINGS,
    Explanation,
    explain_entry,
    rule_settings,
)
from workers.explain.find import Found
from workers.explain.render import render_html, render_json, render_text
from workers.records import RULES, Decision

pytestmark = pytest.mark.unit

DEDUP = {
    "threshold": 0.5, "containment_threshold": 0.8, "facts_threshold": 0.3,
    "facts_agreement": 0.6, "facts_min_count": 2, "stale_threshold": 0.7, "max_gap_hours": 48.0,
    "lead_agreement": 0.3,
}  # fmt: skip


def _entries() -> dict[str, Found]:
    return {
        record.id: Found(stream, f"1700000000000-{n}", record)
        for n, (stream, record) in enumerate(cases())
    }


def _published(entries: dict[str, Found]) -> dict[str, Found]:
    return {k: f for k, f in entries.items() if f.stream == "docs"}


def _explained(doc_id: str) -> Explanation:
    entries = _entries()
    return explain_entry(entries[doc_id], _published(entries), DEDUP)


def test_each_case_has_its_decision_rule_and_compared_document() -> None:
    seen = {
        doc_id: (e.decision, e.rule, e.compared.relation if e.compared else None,
                 e.compared.id if e.compared else None)
        for doc_id in ("hospital-copy", "oil", "hospital~2", "match-2", "hospital")
        for e in [_explained(doc_id)]
    }  # fmt: skip
    assert seen == {
        "hospital-copy": ("duplicate", "near-jaccard", "duplicate_of", "hospital"),
        "oil": ("partial", "partial", "partial_of", "roundup"),
        "hospital~2": ("update", "update", "update_of", "hospital"),
        "match-2": ("published", "new", "candidate", "match-1"),
        "hospital": ("published", "new", None, None),
    }
    oil = _explained("oil")
    assert oil.passages is not None and oil.passages.coverage("a") == 1.0
    (p,) = oil.passages.passages
    assert ROUND_UP[p.b_chars[0] : p.b_chars[1]] == SHORT_ITEM.rstrip(".")


def test_rule_settings_are_the_rules_own() -> None:
    assert rule_settings("near-stale", DEDUP) == {"stale_threshold": 0.7, "max_gap_hours": 48.0}
    assert rule_settings("partial", DEDUP) == {"containment_threshold": 0.8, "lead_agreement": 0.3}
    assert rule_settings("exact-url", DEDUP) == {}
    assert rule_settings("", DEDUP) == {}


def test_every_rule_names_its_settings_and_each_is_a_dedup_setting() -> None:
    assert set(RULE_SETTINGS) == set(RULES) - {""}  # "": an entry with no reason
    fields = set(DedupSettings.model_fields)
    assert {name for names in RULE_SETTINGS.values() for name in names} <= fields


def test_a_linked_document_no_longer_in_docs_is_said_so() -> None:
    entries = _entries()
    e = explain_entry(entries["oil"], {}, DEDUP)
    assert e.compared is None and e.passages is None
    assert "partial_of: roundup (not in docs any more (trimmed or expired))" in render_text(e)


def test_text_marks_passages_with_brackets_or_reverse_video_on_a_terminal() -> None:
    e = _explained("match-2")
    plain = render_text(e)
    assert "\x1b" not in plain
    assert "rule: new: published: no candidate qualified" in plain
    assert "match-1  0.58  0.60  conflict 0.00 (3/3)  2h   facts-conflict" in plain
    assert "shared passages: 1, covering 40% of A and 40% of B (by words)" in plain
    assert "⟦1 في الدوري الليبي الممتاز يوم الجمعة⟧" in plain
    color = render_text(e, color=True)
    assert "\x1b[7mفي الدوري الليبي الممتاز يوم الجمعة\x1b[27m" in color
    assert "⟦" not in color


def test_text_escapes_what_an_input_could_use_to_drive_the_terminal() -> None:
    entries = _entries()
    found = entries["hostile-copy"]
    sneaky = replace(
        found.record, title="\x1b[2Jcleared", text="\x1b]0;title\x07" + found.record.text
    )  # type: ignore[type-var]
    e = explain_entry(replace(found, record=sneaky), _published(entries), DEDUP)
    shown = render_text(e, color=True)
    assert "\x1b[2J" not in shown and "\x1b]0" not in shown and "\x07" not in shown
    assert "\\x1b[2Jcleared" in shown


def test_json_is_one_object_with_everything_shown() -> None:
    e = _explained("hospital-copy")
    value = json.loads(render_json("hospital-copy", [e]))
    assert value["query"] == "hospital-copy"
    (match,) = value["matches"]
    assert {k: match[k] for k in ("id", "stream", "decision", "rule", "b_relation")} == {
        "id": "hospital-copy", "stream": "duplicates", "decision": "duplicate",
        "rule": "near-jaccard", "b_relation": "duplicate_of",
    }  # fmt: skip
    assert match["meaning"] == "duplicate: estimated Jaccard at or above the threshold"
    assert match["settings"] == {"threshold": 0.5, "facts_agreement": 0.6, "facts_min_count": 2}
    assert match["candidates"] == [
        {"id": "hospital", "j": 0.62, "c": 0.7, "facts": "agree", "f": 1.0, "rare": [3, 3],
         "gap_h": 1, "verdict": "duplicate", "meaning": "qualifies as the original"}
    ]  # fmt: skip
    assert [link["id"] for link in match["links"]] == ["hospital"]
    spans = match["passages"]["spans"]
    assert match["passages"]["count"] == len(spans) == 2
    for span in spans:
        a = match["a"]["text"][span["a_chars"][0] : span["a_chars"][1]]
        b = match["b"]["text"][span["b_chars"][0] : span["b_chars"][1]]
        assert len(a.split()) == len(b.split()) == span["words"]
    assert match["record"]["duplicate_of"] == "hospital"


def test_html_is_self_contained_escaped_and_right_to_left_for_arabic() -> None:
    page = render_html("oil", [_explained("oil")])
    assert not re.search(r"(?i)<script|<link|<img|src=|href=|@import|url\(", page)
    assert 'class="text" dir="rtl" lang="ar"' in page
    assert page.count('<mark data-passage="m1-1"') == 2  # the same passage, both columns
    assert "Noto Naskh Arabic" in page
    hostile = render_html("hostile-copy", [_explained("hostile-copy")])
    assert not re.search(r"(?i)<script|<img", hostile)
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in hostile
    assert 'class="text" dir="ltr" lang="en"' in hostile


def test_html_without_a_decision_recorded() -> None:
    entries = _entries()
    found = entries["hospital"]
    older = replace(found, record=replace(found.record, reason=Decision("")))  # type: ignore[type-var]
    e = explain_entry(older, {}, DEDUP)
    assert "not recorded (an entry written by an older version)" in render_html("hospital", [e])
    assert "rule: (none): not recorded" in render_text(e)
