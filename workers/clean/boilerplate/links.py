"""Links between articles of one source: a line that is another article's headline, or
its lead paragraph in a "more from this section" box, is a link, not this article's
content; an edge line that is the document's own title with a link prompt is a link to
the article itself.

Each document offers targets (`link_targets`: its title and lead) that the learner keeps
per source for a while; each later document's lines are probed against them
(`link_probes`, `related_links`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from workers.clean.boilerplate.lines import MAX_RULE_LINE_CHARS, comparable, hash_key
from workers.clean.matching import fold_lines, normalise_for_matching
from workers.clean.normalise import split_lines

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
# An edge line that is the document's own title with at most this many words before or
# after it is a link to the article itself ("رابط الخبر بصحيفة الوئام: <title>",
# "<title> - <outlet>"); titles shorter than TITLE_LINK_MIN_WORDS are too generic to tell.
TITLE_LINK_MAX_WORDS = 6
TITLE_LINK_MIN_WORDS = 3


# A dateline opening a lead: "دبي، الإمارات العربية المتحدة (CNN)-- ", "(CNN)— ": a short
# place, an outlet or agency in brackets, a dash. Teasers of the article quote its lead
# without it.
_DATELINE = re.compile(r"[^.!?؟:\n]{0,80}?\([^()\n]{1,30}\)\s*[-–—]+\s*")


def link_key(text: str) -> str:
    # Exact wording matters for links (two headlines can differ by a number only), so no
    # digit folding: matching normalisation only.
    return normalise_for_matching(text) if len(text) <= MAX_RULE_LINE_CHARS else ""


def link_keys(lines: Sequence[str], folded: Sequence[str]) -> list[str]:
    """`link_key` of every line, from the lines' matching normalisation (`fold_lines`)."""
    return [
        key if len(line) <= MAX_RULE_LINE_CHARS else ""
        for line, key in zip(lines, folded, strict=True)
    ]


def _link_hash(label: str, text: str) -> str | None:
    key = link_key(text)
    return hash_key(label + key) if key else None


_FULL_STOP = re.compile(r"(?<!\.)\.\s*$")


def _lead_index(lines: list[str], keys: Sequence[str]) -> int | None:
    """Index in `lines` of the document's lead: the first of its first LEAD_SEARCH_LINES
    non-empty lines long enough to be a paragraph (a byline or kicker may come first).
    `keys` are the lines' `link_keys`."""
    seen = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if len(keys[i].split()) >= LINK_LEAD_MIN_WORDS:
            return i
        seen += 1
        if seen >= LEAD_SEARCH_LINES:
            return None
    return None


def link_targets(
    title: str, body: str, folded: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """(hash, text) under which other documents of the same source may link to this one:
    its title (at least LINK_TITLE_MIN_WORDS words) and its lead paragraph, also without
    a leading dateline. The learner keeps them, per source, for as long as its lossy
    counting keeps rare lines (at most about 2 x `prune_every` documents): recent
    articles, the ones others link to. `folded`: `fold_lines(body)`, when the caller has
    it."""
    found: dict[str, str] = {}
    if len(link_key(title).split()) >= LINK_TITLE_MIN_WORDS:
        digest = _link_hash(LINK_TITLE_LABEL, title)
        if digest:
            found[digest] = LINK_TITLE_LABEL + title.strip()
    lines = split_lines(body)
    keys = link_keys(lines, fold_lines(body) if folded is None else folded)
    lead = _lead_index(lines, keys)
    if lead is not None:
        text = lines[lead].strip()
        forms = [(text, keys[lead])]
        dateline = _DATELINE.match(text)
        if dateline:
            forms.append((text[dateline.end() :], link_key(text[dateline.end() :])))
        for form, key in forms:
            if key and len(key.split()) >= LINK_LEAD_MIN_WORDS:
                found.setdefault(hash_key(LINK_LEAD_LABEL + key), LINK_LEAD_LABEL + form)
    return list(found.items())


def probes_by_line(
    lines: list[str], zone: int, folded: Sequence[str]
) -> dict[int, tuple[str | None, str | None]]:
    """Line index -> (title hash, lead hash) the line would have if it linked to another
    article: a title hash for a headline-sized line anywhere, a lead hash for a
    paragraph among the last `zone` non-empty lines but the document's own lead (a short
    update of a story opens with the story's lead: that is no link). `folded`: the lines'
    `fold_lines`."""
    keys = link_keys(lines, folded)
    lead = _lead_index(lines, keys)
    content = [i for i, line in enumerate(lines) if line.strip()]
    tail = set(content[-zone:]) if zone > 0 else set()
    probes: dict[int, tuple[str | None, str | None]] = {}
    for i in content:
        key = keys[i]
        count = len(key.split())
        # A headline has no closing full stop: "إن من الشعر لحكمة." is a sentence that
        # happens to be another column's title.
        as_title = LINK_TITLE_MIN_WORDS <= count <= LINK_TITLE_MAX_WORDS and not _FULL_STOP.search(
            lines[i]
        )
        as_lead = i in tail and i != lead and count >= LINK_LEAD_MIN_WORDS
        if as_title or as_lead:
            probes[i] = (
                hash_key(LINK_TITLE_LABEL + key) if as_title else None,
                hash_key(LINK_LEAD_LABEL + key) if as_lead else None,
            )
    return probes


def link_probes(body: str, zone: int, folded: Sequence[str] | None = None) -> list[str]:
    """The link hashes (see `link_targets`) to look up for a publish-normalised body;
    `folded`: `fold_lines(body)`, when the caller has it."""
    return [
        digest
        for pair in probes_by_line(
            split_lines(body), zone, fold_lines(body) if folded is None else folded
        ).values()
        for digest in pair
        if digest is not None
    ]


def related_links(
    lines: list[str], links: Collection[str], zone: int, folded: Sequence[str]
) -> tuple[set[int], set[int]]:
    """Indexes in `lines` of the links to other articles, given the link hashes `links`
    found among other recent documents of the source: (headline-sized lines equal to
    another article's title, anywhere; the entries of a "more from this section" box at
    the bottom). Title links are none when they are half the document or more (a digest
    of headlines is its own content). The box: two or more lines among the last `zone`
    non-empty ones equal to other articles' leads, and every paragraph from the first of
    them down. `folded`: the lines' `fold_lines`."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    title_links: set[int] = set()
    lead_links: set[int] = set()
    for i, (as_title, as_lead) in probes_by_line(lines, zone, folded).items():
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
    tail_leads = [i for i in content[-zone:] if i in lead_links] if zone else []
    box = [i for i in content if tail_leads and i >= tail_leads[0]]
    if len(tail_leads) >= 2 and all(
        len(folded[i].split()) >= LINK_LEAD_MIN_WORDS and len(lines[i]) <= MAX_RULE_LINE_CHARS
        for i in box
    ):
        return title_links, set(box)
    return title_links, set()


# What joins a link prompt to the headline it links: "رابط الخبر: <title>", "<title> | X".
_LINK_SEPARATOR = re.compile(r"[:：|–—]|\s-|-\s")


def is_title_link(line: str, title_words: str) -> bool:
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
            if 0 < extra <= TITLE_LINK_MAX_WORDS and comparable(inside) == title:
                return True
    return False
