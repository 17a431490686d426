"""Normalisation for fingerprints only: fold away what differs between copies of a story.

Two outlets republishing the same wire story differ in diacritics, hamza spelling, final
yeh/teh marbuta, digit shapes, quote styles and spacing; all of that is erased here. The
output is only ever hashed or shingled, never shown, so losing information is fine.
"""

from __future__ import annotations

import unicodedata

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


class _MatchTable(dict[int, int | str | None]):
    """`str.translate` table that classifies unseen characters once and caches the answer.

    Building a table over all of Unicode at import would cost ~1M category lookups;
    news text uses a few hundred distinct characters, so lazy caching is both exact and
    fast. Punctuation, symbols, separators and controls become a space; format characters
    (ZWNJ, bidi marks, soft hyphen) vanish so they cannot split a word; the rest is kept.
    """

    def __missing__(self, key: int) -> int | str | None:
        category = unicodedata.category(chr(key))
        value: int | str | None
        if category[0] in "PSZ" or category == "Cc":
            value = " "
        elif category == "Cf":
            value = None
        else:
            value = key  # mapping to itself keeps the character
        self[key] = value
        return value


_TABLE = _MatchTable({**_LETTERS, **_DIGITS, **dict.fromkeys(_DELETE, None)})


def normalise_for_matching(text: str) -> str:
    """Fold `text` for comparison: NFKC, Arabic letter/diacritic folding, ASCII digits,
    punctuation and symbols to spaces, casefold, single spaces, no newlines."""
    folded = unicodedata.normalize("NFKC", text).translate(_TABLE).casefold()
    return " ".join(folded.split())


def matching_tokens(text: str) -> list[str]:
    """Whitespace tokens of `normalise_for_matching(text)`."""
    return normalise_for_matching(text).split()
