"""Normalisation for fingerprints only: fold away what differs between copies of a story.

Two outlets republishing the same wire story differ in diacritics, hamza spelling, final
yeh/teh marbuta, digit shapes, quote styles and spacing; all of that is erased here, and
so are the accents of Latin, Greek and Cyrillic letters (feeds that strip them, Greek
capitals without tonos, Russian ё written е). The
output is only ever hashed or shingled, never shown, so losing information is fine.

Folding is a lookup per code point, done in numpy over the UTF-32 text: `str.translate`
with a Python mapping costs a dictionary lookup per character, which was the largest
single cost of the whole worker. A document is folded once (`fold_lines`), and every
consumer of its lines (boilerplate rules, links, the learner, the fingerprint's tokens)
reads that one result.
"""

from __future__ import annotations

import re
import unicodedata

from workers.clean.codepoints import (
    NEWLINE,
    NUMPY_FROM_CHARS,
    SPACE,
    LazyTable,
    codes,
    normalized,
    text_of,
    tidy_spaces,
)

# Arabic letter variants folded to one spelling. Hamza seats are written inconsistently in
# news copy, and ى/ي, ة/ه are swapped freely, so they carry no identity for matching.
_LETTERS: dict[int, str] = {
    **dict.fromkeys(map(ord, "أإآٱٲٳ"), "ا"),
    ord("ى"): "ي",
    ord("ئ"): "ي",
    ord("ی"): "ي",  # Persian yeh
    ord("ة"): "ه",
    ord("ۀ"): "ه",
    ord("ؤ"): "و",
    ord("ک"): "ك",  # Persian keheh
}
_DIGITS: dict[int, str] = {
    **{0x0660 + d: str(d) for d in range(10)},  # Arabic-Indic
    **{0x06F0 + d: str(d) for d in range(10)},  # Extended (Persian/Urdu)
}
# Tashkeel, Quranic marks, superscript alef and tatweel carry no lexical identity here.
_DELETE = (
    *range(0x064B, 0x0660),
    0x0670,
    *range(0x0610, 0x061B),
    *range(0x06D6, 0x06EE),
    0x0640,
)


_STROKED = (("đĐ", "d"), ("łŁ", "l"), ("øØ", "o"), ("ħĦ", "h"), ("ŧŦ", "t"), ("ı", "i"))


def _without_marks(point: int) -> str | None:
    """The letter without its accents (é -> e, ё -> е, ά -> α, İ -> I), or None when it has
    none or is not one letter once they are gone."""
    letter = chr(point)
    base = "".join(
        part for part in unicodedata.normalize("NFD", letter) if not unicodedata.combining(part)
    )
    return base if len(base) == 1 and base != letter else None


# Accented letters of the Latin, Greek and Cyrillic blocks (and their extended blocks),
# folded to their base letters. Other scripts' marks are their own (Arabic's are above;
# a Hangul syllable decomposes into its letters, which must stay together).
_ACCENTED: dict[int, str] = {
    point: base
    for block in (range(0x00C0, 0x0250), range(0x0370, 0x0530), range(0x1E00, 0x2000))
    for point in block
    if (base := _without_marks(point)) is not None
}
# Letters with a stroke or without a dot are no accented forms to Unicode, but a copy that
# drops accents writes them so: Łódź as Lodz, Đà Nẵng as Da Nang, Turkish ı as i.
_ACCENTED.update({ord(letter): base for letters, base in _STROKED for letter in letters})

_DROP = -1


def _classify(point: int) -> int:
    """Punctuation, symbols, separators and controls become a space (a newline stays a
    newline, so that a text folds line by line in one pass); format characters (ZWNJ,
    bidi marks, soft hyphen) vanish so they cannot split a word; the rest is kept."""
    category = unicodedata.category(chr(point))
    if point == NEWLINE:
        return NEWLINE
    if category[0] in "PSZ" or category == "Cc":
        return SPACE
    if category == "Cf":
        return _DROP
    return point


# Every code point folded to another, for both tables below.
_FOLDED = {point: ord(folded) for point, folded in {**_ACCENTED, **_LETTERS, **_DIGITS}.items()}

_TABLE = LazyTable(_classify, {**_FOLDED, **dict.fromkeys(_DELETE, _DROP)})


class _Translation(dict[int, int | None]):
    """The same table for `str.translate`, for short texts (see `fold`)."""

    def __missing__(self, point: int) -> int | None:
        value = _classify(point)
        self[point] = None if value == _DROP else value
        return self[point]


_TRANSLATION = _Translation({**_FOLDED, **dict.fromkeys(_DELETE, None)})


def fold(text: str) -> str:
    """NFKC, Arabic letter/diacritic folding, Latin/Greek/Cyrillic accents dropped, ASCII
    digits, punctuation, symbols and separators to spaces, casefold; lines kept, each
    with single spaces and no space at its edges."""
    text = normalized("NFKC", text)
    if len(text) < NUMPY_FROM_CHARS:
        folded = text.translate(_TRANSLATION).casefold()
        return "\n".join(" ".join(line.split()) for line in folded.split("\n"))
    points = _TABLE[codes(text)]
    return text_of(tidy_spaces(points[points != _DROP])).casefold()


def normalise_for_matching(text: str) -> str:
    """Fold `text` for comparison (`fold`), single spaces, no newlines."""
    return " ".join(fold(text).split())


def fold_lines(text: str) -> list[str]:
    """`normalise_for_matching` of every line of `text` (as `normalise.split_lines` splits
    it: on "\\n", none for ""), in one pass.

    The same as folding line by line: NFKC never composes across a newline (a starter
    that combines with nothing), and the rest of `fold` maps character by character."""
    return fold(text).split("\n") if text else []


# Scripts written without spaces between words, one word or morpheme per character: Han
# (with its radicals, strokes and iteration marks), hiragana, katakana, bopomofo and Yi.
# Their whitespace tokens are whole clauses, so one edited character would change a
# clause's every shingle; each of their characters is a token instead, and a word
# 3-shingle becomes the character 3-gram that near-duplicate detection uses for them.
# Hangul is written with spaces; Thai, Lao, Khmer and Myanmar are alphabets whose single
# characters would be too common to tell texts apart, so they keep their tokens.
_UNSPACED = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3031-\u3035\u3038-\u303c"
    "\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua000-\ua4cf\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
# Recorded in the index with the fingerprint's schemes: tokens decide every stored value.
TOKENS_SCHEME = "nfkc-fold-accents/whitespace/unspaced-script-characters"
UNSPACED_CHARACTER = re.compile(f"[{_UNSPACED}]")
# A word split into its runs of such characters and the rest: "gdp增长5" -> gdp, 增长, 5.
UNSPACED_RUNS = re.compile(f"[{_UNSPACED}]+|[^\\s{_UNSPACED}]+")
_UNSPACED_TOKENS = re.compile(f"[{_UNSPACED}]|[^\\s{_UNSPACED}]+")


def matching_tokens(text: str) -> list[str]:
    """The tokens of `normalise_for_matching(text)` (`split_tokens`)."""
    return split_tokens(fold(text))


def split_tokens(folded: str) -> list[str]:
    """The tokens of a folded text: its whitespace tokens, a character of a script written
    without spaces (Chinese, Japanese) being a token of its own."""
    if UNSPACED_CHARACTER.search(folded) is None:
        return folded.split()
    return _UNSPACED_TOKENS.findall(folded)
