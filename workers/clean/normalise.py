"""Normalisation of text that will be published: tidy whitespace, keep every letter.

This never changes what a reader sees beyond invisible characters and spacing, except to
repair text an exporter decoded wrongly before it reached us (UTF-8 read as
windows-1252: "Ø§Ù„Ø­ÙƒÙˆÙ…Ø©" for "الحكومة"); the aggressive folding used to compare
documents lives in `matching` and is never published.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from workers.clean.codepoints import (
    NEWLINE,
    NUMPY_FROM_CHARS,
    SPACE,
    UNICODE_SIZE,
    LazyTable,
    codes,
    normalized,
    text_of,
    tidy_spaces,
)

# Line breaks in all their Unicode spellings become "\n"; a paragraph separator is a
# paragraph break, i.e. an empty line.
_BREAKS: dict[int, str] = {
    0x0B: "\n",  # vertical tab
    0x0C: "\n",  # form feed (page break in old exports)
    0x0D: "\n",
    0x85: "\n",  # NEL
    0x2028: "\n",
    0x2029: "\n\n",
}
# Every Zs space (NBSP, en/em spaces, narrow NBSP, ideographic space...) and tab.
_SPACES = (0x09, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)
# Invisible junk: BOM, zero-width space, word joiner. ZWNJ/ZWJ (U+200C/U+200D) are kept on
# purpose: they change letter shaping and spelling in Persian and Arabic.
_INVISIBLE = (0xFEFF, 0x200B, 0x2060)
_CONTROLS = (*range(0x00, 0x20), *range(0x7F, 0xA0))

# Code point -> what it is published as (a code point, or _DROP), for all of Unicode.
# U+2029 becomes two characters and is replaced before the lookup.
_DROP = -1
_PUBLISH_TABLE = np.arange(UNICODE_SIZE, dtype=np.int32)
_PUBLISH_TABLE[[*_CONTROLS, *_INVISIBLE]] = _DROP
_PUBLISH_TABLE[list(_SPACES)] = SPACE
for _code, _replacement in _BREAKS.items():
    _PUBLISH_TABLE[_code] = ord(_replacement[0])
_PUBLISH_TABLE[NEWLINE] = NEWLINE
# The same for `str.translate`, for short texts (see NUMPY_FROM_CHARS).
_PUBLISH_TRANSLATION: dict[int, int | None] = {
    point: None if int(value) == _DROP else int(value)
    for point in (*_CONTROLS, *_INVISIBLE, *_SPACES, *_BREAKS)
    if (value := _PUBLISH_TABLE[point]) != point
}

# Characters that draw nothing by themselves: format characters (bidi marks, ZWJ/ZWNJ,
# soft hyphen, tags), controls, separators, combining marks with no base (variation
# selectors are marks too), surrogates, and the blank letters and symbols that render as
# space (Hangul fillers, the braille blank, the Mongolian vowel separator).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


# UTF-8 read as windows-1252 or Latin-1 leaves the reading of a lead byte (Â..ô) before
# the reading of a continuation byte (U+0080..U+00BF, or windows-1252's letters and
# punctuation at 0x80..0x9F). Only a text with such a pair goes to ftfy, which decides
# whether reading it back is a repair ("São Paulo" or „Straße“ stay): its check costs
# about 0.5 ms on an article, this search a few microseconds.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030"
    "\u2039\u203a\u20ac\u2122]"
)


def repair_mojibake(text: str) -> str:
    """`text` with UTF-8 that was read as windows-1252 or Latin-1 read back as UTF-8
    (ftfy's `fix_encoding`); any other text unchanged."""
    if not _MOJIBAKE_HINT.search(text):
        return text
    import ftfy  # only texts with the hint need it

    return str(ftfy.fix_encoding(text))


def normalise_for_publishing(text: str) -> str:
    """Mojibake repaired (`repair_mojibake`), NFC, LF line ends, no control/invisible
    characters, single spaces, stripped lines, paragraphs separated by exactly one empty
    line, no leading/trailing blank lines.

    Idempotent: applying it twice gives the same result as once.
    """
    text = normalized("NFC", repair_mojibake(text)).replace("\r\n", "\n").replace("\u2029", "\n\n")
    if len(text) < NUMPY_FROM_CHARS:
        lines = text.translate(_PUBLISH_TRANSLATION).split("\n")
        return join_lines([" ".join(filter(None, line.split(" "))) for line in lines])
    points = _PUBLISH_TABLE[codes(text)]
    points = tidy_spaces(points[points != _DROP])
    newline = points == NEWLINE
    if not newline.any():
        return text_of(points)
    solid = np.flatnonzero(~newline)
    if not len(solid):
        return ""
    # Blank lines: none at the edges, and a run of them is one paragraph break ("\n\n").
    keep = np.zeros(len(points), dtype=bool)
    keep[solid[0] : solid[-1] + 1] = True
    keep[2:] &= ~(newline[2:] & newline[1:-1] & newline[:-2])
    return text_of(points[keep])


def has_visible_text(text: str) -> bool:
    """Whether `text` has at least one character that draws something (see above)."""
    # A lookup per character, each distinct character classified once: a 10 MB text of
    # zero-width joiners costs one classification and one numpy pass.
    return bool(_VISIBLE[codes(text)].any())


def _visible(point: int) -> int:
    char = chr(point)
    return int(
        unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANK_GLYPHS
    )


_VISIBLE = LazyTable(_visible)


def split_lines(text: str) -> list[str]:
    """Lines of a publish-normalised text; empty lines are the paragraph breaks."""
    return text.split("\n") if text else []


def join_lines(lines: list[str]) -> str:
    """Join lines, collapsing runs of blank lines to one and dropping blank edges, so that
    removing lines from a document never leaves a double paragraph break behind."""
    out: list[str] = []
    blank_pending = False
    for line in lines:
        if not line.strip():
            blank_pending = bool(out)
            continue
        if blank_pending:
            out.append("")
            blank_pending = False
        out.append(line)
    return "\n".join(out)
