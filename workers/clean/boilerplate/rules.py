"""Boilerplate rules kept as data (config/boilerplate.toml): the rule model, loading and
validating a rules file, and matching a rule against a line.

A rule removes whole lines only: site credits, share counters, "read also" prompts,
comment-section notices. Rules are anchored (`fullmatch`) so they cannot eat a sentence
that merely contains a boilerplate phrase. See the TOML file for the schema.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from workers.clean.boilerplate.lines import TATWEEL, hash_key, line_key
from workers.config import DEFAULTS_DIR
from workers.messages import check_keys
from workers.tomlfile import read_toml

Where = Literal["anywhere", "edges", "top", "bottom"]
Action = Literal["drop", "truncate_after"]

# The built-in rules' names (see `strip.strip_boilerplate`): reported like a rule's name
# in Document.stripped, so no rule of the file may take one.
TITLE_RULE = "title_repeated"
TITLE_BYLINE_RULE = "title_byline"
OUTLET_RULE = "outlet_name"
LEARNED_RULE = "learned"
LEARNED_BYLINE_RULE = "learned_byline"
PINNED_RULE = "pinned"
TITLE_LINK_RULE = "title_link"
RELATED_RULE = "related_link"
AUTHOR_RULE = "author_byline"
LINK_PROMPT_RULE = "link_prompt"
TEASER_RULE = "teaser_box"
AUTHOR_NOTE_RULE = "author_note"
BUILT_IN_RULES = frozenset(
    {
        TITLE_RULE,
        TITLE_BYLINE_RULE,
        OUTLET_RULE,
        LEARNED_RULE,
        LEARNED_BYLINE_RULE,
        PINNED_RULE,
        TITLE_LINK_RULE,
        RELATED_RULE,
        AUTHOR_RULE,
        LINK_PROMPT_RULE,
        TEASER_RULE,
        AUTHOR_NOTE_RULE,
    }
)
DEFAULT_EDGE_LINES = 3
DEFAULT_RULES_PATH = DEFAULTS_DIR / "boilerplate.toml"

_WHERE: dict[str, Where] = {
    "anywhere": "anywhere",
    "edges": "edges",
    "top": "top",
    "bottom": "bottom",
}
_ACTION: dict[str, Action] = {"drop": "drop", "truncate_after": "truncate_after"}
_TOP_KEYS = frozenset({"settings", "rule", "protect", "source"})
_SETTINGS_KEYS = frozenset({"edge_lines"})
_RULE_KEYS = frozenset({"name", "pattern", "where", "action", "examples"})
_PROTECT_KEYS = frozenset({"name", "pattern"})
_SOURCE_KEYS = frozenset({"rule", "names", "boilerplate_lines", "content_lines"})
_NAME = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    where: Where
    action: Action = "drop"


@dataclass(frozen=True)
class SourceRules:
    """What the rules file says about one source (`[source.<name>]`)."""

    rules: tuple[Rule, ...] = ()
    # The outlet's own name and its spellings: a line that is just the name, or a short
    # byline around it, is furniture.
    names: tuple[str, ...] = ()
    # Line hashes (see `lines.line_hash`) pinned as boilerplate: trimmed like learned lines.
    pinned: frozenset[str] = frozenset()
    # Line hashes of content lines, whatever the learner counts: never learned or trimmed.
    content: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    edge_lines: int
    per_source: Mapping[str, SourceRules]
    protect: tuple[re.Pattern[str], ...]

    def for_source(self, source: str) -> SourceRules:
        return self.per_source.get(source, _NO_SOURCE_RULES)

    def with_source_rules(self, extra: Mapping[str, SourceRules]) -> RuleSet:
        """These rules plus more per-source ones (a feed's own), added to any the rules
        file has for the same source."""
        merged = dict(self.per_source)
        for source, more in extra.items():
            have = merged.get(source, _NO_SOURCE_RULES)
            merged[source] = SourceRules(
                rules=have.rules + more.rules,
                names=have.names + more.names,
                pinned=have.pinned | more.pinned,
                content=have.content | more.content,
            )
        return replace(self, per_source=MappingProxyType(merged))


_NO_SOURCE_RULES = SourceRules()


# ---------------------------------------------------------------------------- loading


def load_rules(path: Path = DEFAULT_RULES_PATH) -> RuleSet:
    """Read and validate a rules file; any problem is one ValueError naming file and rule."""
    try:
        data = read_toml(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such rules file") from None
    return parse_rules(data, str(path))


def parse_rules(data: Mapping[str, Any], origin: str) -> RuleSet:
    """Validate already-parsed TOML data; `origin` names it in error messages."""
    check_keys(data, _TOP_KEYS, origin, "top level")
    settings = _table(data.get("settings", {}), origin, "[settings]")
    check_keys(settings, _SETTINGS_KEYS, origin, "[settings]")
    edge_lines = settings.get("edge_lines", DEFAULT_EDGE_LINES)
    if not isinstance(edge_lines, int) or isinstance(edge_lines, bool) or edge_lines < 0:
        raise ValueError(f"{origin}: [settings] edge_lines must be an integer >= 0")

    rules = _parse_rule_list(data.get("rule", []), origin, "rule")
    seen = {rule.name for rule in rules}

    per_source: dict[str, SourceRules] = {}
    for source, table in _table(data.get("source", {}), origin, "[source]").items():
        per_source[source] = parse_source_rules(table, origin, f"[source.{source}]", seen)

    protect: list[re.Pattern[str]] = []
    for i, entry in enumerate(_array(data.get("protect", []), origin, "[[protect]]")):
        label = f"[[protect]] #{i + 1}"
        entry = _table(entry, origin, label)
        check_keys(entry, _PROTECT_KEYS, origin, label)
        if "name" in entry:
            label = f"protect {entry['name']!r}"
        protect.append(_compile(entry.get("pattern"), origin, label))

    return RuleSet(
        rules=rules,
        edge_lines=edge_lines,
        per_source=MappingProxyType(per_source),
        protect=tuple(protect),
    )


def parse_source_rules(
    table: object, origin: str, where: str, taken: Collection[str] = frozenset()
) -> SourceRules:
    """One source's table (`[source.<name>]`, or a feed's `boilerplate` table in
    feeds.toml); rule names must not repeat those in `taken` (the global rules)."""
    table = _table(table, origin, where)
    check_keys(table, _SOURCE_KEYS, origin, where)
    source_rules = _parse_rule_list(table.get("rule", []), origin, where.strip("[]") + ".rule")
    for rule in source_rules:
        if rule.name in taken:
            raise ValueError(f"{origin}: {where} rule {rule.name!r}: name already used")
    return SourceRules(
        rules=source_rules,
        names=tuple(_strings(table.get("names", []), origin, f"{where} names")),
        pinned=_line_keys(table.get("boilerplate_lines", []), origin, where, "boilerplate_lines"),
        content=_line_keys(table.get("content_lines", []), origin, where, "content_lines"),
    )


def _strings(value: object, origin: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{origin}: {where} must be a list of non-empty strings")
    return [v.strip() for v in value]


def _line_keys(value: object, origin: str, where: str, name: str) -> frozenset[str]:
    keys = set()
    for line in _strings(value, origin, f"{where} {name}"):
        key = line_key(line)
        if not key:
            raise ValueError(f"{origin}: {where} {name}: {line!r} has no letters or digits")
        keys.add(hash_key(key))
    return frozenset(keys)


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
        check_keys(entry, _RULE_KEYS, origin, label)
        if name in names or name in BUILT_IN_RULES:
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
            if not matches(rule.pattern, rule_candidates(example.strip())):
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


def _table(value: object, origin: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: {where} must be a table")
    return value


def _array(value: object, origin: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{origin}: {where} must be an array of tables")
    return value


# ---------------------------------------------------------------------------- matching


def rule_candidates(line: str) -> tuple[str, ...]:
    """The stripped line, plus the line without leading/trailing punctuation and symbols,
    so "(واس)", "// انتهى //" or "Share this:" need no decoration in their patterns; and
    both without tatweel (ـ), which only stretches letters ("أنقر هنــا")."""
    found: list[str] = []
    for form in (line.strip(), line.strip().replace(TATWEEL, "")):
        start, end = 0, len(form)
        while start < end and _is_decoration(form[start]):
            start += 1
        while end > start and _is_decoration(form[end - 1]):
            end -= 1
        for candidate in (form, form[start:end]):
            if candidate and candidate not in found:
                found.append(candidate)
    return tuple(found) if found else (line.strip(),)


def _is_decoration(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PSZ"


def matches(pattern: re.Pattern[str], candidates: Iterable[str]) -> bool:
    return any(pattern.fullmatch(c) for c in candidates)


def first_match(rules: Iterable[Rule], candidates: tuple[str, ...]) -> Rule | None:
    for rule in rules:
        if matches(rule.pattern, candidates):
            return rule
    return None
