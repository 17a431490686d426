"""The rules file: loading and validating it, every problem one line naming file and rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from workers.clean.boilerplate.rules import DEFAULT_RULES_PATH, RuleSet, load_rules, parse_rules

pytestmark = pytest.mark.unit

RULES_PATH = ROOT / "workers" / "defaults" / "boilerplate.toml"


def test_default_path_is_the_packaged_file() -> None:
    assert DEFAULT_RULES_PATH == RULES_PATH


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rule": [{"name": "x", "pattern": "(["}]}, "rule 'x': bad regex"),
        (
            {"rule": [{"name": "x", "pattern": "a", "colour": "red"}]},
            "rule 'x': unknown key 'colour'",
        ),
        ({"rule": [{"name": "x", "pattern": "a", "where": "middle"}]}, "rule 'x': where"),
        ({"rule": [{"name": "x", "pattern": "a", "action": "delete"}]}, "rule 'x': action"),
        (
            {"rule": [{"name": "x", "pattern": "a", "examples": ["b"]}]},
            "example 'b' does not match",
        ),
        ({"rule": [{"name": "x", "pattern": "a*"}]}, "matches an empty line"),
        ({"rule": [{"name": "x", "pattern": "a"}, {"name": "x", "pattern": "b"}]}, "already used"),
        ({"rule": [{"name": "title_repeated", "pattern": "a"}]}, "already used"),
        ({"rule": [{"name": "Bad Name", "pattern": "a"}]}, "name must be a slug"),
        ({"settings": {"edge_lines": -1}}, "edge_lines"),
        ({"rules": []}, "top level: unknown key 'rules'"),
        ({"protect": [{"pattern": "("}]}, "bad regex"),
        ({"source": {"s": {"rule": [{"name": "y", "pattern": "[z"}]}}}, "rule 'y': bad regex"),
    ],
)
def test_parse_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^test: ") as info:
        parse_rules(data, "test")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "broken"\npattern = "(unclosed"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"rules\.toml: rule 'broken': bad regex"):
        load_rules(path)
    path.write_text("[[rule]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"rules\.toml: invalid TOML"):
        load_rules(path)


def test_load_per_source_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[settings]\nedge_lines = 1\n"
        '[[source.outlet.rule]]\nname = "promo"\npattern = \'حمل تطبيقنا\'\nwhere = "edges"\n',
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert rules.edge_lines == 1
    assert rules.rules == ()
    assert [r.name for r in rules.per_source["outlet"].rules] == ["promo"]


def test_default_rules_shape(rules: RuleSet) -> None:
    names = [rule.name for rule in rules.rules]
    assert len(names) == len(set(names))
    assert rules.edge_lines == 3
    assert {"end_marker", "agency_credit", "lone_number", "separator"} <= set(names)
    assert {r.name for r in rules.rules if r.where == "edges"} >= {"lone_number", "followup_credit"}
    assert [r.name for r in rules.rules if r.action == "truncate_after"] == ["end_marker"]
    assert rules.protect
