"""Boilerplate stripping: which lines of a document are furniture, by the rules
(`rules.py`), the lines learned or pinned for its source (`lines.py`, `learner.py`) and
the links to other articles (`links.py`); and which lines the learner counts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

from workers.clean.boilerplate.lines import (
    BYLINE_SEPARATOR,
    MAX_RULE_LINE_CHARS,
    byline_parts,
    comparable,
    hash_key,
    line_hash,
    line_key,
)
from workers.clean.boilerplate.links import is_title_link, related_links
from workers.clean.boilerplate.rules import (
    AUTHOR_NOTE_RULE,
    AUTHOR_RULE,
    LEARNED_BYLINE_RULE,
    LEARNED_RULE,
    LINK_PROMPT_RULE,
    OUTLET_RULE,
    PINNED_RULE,
    RELATED_RULE,
    TEASER_RULE,
    TITLE_BYLINE_RULE,
    TITLE_LINK_RULE,
    TITLE_RULE,
    RuleSet,
    first_match,
    rule_candidates,
)
from workers.clean.boilerplate.teasers import is_headline, prompt_boxes, teaser_box
from workers.clean.matching import fold_lines, normalise_for_matching
from workers.clean.normalise import join_lines, split_lines
from workers.config import DEFAULTS
from workers.document import StrippedLine

# A top line this short that is part of the title is the title's kicker or the columnist's
# name set as a byline ("ناصر الجديع" over "ناصر الجديع: إنجليزي يقود السوبر").
TITLE_BYLINE_MAX_WORDS = 4
# A line naming the outlet with at most this many other words around it is a byline
# ("عمر إبراهيم – عين اليوم", "عين اليوم – جدة").
OUTLET_BYLINE_MAX_WORDS = 4
# An edge line this short equal to the document's author metadata is its byline.
AUTHOR_BYLINE_MAX_WORDS = 8
# The paper's note under an article, marked by one asterisk: who the writer is or which
# desk or service it comes from ("* ناقد مصري", "* قسم التثقيف الصحي", "* خدمة «نيويورك
# تايمز»"). Arabic papers put it last, on its own line; the asterisk, not the wording,
# says it is a note. At most this many words, and never a list's last item.
AUTHOR_NOTE_MAX_WORDS = 8
_AUTHOR_NOTE = re.compile(r"\*(?!\*)\s*\w")  # one asterisk ("**" marks a table's footnote)


@dataclass(slots=True)
class StripResult:
    text: str
    stripped: list[StrippedLine]
    # `normalise_for_matching(text)`, from the lines' folding done once for the stripping.
    matching: str
    # Every non-empty line was boilerplate: `text` is then the body unchanged and the
    # caller decides (the pipeline sends the document to `dead` as all_boilerplate).
    all_boilerplate: bool = False


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
    folded: Sequence[str] | None = None,
) -> StripResult:
    """Remove boilerplate lines from a publish-normalised `body`.

    Considers non-empty lines only. Anywhere in the body, a line is removed when it
    matches an `anywhere` rule (global or of `source`), equals the title
    ("title_repeated") or is just the outlet's name ("outlet_name"), all compared loosely.
    Then each edge is peeled, from the top down and from the bottom up, over lines no
    earlier step removed:
    - while no line has been kept yet on that side: a line whose `line_hash` is in
      `learned` ("learned") or pinned for the source ("pinned"); a short byline-shaped
      line with a part in `learned` ("learned_byline", see `byline_parts`; at the top
      also under one kept headline-shaped line, a kicker or deck); at the top,
      a short line that is part of the title ("title_byline"); a short byline around
      the outlet's name (the separator is what makes it a byline, not a sentence that
      mentions the outlet);
    - among the first `rules.edge_lines` kept lines: `edges` rules (and `top` / `bottom`
      rules on their side);
    - at the bottom, when no rule named it and no line has been kept yet: the paper's
      asterisked note on the writer, desk or service ("author_note", `is_author_note`).
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
    `folded` is `fold_lines(body)` when the caller has it (computed here otherwise): each
    line is folded once, whatever the number of rules that look at it.
    """
    lines = split_lines(body)
    folded = fold_lines(body) if folded is None else folded
    content = [i for i, line in enumerate(lines) if line.strip()]
    source_rules = rules.for_source(source)
    active = rules.rules + source_rules.rules
    anywhere = [rule for rule in active if rule.where == "anywhere"]
    side_rules = {
        "top": [rule for rule in active if rule.where in ("edges", "top")],
        "bottom": [rule for rule in active if rule.where in ("edges", "bottom")],
    }
    title_folded = normalise_for_matching(title)
    title_key = title_folded.replace(" ", "")  # `comparable(title)`
    title_words = f" {title_folded} "
    author_key = comparable(author) if len(author) <= MAX_RULE_LINE_CHARS else ""
    outlet_names = _outlet_names(source, source_rules.names)
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
            hashes[i] = line_hash(lines[i], folded[i])
        return hashes[i]

    pinned_content = (
        {i for i in content if digest_of(i) in source_rules.content}
        if source_rules.content
        else set()
    )
    protected |= pinned_content
    removed: dict[int, str] = {}
    title_links, lead_links = (
        related_links(lines, links, link_zone, folded) if links else (set(), set())
    )

    prompted = prompt_boxes(lines, folded, content)

    def truncate(start: int, name: str) -> None:
        for j in content:
            if j >= start and j not in protected:
                removed.setdefault(j, name)

    for i in content:
        if i in protected or i in removed:
            continue
        line = lines[i].strip()
        words = folded[i]
        if title_key and words.replace(" ", "") == title_key:
            removed[i] = TITLE_RULE
            continue
        if words in outlet_names:
            removed[i] = OUTLET_RULE
            continue
        if i in title_links:
            removed[i] = RELATED_RULE
            continue
        rule = first_match(anywhere, rule_candidates(line))
        if rule is None:
            continue
        if rule.action == "truncate_after":
            truncate(i, rule.name)
            break
        removed[i] = rule.name

    for side, order in (("top", content), ("bottom", content[::-1])):
        kept = 0
        last_kept = -1
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
                last_kept = i
                continue
            if kept == 0:
                name = _edge_furniture(
                    lines[i], folded[i], side, trimmable, title_words, outlet_names, author_key
                )
                if name:
                    removed[i] = name
                    continue
            elif (
                # A byline under a kicker or deck (a headline-shaped line over the story)
                # is still at the top: "<deck> / طلال عبدالله ـ دبي / <the lead>".
                kept == 1
                and side == "top"
                and trimmable
                and is_headline(lines[last_kept], folded[last_kept])
                and has_learned_byline_part(lines[i], folded[i], trimmable)
            ):
                removed[i] = LEARNED_BYLINE_RULE
                continue
            rule = (
                first_match(side_rules[side], rule_candidates(lines[i]))
                if kept < rules.edge_lines
                else None
            )
            if rule is None and i in prompted:
                removed[i] = LINK_PROMPT_RULE
            elif (
                rule is None
                and kept == 0
                and side == "bottom"
                and is_author_note(lines, content, i)
            ):
                # After the rules: a note they know (a syndication credit, a writer's bio)
                # keeps its own name.
                removed[i] = AUTHOR_NOTE_RULE
            elif rule is None:
                kept += 1
                last_kept = i
            elif rule.action == "truncate_after":
                truncate(i, rule.name)
            else:
                removed[i] = rule.name

    # Link prompts and the headlines under them, wherever they are; at the edges the rules
    # had the first say (they name the line), and the peeling went past them.
    for i in sorted(prompted):
        if i not in removed and i not in protected:
            removed[i] = LINK_PROMPT_RULE
    # Last, on what is left: a box of teasers at the bottom, by its shape and by how little
    # it shares with the article. Like a box of leads seen, it goes before `protect` (its
    # entries can be long leads), but never takes a line pinned as the source's content.
    box = teaser_box(lines, folded, [i for i in content if i not in removed])
    if box and not pinned_content.intersection(box):
        removed.update({i: TEASER_RULE for i in box})

    if len(removed) == len(content):
        # Nothing but the headline repeated (a feed's video or live entry) is a
        # headline-only document, not furniture: kept as it is.
        headline_only = all(rule == "title_repeated" for rule in removed.values())
        return StripResult(
            text=body,
            stripped=[],
            matching=" ".join(words for words in folded if words),
            all_boilerplate=bool(content) and not headline_only,
        )
    stripped = [StrippedLine(line_no=i, text=lines[i], rule=removed[i]) for i in sorted(removed)]
    kept_lines = [i for i in range(len(lines)) if i not in removed]
    text = join_lines([lines[i] for i in kept_lines])
    matching = " ".join(folded[i] for i in kept_lines if folded[i])
    return StripResult(text=text, stripped=stripped, matching=matching)


@lru_cache(maxsize=1024)
def _outlet_names(source: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The outlet's name and its spellings, matching-normalised: the same for every
    document of a source, so folded once per source."""
    return tuple(name for name in {normalise_for_matching(n) for n in (source, *names)} if name)


def has_learned_byline_part(line: str, words: str, trimmable: Collection[str]) -> bool:
    """Whether `line` (`words`: its matching normalisation) is byline-shaped with a part
    learned or pinned for its source (`byline_parts`): a byline the source was seen using."""
    return bool(trimmable) and any(part in trimmable for part, _ in byline_parts(line, words))


def _edge_furniture(
    line: str,
    words: str,
    side: str,
    trimmable: frozenset[str],
    title_words: str,
    outlet_names: tuple[str, ...],
    author_key: str = "",
) -> str | None:
    """The built-in rule that removes `line` (`words`: its matching normalisation) when it
    is the outermost line left on `side`."""
    if has_learned_byline_part(line, words, trimmable):
        return LEARNED_BYLINE_RULE
    count = len(words.split())
    if author_key and count <= AUTHOR_BYLINE_MAX_WORDS and words.replace(" ", "") == author_key:
        return AUTHOR_RULE
    if side == "top" and 0 < count <= TITLE_BYLINE_MAX_WORDS and f" {words} " in title_words:
        return TITLE_BYLINE_RULE
    if is_title_link(line, title_words):
        return TITLE_LINK_RULE
    for name in outlet_names:
        extra = count - len(name.split())
        if (
            0 < extra <= OUTLET_BYLINE_MAX_WORDS
            and f" {name} " in f" {words} "
            and BYLINE_SEPARATOR.search(line)
        ):
            return OUTLET_RULE
    return None


def is_author_note(lines: Sequence[str], content: Sequence[int], i: int) -> bool:
    """Whether line `i`, the last line left at the bottom, is the paper's asterisked note
    (`AUTHOR_NOTE_MAX_WORDS`): not a heading (it would end in a colon or a question mark)
    and not the last item of an asterisked list (the line above it starts with an
    asterisk too; a list in other marks above it does not make it one)."""
    line = lines[i].strip()
    if not _AUTHOR_NOTE.match(line) or len(line.split()) > AUTHOR_NOTE_MAX_WORDS:
        return False
    if line.rstrip(" .").endswith((":", "؟", "?")):
        return False
    at = content.index(i)
    above = lines[content[at - 1]].strip() if at > 0 else ""
    return bool(above) and not above.startswith("*")


def learnable_lines(
    body: str,
    *,
    source: str,
    rules: RuleSet,
    zone: int,
    folded: Sequence[str] | None = None,
    keys: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(hash, text) of the distinct lines among the first and last `zone`
    non-empty lines of a publish-normalised body: what the learner counts for a document.
    Only edge lines are ever trimmed as learned, so only they need counting; lines pinned
    as content for the source are left out. `folded`: `fold_lines(body)`, when the caller
    has it. `keys`, when given, receives each whole line's hash -> `line_key`, for the
    learner to match near variants without folding the line again."""
    every = split_lines(body)
    folded = fold_lines(body) if folded is None else folded
    lines = [(line, words) for line, words in zip(every, folded, strict=True) if line.strip()]
    picked = lines if len(lines) <= 2 * zone else lines[:zone] + lines[-zone:]
    content = rules.for_source(source).content
    seen: dict[str, str] = {}
    for line, words in picked:
        key = line_key(line, words)
        if not key:
            continue
        digest = hash_key(key)
        if digest in content:
            continue
        seen.setdefault(digest, line.strip())
        if keys is not None:
            keys[digest] = key
        for part_digest, part in byline_parts(line, words):
            seen.setdefault(part_digest, part)
    return list(seen.items())
