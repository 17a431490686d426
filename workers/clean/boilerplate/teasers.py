"""Links to other articles recognised by their shape, whether or not the linked articles
were ever seen: a link prompt glued to a headline ("اقرأ أيضا: <headline>", "شاهد..
<headline>", "Read more: <headline>"), a prompt line over a run of headlines, and a box
of teasers at the bottom whose words the article does not use.

`links.py` finds links by what they point to (titles and leads seen in the stream); this
module needs nothing but the document itself, so it also catches links to articles the
stream never carried (another section, an archive older than the stream).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from workers.clean.matching import UNSPACED_CHARACTER, UNSPACED_RUNS

# Link prompts, at the very start of a line. "Qualified" prompts say "also/more" and are
# prompts whatever follows; bare ones ("شاهد", "فيديو", "Watch") are also ordinary words
# ("شاهد عيان", "فيديو يظهر ..."), so they count only when a separator follows them.
_BARE_PROMPT = r"""
    [اأإ]قر[أا](?:وا)? | طالع(?:وا)? | شاهد(?:وا)? | تابع(?:وا)? | استمع(?:وا)?
  | (?:ال|لل)مزيد | بالفيديو | بالصور | فيديو | [إا]نفوغرافيك
  | read | watch | see | listen | related | video | more
"""
_QUALIFIED_PROMPT = r"""
    (?: [اأإ]قر[أا](?:وا)? | طالع(?:وا)? | شاهد(?:وا)? | تابع(?:وا)? | استمع(?:وا)? )
        \s+ (?: [أا]يض(?:اً|ًا|ا) | كذلك | المزيد )
  | read \s+ (?: more | also ) | also \s+ read | see \s+ also | watch \s+ (?: more | also )
  | related \s+ (?: articles? | stories | news | content | coverage )
  | more \s+ on \s+ this \s+ (?: story | topic )
"""
# What joins a prompt to its headline: a colon, a bar or dash, two or more dots.
_SEPARATOR = r"(?: \s* (?: [:：|–—-]+ | \.{2,} | … ) \s* )"
_QUALIFIED = re.compile(
    rf"(?ix) ^ (?:{_QUALIFIED_PROMPT}) (?: {_SEPARATOR} | \s+ ) (?P<rest>.+) $", re.DOTALL
)
_BARE = re.compile(rf"(?ix) ^ (?:{_BARE_PROMPT}) {_SEPARATOR} (?P<rest>.+) $", re.DOTALL)
# Every prompt starts so, after decoration: one cheap test that most lines fail.
_MAY_PROMPT = re.compile(
    r"[\W_]*(?:[اأإ]قر|طالع|شاهد|تابع|استمع|لل?مزيد|المزيد|بالفيديو|بالصور|فيديو|[إا]نفوغرافيك"
    r"|read|watch|see|listen|related|video|more|also)",
    re.IGNORECASE,
)
_PROMPT_ALONE = re.compile(
    rf"(?ix) ^ (?: {_QUALIFIED_PROMPT} | {_BARE_PROMPT} ) (?: {_SEPARATOR} )? $"
)

# A headline: a few words, no sentence end. A full stop, comma, colon or semicolon at the
# end makes a sentence or a list's introduction; "?" and "!" and closing quotes are fine.
HEADLINE_MIN_WORDS = 2
HEADLINE_MAX_WORDS = 20
HEADLINE_MAX_CHARS = 160
# Closing quotes and brackets do not end a sentence: «... قال.» still ends on its full stop.
# Chinese and Japanese end sentences and clauses with their own full stop, commas, colon
# and semicolon (。，、：；．), and close quotes with 」』.
_SENTENCE_END = re.compile(r"[.:،,;؛。，、：；．][\s\"'”’»)\]}」』】）》〉]*$")
# A text's words when its matching normalisation is not at hand (`is_headline_text`).
_WORDS = re.compile(r"\w+")
# List items, bullets, numbered steps: parts of the article's own list.
_LIST_MARK = re.compile(r"^\s*(?:[-–—•*·●▪►◄■□○◦]|\d+\s*[-.)/]|\(\d+\))")
# Under a prompt, at most this many headlines make its box.
PROMPT_BOX_MAX_LINES = 6
_DECORATION = ' \t\u00a0\u200f\u200e*•·/|\\-–—_~«»"“”()[]{}'


def is_headline(line: str, words: str) -> bool:
    """`line` (`words`: its matching normalisation) has a headline's shape: a few words,
    no closing full stop, comma or colon, no list mark."""
    count = len(words.split())
    text = line.strip()
    return (
        HEADLINE_MIN_WORDS <= count <= HEADLINE_MAX_WORDS
        and len(text) <= HEADLINE_MAX_CHARS
        and not _SENTENCE_END.search(text)
        and not _LIST_MARK.match(text)
    )


def is_headline_text(text: str) -> bool:
    """`is_headline` of a text whose matching normalisation is not at hand: its words are
    its runs of word characters."""
    return is_headline(text, " ".join(_WORDS.findall(text)))


def _bare(line: str) -> str:
    # "\u0640" (tatweel) only stretches letters: "اقـرأ أيضـاً".
    return line.replace("\u0640", "").strip(_DECORATION)


def prompt_headline(line: str) -> bool:
    """`line` is a link prompt followed by a headline: "اقرأ أيضا: <headline>",
    "إقرأ أيضا <headline>", "شاهد.. <headline>", "Read more - <headline>". The remainder
    must be headline-shaped, so "شاهد: وصلنا إلى المكان وكان ..." (a witness, a sentence)
    stays."""
    text = _bare(line)
    if len(text) > HEADLINE_MAX_CHARS + 40:
        return False
    match = _QUALIFIED.match(text) or _BARE.match(text)
    if match is None:
        return False
    rest = match.group("rest").strip()
    return bool(rest) and is_headline_text(rest)


def is_prompt_line(line: str) -> bool:
    """`line` is a link prompt alone ("اقرأ أيضاً:", "Read more", "شاهد أيضا"): the
    headlines it introduces follow on the next lines."""
    text = _bare(line)
    return len(text) <= 40 and _PROMPT_ALONE.match(text) is not None


def prompt_boxes(lines: Sequence[str], folded: Sequence[str], content: Sequence[int]) -> set[int]:
    """Indexes (in `lines`) of the link prompts and the headlines under them: every line
    that is a prompt with its headline, and under a prompt line alone the run of
    headline-shaped lines that follows it (at most PROMPT_BOX_MAX_LINES; the run ends at
    the first line that is not a headline, a paragraph of the article). A prompt line with
    no headline under it is left to the rules (it may close a sentence cut by extraction)."""
    found: set[int] = set()
    for pos, i in enumerate(content):
        if not _MAY_PROMPT.match(lines[i][:40].replace("\u0640", "")):
            continue
        if prompt_headline(lines[i]):
            found.add(i)
            continue
        if not is_prompt_line(lines[i]):
            continue
        run = []
        for j in content[pos + 1 : pos + 1 + PROMPT_BOX_MAX_LINES]:
            if not is_headline(lines[j], folded[j]) or is_prompt_line(lines[j]):
                break
            run.append(j)
        if run:
            found.add(i)
            found.update(run)
    return found


# ------------------------------------------------------------------ teaser boxes

# A box of teasers at the bottom: at least this many entries, each a headline of at least
# TEASER_MIN_WORDS words (shorter lines are captions, names, a signature), none sharing
# more than TEASER_MAX_COHESION of its words with the article above. Paragraph-sized
# entries are left to `links.related_links` (leads seen): an article's own closing
# paragraphs share as few stems with the rest as a teaser does, so cohesion cannot tell.
TEASER_MIN_LINES = 3
TEASER_MIN_WORDS = 4
TEASER_MAX_COHESION = 0.2
# The article above the box must be long enough to say which words it uses.
TEASER_MIN_BODY_WORDS = 60
TEASER_MAX_LINES = 12
# Arabic clitics dropped before comparing words, so "والحكومة" meets "الحكومة", "حكومة".
_CLITICS = ("وبال", "وال", "بال", "فال", "كال", "لل", "ال", "و", "ب", "ل", "ف")
STEM_CHARS = 5
# Words this short are mostly function words ("في", "من", "of", "the").
MIN_WORD_CHARS = 3


def stem(word: str) -> str:
    """A crude stem: clitics off, first STEM_CHARS letters. Enough to tell whether two
    texts talk about the same things, which is all cohesion asks."""
    for clitic in _CLITICS:
        if word.startswith(clitic) and len(word) - len(clitic) >= MIN_WORD_CHARS:
            word = word[len(clitic) :]
            break
    return word[:STEM_CHARS]


def stems(words: str) -> set[str]:
    """Stems of the content words of a matching-normalised text. Chinese and Japanese
    have no spaces between words, and a run of their characters (a whole clause) is no
    word: its stems are its character bigrams, which two texts on one subject share
    (人民币, 汇率 and 人民币汇率 all give 人民, 民币)."""
    if UNSPACED_CHARACTER.search(words) is None:
        return {stem(w) for w in words.split() if len(w) >= MIN_WORD_CHARS and not w.isdigit()}
    found: set[str] = set()
    for word in words.split():
        for run in UNSPACED_RUNS.findall(word):
            if UNSPACED_CHARACTER.match(run):
                found.update(run[k : k + 2] for k in range(max(1, len(run) - 1)))
            elif len(run) >= MIN_WORD_CHARS and not run.isdigit():
                found.add(stem(run))
    return found


def cohesion(words: str, body: set[str]) -> float:
    """Share of the line's content-word stems that the article (`body`, its stems) uses."""
    return _share(stems(words), body)


# Long vowels, the feminine ending and the pronoun "ـه" close a rhyme without being it:
# "تنافى" and "يخافا" rhyme on "ف", "لسانه" and "الدانة" on "ن".
_RHYME_TAIL = re.compile(r"[\W\d_اأإآىيوهةًٌٍَُِّْ]+$")


_MARKS = re.compile(r"[\W\d_ًٌٍَُِّْـ]+")


def _rhyme(line: str) -> str:
    return _RHYME_TAIL.sub("", line.strip())[-1:]


def _ending(line: str) -> str:
    # The last two letters as written: "الغوايا" and "البرايا" end alike on "يا".
    return _MARKS.sub("", line)[-2:]


def is_verse(lines: Sequence[str]) -> bool:
    """Verse keeps one rhyme letter (qafiya) at the end of its lines: of every line, or of
    every second one when each hemistich is set as a line of its own; headlines end as
    they like. So verse is a run where every second line (either parity) shares one rhyme
    letter, or where one rhyme letter ends half the lines or more (a signature or an odd
    line under a poem). A poem closing a column is content, however little its words
    share with the prose above."""
    for rhymes in ([_rhyme(line) for line in lines], [_ending(line) for line in lines]):
        for parity in (rhymes[0::2], rhymes[1::2]):
            if len(parity) >= 2 and len(set(parity)) == 1:
                return True
        if max(rhymes.count(rhyme) for rhyme in rhymes) * 2 >= len(rhymes):
            return True
    return False


# "الدفاع: ...", "الناشر: ...": a label and a colon opening every line is a list of fields.
_FIELD = re.compile(r"^\s*\S+(?:\s\S+)?\s*[:：]")


def teaser_box(lines: Sequence[str], folded: Sequence[str], kept: Sequence[int]) -> list[int]:
    """Indexes (in `lines`) of a box of teasers at the bottom of `kept` (the non-empty
    lines left, in order): the longest run of last lines, TEASER_MIN_LINES or more, that
    are all headlines of at least TEASER_MIN_WORDS words and share little with the article
    above them (`cohesion` at most TEASER_MAX_COHESION each). Empty when the run is not a
    box: a list the article introduces with a colon, bullets, a list of fields, verse
    (`is_verse`), or a run not shorter than the article above it."""
    run: list[int] = []
    for i in reversed(kept):
        shaped = len(folded[i].split()) >= TEASER_MIN_WORDS and is_headline(lines[i], folded[i])
        if not shaped or len(run) >= TEASER_MAX_LINES:
            break
        run.append(i)
    if len(run) < TEASER_MIN_LINES:
        return []  # most documents: no run at all, nothing more to compute
    # Judged on the whole run: a part of a poem can look like anything.
    entries = [lines[i] for i in run]
    if is_verse(entries) or all(_FIELD.match(line) for line in entries):
        return []
    own = {i: stems(folded[i]) for i in kept}
    while run:
        above = [i for i in kept if i < run[-1]]
        if len(run) < TEASER_MIN_LINES:
            return []
        body = set().union(*(own[i] for i in above)) if above else set()
        long_enough = (
            len(above) > len(run)
            and sum(len(folded[i].split()) for i in above) >= TEASER_MIN_BODY_WORDS
        )
        if (
            long_enough
            and all(_share(own[i], body) <= TEASER_MAX_COHESION for i in run)
            and not lines[above[-1]].strip().endswith((":", "："))
        ):
            return sorted(run)
        run.pop()  # the topmost entry may be the article's last paragraph: try without it
    return []


def _share(own: set[str], body: set[str]) -> float:
    return len(own & body) / len(own) if own else 1.0
