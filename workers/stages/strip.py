"""Boilerplate stripping driven by rules kept as data (config/boilerplate.toml).

A rule removes whole lines only: site credits, share counters, "read also" prompts,
comment-section notices. Rules are anchored (`fullmatch`) so they cannot eat a sentence
that merely contains a boilerplate phrase. See the TOML file for the schema.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from workers.document import StrippedLine
from workers.stages.matching import normalise_for_matching
from workers.stages.normalise import join_lines, split_lines

Where = Literal["anywhere", "edges"]
Action = Literal["drop", "truncate_after"]

TITLE_RULE = "title_repeated"
DEFAULT_EDGE_LINES = 3
DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "config" / "boilerplate.toml"

_WHERE: dict[str, Where] = {"anywhere": "anywhere", "edges": "edges"}
_ACTION: dict[str, Action] = {"drop": "drop", "truncate_after": "truncate_after"}
_TOP_KEYS = frozenset({"settings", "rule", "protect", "source"})
_SETTINGS_KEYS = frozenset({"edge_lines"})
_RULE_KEYS = frozenset({"name", "pattern", "where", "action", "examples"})
_PROTECT_KEYS = frozenset({"name", "pattern"})
_SOURCE_KEYS = frozenset({"rule"})
_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    where: Where
    action: Action = "drop"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    edge_lines: int
    per_source: Mapping[str, tuple[Rule, ...]]
    protect: tuple[re.Pattern[str], ...]


@dataclass(slots=True)
class StripResult:
    text: str
    stripped: list[StrippedLine]


# ---------------------------------------------------------------------------- loading


def load_rules(path: Path = DEFAULT_RULES_PATH) -> RuleSet:
    """Read and validate a rules file; any problem is one ValueError naming file and rule."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from exc
    return parse_rules(data, str(path))


def parse_rules(data: Mapping[str, Any], origin: str) -> RuleSet:
    """Validate already-parsed TOML data; `origin` names it in error messages."""
    _check_keys(data, _TOP_KEYS, origin, "top level")
    settings = _table(data.get("settings", {}), origin, "[settings]")
    _check_keys(settings, _SETTINGS_KEYS, origin, "[settings]")
    edge_lines = settings.get("edge_lines", DEFAULT_EDGE_LINES)
    if not isinstance(edge_lines, int) or isinstance(edge_lines, bool) or edge_lines < 0:
        raise ValueError(f"{origin}: [settings] edge_lines must be an integer >= 0")

    rules = _parse_rule_list(data.get("rule", []), origin, "rule")
    seen = {rule.name for rule in rules}

    per_source: dict[str, tuple[Rule, ...]] = {}
    for source, table in _table(data.get("source", {}), origin, "[source]").items():
        where = f"[source.{source}]"
        table = _table(table, origin, where)
        _check_keys(table, _SOURCE_KEYS, origin, where)
        source_rules = _parse_rule_list(table.get("rule", []), origin, f"source.{source}.rule")
        for rule in source_rules:
            if rule.name in seen:
                raise ValueError(f"{origin}: {where} rule {rule.name!r}: name already used")
        per_source[source] = source_rules

    protect: list[re.Pattern[str]] = []
    for i, entry in enumerate(_array(data.get("protect", []), origin, "[[protect]]")):
        label = f"[[protect]] #{i + 1}"
        entry = _table(entry, origin, label)
        _check_keys(entry, _PROTECT_KEYS, origin, label)
        if "name" in entry:
            label = f"protect {entry['name']!r}"
        protect.append(_compile(entry.get("pattern"), origin, label))

    return RuleSet(
        rules=rules,
        edge_lines=edge_lines,
        per_source=MappingProxyType(per_source),
        protect=tuple(protect),
    )


def _parse_rule_list(raw: object, origin: str, where: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    names: set[str] = set()
    for i, entry in enumerate(_array(raw, origin, f"[[{where}]]")):
        entry = _table(entry, origin, f"[[{where}]] #{i + 1}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"{origin}: [[{where}]] #{i + 1}: name must be a slug of [a-z0-9_], got {name!r}"
            )
        label = f"rule {name!r}"
        _check_keys(entry, _RULE_KEYS, origin, label)
        if name in names or name == TITLE_RULE:
            raise ValueError(f"{origin}: {label}: name already used")
        names.add(name)
        pattern = _compile(entry.get("pattern"), origin, label)
        where_value = entry.get("where", "anywhere")
        action_value = entry.get("action", "drop")
        if where_value not in _WHERE:
            raise ValueError(f"{origin}: {label}: where must be one of {sorted(_WHERE)}")
        if action_value not in _ACTION:
            raise ValueError(f"{origin}: {label}: action must be one of {sorted(_ACTION)}")
        rule = Rule(name, pattern, _WHERE[where_value], _ACTION[action_value])
        examples = entry.get("examples", [])
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise ValueError(f"{origin}: {label}: examples must be a list of strings")
        for example in examples:
            if not _matches(rule.pattern, _candidates(example.strip())):
                raise ValueError(f"{origin}: {label}: example {example!r} does not match")
        rules.append(rule)
    return tuple(rules)


def _compile(pattern: object, origin: str, label: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{origin}: {label}: pattern must be a non-empty string")
    try:
        # Case-insensitive so "READ MORE" and "Read more" need one rule; a pattern can opt
        # out locally with (?-i:...).
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{origin}: {label}: bad regex {pattern!r}: {exc}") from exc
    if compiled.fullmatch(""):
        # A pattern that matches nothing-at-all is almost surely an over-broad mistake.
        raise ValueError(f"{origin}: {label}: pattern {pattern!r} matches an empty line")
    return compiled


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], origin: str, where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{origin}: {where}: unknown key(s) {', '.join(unknown)}")


def _table(value: object, origin: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: {where} must be a table")
    return value


def _array(value: object, origin: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{origin}: {where} must be an array of tables")
    return value


# ---------------------------------------------------------------------------- stripping


def strip_boilerplate(body: str, *, title: str, source: str, rules: RuleSet) -> StripResult:
    """Remove boilerplate lines from a publish-normalised `body`.

    Considers non-empty lines only. A line is removed when it (1) matches an `anywhere`
    rule, (2) equals the title after comparison-normalisation ("title_repeated"), (3) is
    matched by a rule of `source` in `rules.per_source`, or (4) matches an `edges` rule
    while among the first/last `rules.edge_lines` lines, counting only lines no other rule
    removed (so furniture stacked at the top or bottom peels off layer by layer). A
    `truncate_after` rule removes its line and every later one. Lines matching a `protect`
    pattern are never removed.

    If every non-empty line would go, the body is returned unchanged with `stripped=[]`:
    an all-boilerplate input is a caller decision (dead-letter or keep), not a silent
    empty document. `StrippedLine.line_no` indexes `split_lines(body)`.
    """
    lines = split_lines(body)
    content = [i for i, line in enumerate(lines) if line.strip()]
    active = rules.rules + rules.per_source.get(source, ())
    anywhere = [rule for rule in active if rule.where == "anywhere"]
    edges = [rule for rule in active if rule.where == "edges"]
    title_key = _comparable(title)
    protected = {i for i in content if any(p.search(lines[i]) for p in rules.protect)}
    removed: dict[int, str] = {}

    def truncate(start: int, name: str) -> None:
        for j in content:
            if j >= start and j not in protected:
                removed.setdefault(j, name)

    for i in content:
        if i in protected or i in removed:
            continue
        line = lines[i].strip()
        if title_key and _comparable(line) == title_key:
            removed[i] = TITLE_RULE
            continue
        rule = _first_match(anywhere, _candidates(line))
        if rule is None:
            continue
        if rule.action == "truncate_after":
            truncate(i, rule.name)
            break
        removed[i] = rule.name

    if edges and rules.edge_lines:
        for order in (content, content[::-1]):
            kept = 0
            for i in order:
                if kept >= rules.edge_lines:
                    break
                if i in removed:
                    continue
                rule = None if i in protected else _first_match(edges, _candidates(lines[i]))
                if rule is None:
                    kept += 1
                elif rule.action == "truncate_after":
                    truncate(i, rule.name)
                else:
                    removed[i] = rule.name

    if len(removed) == len(content):
        return StripResult(text=body, stripped=[])
    stripped = [StrippedLine(line_no=i, text=lines[i], rule=removed[i]) for i in sorted(removed)]
    text = join_lines([line for i, line in enumerate(lines) if i not in removed])
    return StripResult(text=text, stripped=stripped)


def _candidates(line: str) -> tuple[str, ...]:
    """The stripped line, plus the line without leading/trailing punctuation and symbols,
    so "(واس)", "// انتهى //" or "Share this:" need no decoration in their patterns."""
    line = line.strip()
    start, end = 0, len(line)
    while start < end and _is_decoration(line[start]):
        start += 1
    while end > start and _is_decoration(line[end - 1]):
        end -= 1
    trimmed = line[start:end]
    return (line, trimmed) if trimmed and trimmed != line else (line,)


def _is_decoration(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PSZ"


def _matches(pattern: re.Pattern[str], candidates: Iterable[str]) -> bool:
    return any(pattern.fullmatch(c) for c in candidates)


def _first_match(rules: Iterable[Rule], candidates: tuple[str, ...]) -> Rule | None:
    for rule in rules:
        if _matches(rule.pattern, candidates):
            return rule
    return None


def _comparable(text: str) -> str:
    # Matching normalisation with spaces dropped: NFKC, casefold, no punctuation, and the
    # Arabic spelling variants outlets use when they reprint their own headline.
    return normalise_for_matching(text).replace(" ", "")
