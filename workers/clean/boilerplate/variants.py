"""Near variants of learned lines: furniture an outlet words two or three ways ("جميع
المقالات تعبر عن رأي كاتبها" / "... عن رأي أصحابها"), or retypes with a letter off, is
the same furniture. The learner counts lines by their exact key (`lines.line_key`, which
already folds numbers, dates and times), so a variant seen fewer than `min_docs` times is
never learned on its own; matched against the source's learned lines, it goes with them.

Tolerances are small and grow with the line: a character or two for a short line, a
word or two for a long one. Lines shorter than VARIANT_MIN_CHARS have no variants: one
letter turns "الرياضي" into "الرياض", a name into another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

VARIANT_MIN_CHARS = 15
# Keys up to this many characters are compared letter by letter, longer ones word by word.
VARIANT_CHAR_MAX = 60
# A key of at most this many characters may differ by one letter; up to
# VARIANT_CHAR_MAX, by two.
ONE_EDIT_MAX_CHARS = 30
# Long lines: at least VARIANT_MIN_WORDS words may differ by a word, VARIANT_TWO_WORDS
# or more by two; past VARIANT_MAX_CHARS a line is a paragraph, matched exactly or not
# at all.
VARIANT_MIN_WORDS = 8
VARIANT_TWO_WORDS = 12
VARIANT_MAX_CHARS = 300


def char_tolerance(key: str) -> int:
    """Letters a short key may differ by from a learned one (0: none, compare words)."""
    if len(key) < VARIANT_MIN_CHARS or len(key) > VARIANT_CHAR_MAX:
        return 0
    return 1 if len(key) <= ONE_EDIT_MAX_CHARS else 2


def word_tolerance(key: str, words: int) -> int:
    """Words a long key of `words` words may differ by from a learned one."""
    if len(key) <= VARIANT_CHAR_MAX or len(key) > VARIANT_MAX_CHARS:
        return 0
    if words < VARIANT_MIN_WORDS:
        return 0
    return 1 if words < VARIANT_TWO_WORDS else 2


# Word-level distances run as letter-level ones: each learned word is written as one
# character of its own (from here on, past every script's letters), so rapidfuzz compares
# word sequences in C with its length pruning. A word no learned line has is UNKNOWN.
_WORD_CHARS = 0x10000
_UNKNOWN = chr(0x10FFFF)


@dataclass(frozen=True, slots=True)
class LearnedKeys:
    """The keys of one source's learned lines, for `near` to match variants against."""

    keys: tuple[str, ...] = ()
    # Each key's words, one character a word (see _WORD_CHARS), and the word alphabet.
    words: tuple[str, ...] = ()
    alphabet: Mapping[str, str] = field(default_factory=dict)
    _exact: frozenset[str] = frozenset()

    @classmethod
    def of(cls, keys: Iterable[str]) -> LearnedKeys:
        distinct = tuple(sorted({key for key in keys if key}))
        alphabet: dict[str, str] = {}
        for key in distinct:
            for word in key.split():
                alphabet.setdefault(word, chr(_WORD_CHARS + len(alphabet)))
        words = tuple(_spell(key, alphabet) or "" for key in distinct)
        return cls(distinct, words, alphabet, frozenset(distinct))

    def near(self, key: str) -> bool:
        """`key` (a `line_key`) is within the tolerance of a learned key, and not one of
        them: whether a line is learned itself is the counts' call alone (these keys may
        be a few documents old)."""
        if not self.keys or key in self._exact:
            return False
        letters = char_tolerance(key)
        if letters:
            found = process.extractOne(
                key, self.keys, scorer=Levenshtein.distance, score_cutoff=letters
            )
            return found is not None
        words = word_tolerance(key, key.count(" ") + 1)
        if not words:
            return False
        spelt = _spell(key, self.alphabet, words)
        if spelt is None:
            return False
        found = process.extractOne(
            spelt, self.words, scorer=Levenshtein.distance, score_cutoff=words
        )
        return found is not None


def _spell(key: str, alphabet: Mapping[str, str], unknown: int | None = None) -> str | None:
    """`key` one character a word; None once more than `unknown` words are not in the
    alphabet (each costs an edit: most lines of an article are out of reach at once)."""
    spelt: list[str] = []
    missing = 0
    for word in key.split():
        char = alphabet.get(word)
        if char is None:
            missing += 1
            if unknown is not None and missing > unknown:
                return None
            char = _UNKNOWN
        spelt.append(char)
    return "".join(spelt)
