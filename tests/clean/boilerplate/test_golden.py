"""Golden files per outlet (tests/golden/boilerplate/<outlet>.json), in the style of
Fundus: synthetic outlet-style documents, each with the lines the stripper removes (and
the rule that removes each) and the text it keeps. A change to the rules or to the
algorithm shows as a diff of these files: regenerate them with

    .venv/bin/pytest tests/clean/boilerplate/test_golden.py --update-golden

and review the diff. A file holds one outlet:

- `source`: the documents' source (per-source rules and outlet names apply);
- `source_rules` (optional): a feed's `boilerplate` table for the source (feeds.toml);
- `learned` (optional): lines the source has learned, as `boilerplate show` prints them;
- `linked` (optional): other recent articles of the source ({title, body}), which lines
  may link to;
- `cases`: {name, title, author?, body (lines), stripped, text (kept lines),
  all_boilerplate?}; the last three are what the stripper does, written by --update-golden.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workers.clean.boilerplate.lines import BYLINE_PART_LABEL, byline_parts, line_hash
from workers.clean.boilerplate.links import link_targets
from workers.clean.boilerplate.rules import (
    BUILT_IN_RULES,
    RuleSet,
    parse_source_rules,
)
from workers.clean.boilerplate.strip import strip_boilerplate
from workers.clean.normalise import normalise_for_publishing, split_lines
from workers.config import DEFAULTS
from workers.document import Document
from workers.pipeline.process import normalise_document

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "boilerplate"
OUTLETS = sorted(GOLDEN.glob("*.json"))
RESULT_KEYS = ("stripped", "text", "all_boilerplate")


def learned_hash(text: str) -> str:
    """The hash the learner counts a line under, for a line as `boilerplate show` prints it."""
    if not text.startswith(BYLINE_PART_LABEL):
        digest = line_hash(text)
        assert digest, text
        return digest
    part = text.removeprefix(BYLINE_PART_LABEL)
    # A byline of the part and another one: `byline_parts` names each part's hash.
    return next(d for d, t in byline_parts(f"{part} – مكان") if t == text)


def strip_case(outlet: dict[str, Any], case: dict[str, Any], rules: RuleSet) -> dict[str, Any]:
    """What the stripper does to one case, in the golden file's shape."""
    source = outlet["source"]
    if "source_rules" in outlet:
        own = parse_source_rules(outlet["source_rules"], "golden", f"[source.{source}]")
        rules = rules.with_source_rules({source: own})
    learned = frozenset(learned_hash(text) for text in outlet.get("learned", []))
    links = frozenset(
        digest
        for other in outlet.get("linked", [])
        for digest, _ in link_targets(other["title"], normalise_for_publishing(other["body"]))
    )
    raw = Document(
        id=case["name"],
        source=source,
        text="\n\n".join(case["body"]),
        input_ref=case["name"],
        title=case["title"],
        author=case.get("author", ""),
    )
    doc = normalise_document(raw)
    assert isinstance(doc, Document), doc
    result = strip_boilerplate(
        doc.text,
        title=doc.title,
        source=source,
        rules=rules,
        learned=learned,
        links=links,
        link_zone=DEFAULTS.boilerplate.zone_lines,
        author=doc.author,
    )
    found: dict[str, Any] = {
        "stripped": [{"line": s.text, "rule": s.rule} for s in result.stripped],
        "text": [line for line in split_lines(result.text) if line],
    }
    if result.all_boilerplate:
        found["all_boilerplate"] = True
    return found


def expected_of(case: dict[str, Any]) -> dict[str, Any]:
    return {key: case[key] for key in RESULT_KEYS if key in case}


@pytest.mark.parametrize("path", OUTLETS, ids=[path.stem for path in OUTLETS])
def test_outlet_golden(path: Path, rules: RuleSet, request: pytest.FixtureRequest) -> None:
    outlet = json.loads(path.read_text(encoding="utf-8"))
    found = {case["name"]: strip_case(outlet, case, rules) for case in outlet["cases"]}
    if request.config.getoption("--update-golden"):
        for case in outlet["cases"]:
            for key in RESULT_KEYS:
                case.pop(key, None)
            case.update(found[case["name"]])
        text = json.dumps(outlet, ensure_ascii=False, indent=2) + "\n"
        path.write_text(text, encoding="utf-8")
        return
    expected = {case["name"]: expected_of(case) for case in outlet["cases"]}
    assert found == expected


def test_golden_files_exercise_every_rule(rules: RuleSet) -> None:
    used = {
        line["rule"]
        for path in OUTLETS
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]
        for line in case.get("stripped", [])
    }
    every = {rule.name for rule in rules.rules} | BUILT_IN_RULES
    assert sorted(every - used) == []


def test_golden_bodies_are_already_normalised() -> None:
    # A body line the normalisation would change would make the file lie about its input.
    for path in OUTLETS:
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            body = "\n\n".join(case["body"])
            assert normalise_for_publishing(body) == body, (path.name, case["name"])
