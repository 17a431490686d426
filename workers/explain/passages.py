"""The passages two texts share: maximal runs of common words, as word and character spans.

Words are compared folded as the fingerprints fold them (`workers.clean.matching.fold`:
diacritics, hamza seats, digit shapes and case do not count), so a passage the index saw
as shared is shown as shared. A passage is a run of at least `min_words` words (3 by
default, the index's shingle size) that both texts have in the same order; a word belongs
to at most one passage on each side. The runs are chosen longest first (greedy string
tiling), so a paragraph that moved is still found, and a sentence repeated in one text is
matched once.

Spans are half-open, in Unicode code points of the texts as given (Python string
indices): `text[start:end]` is the passage as shown, from its first word's first character
to its last word's last.
"""

from __future__ import annotations

import heapq
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

from workers.clean.matching import UNSPACED_CHARACTER, fold

# A word is a run of characters that are not separators, punctuation, symbols or controls
# (the characters `fold` turns into spaces), or one character of a script written without
# spaces (Chinese, Japanese), as the fingerprint's tokens are (`matching.split_tokens`).
_BREAKS = frozenset("PSZ")
# At most this many places in B are tried for one shingle of A: a text that repeats one
# phrase a thousand times must not cost a million comparisons.
_MAX_PLACES = 32


@dataclass(frozen=True, slots=True)
class Word:
    """A word of a text: where it is (`text[start:end]`) and its folded form."""

    start: int
    end: int
    key: str


@dataclass(frozen=True, slots=True)
class Passage:
    """A run of words both texts share: word spans and character spans in each text."""

    a_words: tuple[int, int]
    b_words: tuple[int, int]
    a_chars: tuple[int, int]
    b_chars: tuple[int, int]

    @property
    def words(self) -> int:
        return self.a_words[1] - self.a_words[0]


@dataclass(frozen=True, slots=True)
class SharedPassages:
    """The passages of texts A and B, in A's order, and how much of each they cover."""

    passages: tuple[Passage, ...]
    a_words: int
    b_words: int

    def coverage(self, side: str) -> float:
        """Share of A's (`"a"`) or B's (`"b"`) words inside a passage, 0 to 1."""
        total = self.a_words if side == "a" else self.b_words
        return sum(p.words for p in self.passages) / total if total else 0.0

    def summary(self) -> str:
        return (
            f"shared passages: {len(self.passages)}, covering {self.coverage('a'):.0%} of A "
            f"and {self.coverage('b'):.0%} of B (by words)"
        )


def _is_break(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in _BREAKS or category == "Cc"


def words(text: str) -> list[Word]:
    """The words of `text`, with their character spans and folded forms; a run that folds
    to nothing (only tatweel or diacritics) is not a word."""
    out: list[Word] = []
    start: int | None = None

    def add(begin: int | None, end: int) -> None:
        if begin is not None:
            key = "".join(fold(text[begin:end]).split())
            if key:
                out.append(Word(begin, end, key))

    for i, ch in enumerate(f"{text} "):
        if _is_break(ch):
            add(start, i)
            start = None
        elif UNSPACED_CHARACTER.match(ch):
            add(start, i)
            add(i, i + 1)  # a word of its own
            start = None
        elif start is None:
            start = i
    return out


def shared_passages(a: str, b: str, *, min_words: int = 3) -> SharedPassages:
    """The maximal runs of at least `min_words` words that texts `a` and `b` share."""
    if min_words < 1:
        raise ValueError("min_words must be at least 1")
    wa, wb = words(a), words(b)
    ka, kb = [w.key for w in wa], [w.key for w in wb]
    places: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for j in range(len(kb) - min_words + 1):
        found = places[tuple(kb[j : j + min_words])]
        if len(found) < _MAX_PLACES:
            found.append(j)
    # Every maximal common run: it starts where the words before it differ.
    heap: list[tuple[int, int, int]] = []  # (-length, i, j)
    for i in range(len(ka) - min_words + 1):
        for j in places.get(tuple(ka[i : i + min_words]), ()):
            if (
                i
                and j
                and ka[i - 1] == kb[j - 1]
                and j - 1 in places[tuple(ka[i - 1 : i - 1 + min_words])]
            ):
                continue  # inside a run found from its start
            n = min_words
            while i + n < len(ka) and j + n < len(kb) and ka[i + n] == kb[j + n]:
                n += 1
            heap.append((-n, i, j))
    heapq.heapify(heap)
    used_a, used_b = [False] * len(ka), [False] * len(kb)
    chosen: list[tuple[int, int, int]] = []
    while heap:
        negative, i, j = heapq.heappop(heap)
        n = -negative
        free = [not used_a[i + k] and not used_b[j + k] for k in range(n)]
        if all(free):
            chosen.append((i, j, n))
            for k in range(n):
                used_a[i + k] = used_b[j + k] = True
            continue
        # Partly taken by a longer run: what is left of it, in pieces, goes back in line.
        k = 0
        while k < n:
            if not free[k]:
                k += 1
                continue
            start = k
            while k < n and free[k]:
                k += 1
            if k - start >= min_words:
                heapq.heappush(heap, (start - k, i + start, j + start))
    chosen.sort()
    passages = tuple(
        Passage(
            a_words=(i, i + n),
            b_words=(j, j + n),
            a_chars=(wa[i].start, wa[i + n - 1].end),
            b_chars=(wb[j].start, wb[j + n - 1].end),
        )
        for i, j, n in chosen
    )
    return SharedPassages(passages, len(wa), len(wb))
