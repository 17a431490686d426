"""Boilerplate stripping driven by rules kept as data (config/boilerplate.toml).

A rule removes whole lines only: site credits, share counters, "read also" prompts,
comment-section notices. Rules are anchored (`fullmatch`) so they cannot eat a sentence
that merely contains a boilerplate phrase. See the TOML file for the schema.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from workers.clean.matching import normalise_for_matching
from workers.clean.normalise import join_lines, split_lines
from workers.config import CONFIG_DIR, DEFAULTS
from workers.document import StrippedLine
from workers.messages import check_keys

Where = Literal["anywhere", "edges", "top", "bottom"]
Action = Literal["drop", "truncate_after"]

TITLE_RULE = "title_repeated"
TITLE_BYLINE_RULE = "title_byline"
OUTLET_RULE = "outlet_name"
LEARNED_RULE = "learned"
LEARNED_BYLINE_RULE = "learned_byline"
PINNED_RULE = "pinned"
TITLE_LINK_RULE = "title_link"
RELATED_RULE = "related_link"
AUTHOR_RULE = "author_byline"
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
    }
)
# A byline is short: "منيف الشهراني – الرياض", "عين اليوم - متابعات", "Name | Outlet".
BYLINE_MAX_WORDS = 6
BYLINE_PART_LABEL = "byline part: "
DEFAULT_EDGE_LINES = 3
# A top line this short that is part of the title is the title's kicker or the columnist's
# name set as a byline ("ناصر الجديع" over "ناصر الجديع: إنجليزي يقود السوبر").
TITLE_BYLINE_MAX_WORDS = 4
# A line naming the outlet with at most this many other words around it is a byline
# ("عمر إبراهيم – عين اليوم", "عين اليوم – جدة").
OUTLET_BYLINE_MAX_WORDS = 4
# An edge line this short equal to the document's author metadata is its byline.
AUTHOR_BYLINE_MAX_WORDS = 8
# An edge line that is the document's own title with at most this many words before or
# after it is a link to the article itself ("رابط الخبر بصحيفة الوئام: <title>",
# "<title> - <outlet>"); titles shorter than TITLE_LINK_MIN_WORDS are too generic to tell.
TITLE_LINK_MAX_WORDS = 6
TITLE_LINK_MIN_WORDS = 3
# Links to other articles of the same source (see `link_targets`): a body line equal to
# the title of another recent document of the source, or, in the bottom run, to its lead
# paragraph ("more from this section" teasers), is a link, not this article's content.
LINK_TITLE_LABEL = "link title: "
LINK_LEAD_LABEL = "link lead: "
LINK_LABELS = (LINK_TITLE_LABEL, LINK_LEAD_LABEL)
LINK_TITLE_MIN_WORDS = 3
LINK_TITLE_MAX_WORDS = 25
LINK_LEAD_MIN_WORDS = 8
LEAD_SEARCH_LINES = 3
DEFAULT_RULES_PATH = CONFIG_DIR / "boilerplate.toml"

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

# Lines longer than this are content without asking the rules: no furniture line is
# that long, and patterns like `\S+\s+...` backtrack quadratically on one huge token
# (a 40,000-character line took 18 s), which would let one bad input stall a worker.
MAX_RULE_LINE_CHARS = 1000


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
    # Line hashes (see `line_hash`) pinned as boilerplate: trimmed like learned lines.
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


@dataclass(slots=True)
class StripResult:
    text: str
    stripped: list[StrippedLine]
    # Every non-empty line was boilerplate: `text` is then the body unchanged and the
    # caller decides (the pipeline sends the document to `dead` as all_boilerplate).
    all_boilerplate: bool = False


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
        keys.add(_hash_key(key))
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


def _table(value: object, origin: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{origin}: {where} must be a table")
    return value


def _array(value: object, origin: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{origin}: {where} must be an array of tables")
    return value


# ---------------------------------------------------------------------------- line keys

# Parts of a line that differ between otherwise identical furniture lines: the author's
# e-mail or handle, a link, a number ("أرسل رسالة تبدأ بالرمز (34)").
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# ASCII on purpose: extracted text glues an address to the Arabic word after it
# ("name@yahoo.comللتواصل"), and `\w` would swallow that word too.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}")
_DIGIT_RUN = re.compile(r"\d+")


def line_key(line: str) -> str:
    """A line folded so that copies of one furniture line agree: links, e-mail addresses
    and handles removed, matching normalisation, every digit run written "0". Empty when
    nothing is left (a bare address or separator: the rules handle those), and for a
    line over MAX_RULE_LINE_CHARS, which is never learned or pinned (see there)."""
    if len(line) > MAX_RULE_LINE_CHARS:
        return ""
    line = _HANDLE.sub(" ", _EMAIL.sub(" ", _URL.sub(" ", line)))
    return _DIGIT_RUN.sub("0", normalise_for_matching(line))


def line_hash(line: str) -> str | None:
    """The identity the learner counts a line under (16 hex digits), or None."""
    key = line_key(line)
    return _hash_key(key) if key else None


def _hash_key(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


# "Name – Outlet", "Outlet - City": a separator with a space on at least one side, so
# hyphenated words ("Al-Madina") do not split. Arabic typesetting also uses a tatweel
# after a space as the dash ("الرياضي ـ جدة"); after a letter it only stretches the word
# ("الـ 11").
TATWEEL = "\u0640"
_BYLINE_SEPARATOR = re.compile(r"\s+[-–—|/ـ]\s*|\s*[-–—|/]\s+")


def byline_parts(line: str) -> list[tuple[str, str]]:
    """(hash, text) of the parts of a short line made of separated parts, a byline's shape.
    Bylines vary by reporter and city, but their parts recur ("عين اليوم", "الرياض", a
    reporter's name), so the learner counts the parts too and a short edge line with a
    learned part is trimmed as a byline. Part hashes never equal line hashes."""
    stripped = line.strip()
    if not 2 <= len(normalise_for_matching(stripped).split()) <= BYLINE_MAX_WORDS:
        return []
    parts = [part for part in _BYLINE_SEPARATOR.split(stripped) if part.strip()]
    if len(parts) < 2:
        return []
    found: list[tuple[str, str]] = []
    for part in parts:
        key = line_key(part)
        # A part without letters ("1 - ..." in a numbered list, a year) names no one.
        if key and any(ch.isalpha() for ch in key):
            found.append((_hash_key(BYLINE_PART_LABEL + key), BYLINE_PART_LABEL + part.strip()))
    return found


def learnable_lines(body: str, *, source: str, rules: RuleSet, zone: int) -> list[tuple[str, str]]:
    """(hash, text) of the distinct lines among the first and last `zone`
    non-empty lines of a publish-normalised body: what the learner counts for a document.
    Only edge lines are ever trimmed as learned, so only they need counting; lines pinned
    as content for the source are left out."""
    lines = [line for line in split_lines(body) if line.strip()]
    picked = lines if len(lines) <= 2 * zone else lines[:zone] + lines[-zone:]
    content = rules.for_source(source).content
    seen: dict[str, str] = {}
    for line in picked:
        key = line_key(line)
        if not key:
            continue
        digest = _hash_key(key)
        if digest in content:
            continue
        seen.setdefault(digest, line.strip())
        for part_digest, part in byline_parts(line):
            seen.setdefault(part_digest, part)
    return list(seen.items())


# A dateline opening a lead: "دبي، الإمارات العربية المتحدة (CNN)-- ", "(CNN)— ": a short
# place, an outlet or agency in brackets, a dash. Teasers of the article quote its lead
# without it.
_DATELINE = re.compile(r"[^.!?؟:\n]{0,80}?\([^()\n]{1,30}\)\s*[-–—]+\s*")


def _link_key(text: str) -> str:
    # Exact wording matters for links (two headlines can differ by a number only), so no
    # digit folding: matching normalisation only.
    return normalise_for_matching(text) if len(text) <= MAX_RULE_LINE_CHARS else ""


def _link_hash(label: str, text: str) -> str | None:
    key = _link_key(text)
    return _hash_key(label + key) if key else None


_FULL_STOP = re.compile(r"(?<!\.)\.\s*$")


def _lead_index(lines: list[str]) -> int | None:
    """Index in `lines` of the document's lead: the first of its first LEAD_SEARCH_LINES
    non-empty lines long enough to be a paragraph (a byline or kicker may come first)."""
    seen = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if len(_link_key(line).split()) >= LINK_LEAD_MIN_WORDS:
            return i
        seen += 1
        if seen >= LEAD_SEARCH_LINES:
            return None
    return None


def link_targets(title: str, body: str) -> list[tuple[str, str]]:
    """(hash, text) under which other documents of the same source may link to this one:
    its title (at least LINK_TITLE_MIN_WORDS words) and its lead paragraph, also without
    a leading dateline. The learner keeps them, per source, for as long as its lossy
    counting keeps rare lines (at most about 2 x `prune_every` documents): recent
    articles, the ones others link to."""
    found: dict[str, str] = {}
    if len(_link_key(title).split()) >= LINK_TITLE_MIN_WORDS:
        digest = _link_hash(LINK_TITLE_LABEL, title)
        if digest:
            found[digest] = LINK_TITLE_LABEL + title.strip()
    lines = split_lines(body)
    lead = _lead_index(lines)
    if lead is not None:
        text = lines[lead].strip()
        dateline = _DATELINE.match(text)
        for form in (text, text[dateline.end() :] if dateline else text):
            if len(_link_key(form).split()) >= LINK_LEAD_MIN_WORDS:
                digest = _link_hash(LINK_LEAD_LABEL, form)
                if digest:
                    found.setdefault(digest, LINK_LEAD_LABEL + form)
    return list(found.items())


def _link_probes(lines: list[str], zone: int) -> dict[int, tuple[str | None, str | None]]:
    """Line index -> (title hash, lead hash) the line would have if it linked to another
    article: a title hash for a headline-sized line anywhere, a lead hash for a
    paragraph among the last `zone` non-empty lines but the document's own lead (a short
    update of a story opens with the story's lead: that is no link)."""
    lead = _lead_index(lines)
    content = [i for i, line in enumerate(lines) if line.strip()]
    tail = set(content[-zone:]) if zone > 0 else set()
    probes: dict[int, tuple[str | None, str | None]] = {}
    for i in content:
        key = _link_key(lines[i].strip())
        count = len(key.split())
        # A headline has no closing full stop: "إن من الشعر لحكمة." is a sentence that
        # happens to be another column's title.
        as_title = LINK_TITLE_MIN_WORDS <= count <= LINK_TITLE_MAX_WORDS and not _FULL_STOP.search(
            lines[i]
        )
        as_lead = i in tail and i != lead and count >= LINK_LEAD_MIN_WORDS
        if as_title or as_lead:
            probes[i] = (
                _hash_key(LINK_TITLE_LABEL + key) if as_title else None,
                _hash_key(LINK_LEAD_LABEL + key) if as_lead else None,
            )
    return probes


def link_probes(body: str, zone: int) -> list[str]:
    """The link hashes (see `link_targets`) to look up for a publish-normalised body."""
    return [
        digest
        for pair in _link_probes(split_lines(body), zone).values()
        for digest in pair
        if digest is not None
    ]


# ---------------------------------------------------------------------------- stripping


def strip_boilerplate(
    body: str,
    *,
    title: str,
    source: str,
    rules: RuleSet,
    learned: Collection[str] = frozenset(),
    links: Collection[str] = frozenset(),
    link_zone: int = DEFAULTS.boilerplate.zone_lines,
    author: str = "",
) -> StripResult:
    """Remove boilerplate lines from a publish-normalised `body`.

    Considers non-empty lines only. Anywhere in the body, a line is removed when it
    matches an `anywhere` rule (global or of `source`), equals the title
    ("title_repeated") or is just the outlet's name ("outlet_name"), all compared loosely.
    Then each edge is peeled, from the top down and from the bottom up, over lines no
    earlier step removed:
    - while no line has been kept yet on that side: a line whose `line_hash` is in
      `learned` ("learned") or pinned for the source ("pinned"); a short byline-shaped
      line with a part in `learned` ("learned_byline", see `byline_parts`); at the top,
      a short line that is part of the title ("title_byline"); a short byline around
      the outlet's name (the separator is what makes it a byline, not a sentence that
      mentions the outlet);
    - among the first `rules.edge_lines` kept lines: `edges` rules (and `top` / `bottom`
      rules on their side).
    Learned lines therefore go only in unbroken runs at the edges: a learned sentence in
    the middle of an article is never touched. A `truncate_after` rule removes its line
    and every later one.

    `links` holds the link hashes (see `link_targets`, `link_probes`) found among other
    recent documents of the source. A headline-sized line equal to another article's
    title is a related-article link wherever it is ("related_link"), unless such lines
    are half the document or more (a digest of headlines is its own content); a line
    equal to another article's lead is one only in a "more from this section" box at the
    bottom: two or more such lines among the last `link_zone`, and every paragraph from
    the first of them down (the box's other entries link articles not seen). An edge line
    that is the document's own title with a few words around it is a link to itself
    ("title_link"); so is one equal to the document's `author` metadata, its byline
    ("author_byline"). Lines matching a `protect` pattern, or pinned as the source's
    content, are never removed.

    If every non-empty line would go, the body is returned unchanged with `stripped=[]`
    and `all_boilerplate=True`. `StrippedLine.line_no` indexes `split_lines(body)`.
    """
    lines = split_lines(body)
    content = [i for i, line in enumerate(lines) if line.strip()]
    source_rules = rules.for_source(source)
    active = rules.rules + source_rules.rules
    anywhere = [rule for rule in active if rule.where == "anywhere"]
    side_rules = {
        "top": [rule for rule in active if rule.where in ("edges", "top")],
        "bottom": [rule for rule in active if rule.where in ("edges", "bottom")],
    }
    title_key = _comparable(title)
    title_words = f" {normalise_for_matching(title)} "
    author_key = _comparable(author) if len(author) <= MAX_RULE_LINE_CHARS else ""
    outlet_names = [
        name for name in {normalise_for_matching(n) for n in (source, *source_rules.names)} if name
    ]
    trimmable = source_rules.pinned | frozenset(learned)
    protected = {
        i
        for i in content
        if len(lines[i]) > MAX_RULE_LINE_CHARS or any(p.search(lines[i]) for p in rules.protect)
    }
    hashes: dict[int, str | None] = {}

    def digest_of(i: int) -> str | None:
        # Lazily: only edge lines need one unless the source protects content lines.
        if i not in hashes:
            hashes[i] = line_hash(lines[i])
        return hashes[i]

    if source_rules.content:
        protected |= {i for i in content if digest_of(i) in source_rules.content}
    removed: dict[int, str] = {}
    title_links: set[int] = set()
    lead_links: set[int] = set()
    if links:
        for i, (as_title, as_lead) in _link_probes(lines, link_zone).items():
            if as_title in links:
                title_links.add(i)
            if as_lead in links:
                lead_links.add(i)
        if 2 * len(title_links) >= len(content):
            title_links = set()  # a digest of headlines
        # Two or more leads of other articles among the last lines make a "more stories"
        # box: from the first of them down, paragraph-sized lines are its entries, also
        # those linking articles not seen here. One alone is no box: a story's last
        # paragraph can be an earlier story's lead, recalled as background.
        tail_leads = [i for i in content[-link_zone:] if i in lead_links] if link_zone else []
        box = [i for i in content if tail_leads and i >= tail_leads[0]]
        lead_links = set()
        if len(tail_leads) >= 2 and all(
            len(_link_key(lines[i]).split()) >= LINK_LEAD_MIN_WORDS for i in box
        ):
            lead_links = set(box)

    def truncate(start: int, name: str) -> None:
        for j in content:
            if j >= start and j not in protected:
                removed.setdefault(j, name)

    for i in content:
        if i in protected or i in removed:
            continue
        line = lines[i].strip()
        words = normalise_for_matching(line)
        if title_key and words.replace(" ", "") == title_key:
            removed[i] = TITLE_RULE
            continue
        if words in outlet_names:
            removed[i] = OUTLET_RULE
            continue
        if i in title_links:
            removed[i] = RELATED_RULE
            continue
        rule = _first_match(anywhere, _candidates(line))
        if rule is None:
            continue
        if rule.action == "truncate_after":
            truncate(i, rule.name)
            break
        removed[i] = rule.name

    for side, order in (("top", content), ("bottom", content[::-1])):
        kept = 0
        for i in order:
            if kept >= rules.edge_lines and kept > 0:
                break
            if i in removed:
                continue
            digest = digest_of(i) if kept == 0 and trimmable else None
            if digest in trimmable and digest not in source_rules.content:
                # Before `protect`: the patterns guard against rules over-matching, while
                # a learned line was seen verbatim at the edge of many documents, long or not.
                removed[i] = PINNED_RULE if digest in source_rules.pinned else LEARNED_RULE
                continue
            if kept == 0 and side == "bottom" and i in lead_links:
                # Before `protect` too: a teaser is a whole lead paragraph, long.
                removed[i] = RELATED_RULE
                continue
            if i in protected:
                kept += 1
                continue
            if kept == 0:
                name = _edge_furniture(
                    lines[i], side, trimmable, title_words, outlet_names, author_key
                )
                if name:
                    removed[i] = name
                    continue
            rule = (
                _first_match(side_rules[side], _candidates(lines[i]))
                if kept < rules.edge_lines
                else None
            )
            if rule is None:
                kept += 1
            elif rule.action == "truncate_after":
                truncate(i, rule.name)
            else:
                removed[i] = rule.name

    if len(removed) == len(content):
        # Nothing but the headline repeated (a feed's video or live entry) is a
        # headline-only document, not furniture: kept as it is.
        headline_only = all(rule == "title_repeated" for rule in removed.values())
        return StripResult(
            text=body, stripped=[], all_boilerplate=bool(content) and not headline_only
        )
    stripped = [StrippedLine(line_no=i, text=lines[i], rule=removed[i]) for i in sorted(removed)]
    text = join_lines([line for i, line in enumerate(lines) if i not in removed])
    return StripResult(text=text, stripped=stripped)


def _edge_furniture(
    line: str,
    side: str,
    trimmable: frozenset[str],
    title_words: str,
    outlet_names: list[str],
    author_key: str = "",
) -> str | None:
    """The built-in rule that removes `line` when it is the outermost line left on `side`."""
    if trimmable and any(part in trimmable for part, _ in byline_parts(line)):
        return LEARNED_BYLINE_RULE
    words = normalise_for_matching(line)
    count = len(words.split())
    if author_key and count <= AUTHOR_BYLINE_MAX_WORDS and words.replace(" ", "") == author_key:
        return AUTHOR_RULE
    if side == "top" and 0 < count <= TITLE_BYLINE_MAX_WORDS and f" {words} " in title_words:
        return TITLE_BYLINE_RULE
    if _is_title_link(line, title_words):
        return TITLE_LINK_RULE
    for name in outlet_names:
        extra = count - len(name.split())
        if (
            0 < extra <= OUTLET_BYLINE_MAX_WORDS
            and f" {name} " in f" {words} "
            and _BYLINE_SEPARATOR.search(line)
        ):
            return OUTLET_RULE
    return None


# What joins a link prompt to the headline it links: "رابط الخبر: <title>", "<title> | X".
_LINK_SEPARATOR = re.compile(r"[:：|–—]|\s-|-\s")


def _is_title_link(line: str, title_words: str) -> bool:
    """`line` is the document's own title (as `title_words`, matching-normalised) joined by
    a separator to at most TITLE_LINK_MAX_WORDS other words: a link to the article itself.
    Without the separator, the title followed by more words is a lead sentence."""
    title = title_words.replace(" ", "")
    if not title or len(title_words.split()) < TITLE_LINK_MIN_WORDS:
        return False
    for match in _LINK_SEPARATOR.finditer(line):
        left, right = line[: match.start()], line[match.end() :]
        for inside, outside in ((right, left), (left, right)):
            extra = len(normalise_for_matching(outside).split())
            if 0 < extra <= TITLE_LINK_MAX_WORDS and _comparable(inside) == title:
                return True
    return False


def _candidates(line: str) -> tuple[str, ...]:
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
