"""Normalisation of text that will be published: tidy whitespace, keep every letter.

This never changes what a reader sees beyond invisible characters and spacing; the
aggressive folding used to compare documents lives in `matching` and is never published.
"""

from __future__ import annotations

import re
import unicodedata

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

_PUBLISH_TABLE: dict[int, str | None] = {cp: None for cp in (*_CONTROLS, *_INVISIBLE)}
_PUBLISH_TABLE.update({cp: " " for cp in _SPACES})
_PUBLISH_TABLE.update(_BREAKS)
del _PUBLISH_TABLE[0x0A]  # "\n" stays as it is

_SPACE_RUN = re.compile(" {2,}")

# Characters that draw nothing by themselves: format characters (bidi marks, ZWJ/ZWNJ,
# soft hyphen, tags), controls, separators, combining marks with no base (variation
# selectors are marks too), surrogates, and the blank letters and symbols that render as
# space (Hangul fillers, the braille blank, the Mongolian vowel separator).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


def normalise_for_publishing(text: str) -> str:
    """NFC, LF line ends, no control/invisible characters, single spaces, stripped lines,
    paragraphs separated by exactly one empty line, no leading/trailing blank lines.

    Idempotent: applying it twice gives the same result as once.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").translate(_PUBLISH_TABLE)
    return join_lines([_SPACE_RUN.sub(" ", line).strip(" ") for line in text.split("\n")])


def has_visible_text(text: str) -> bool:
    """Whether `text` has at least one character that draws something (see above)."""
    # Each distinct character is classified once: a 10 MB text of zero-width joiners is
    # one lookup, not ten million.
    return any(_visible(char) for char in set(text))


def _visible(char: str) -> bool:
    return unicodedata.category(char) not in _INVISIBLE_CATEGORIES and char not in _BLANK_GLYPHS


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
