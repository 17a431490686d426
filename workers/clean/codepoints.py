"""Text as an array of code points, for per-character work in numpy.

`str.translate` with a Python mapping, `set(text)` and regular expressions over a whole
text cost an interpreter step per character; the folding and tidying here cost one numpy
pass. A text goes in as its UTF-32 code points (`codes`) and comes out with `text_of`;
lone surrogates (JSON can carry "\\ud800") pass through unchanged.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Literal

import numpy as np

SPACE, NEWLINE = 0x20, 0x0A
UNICODE_SIZE = 0x110000
# Texts shorter than this are faster with `str.translate` (a dictionary lookup per
# character) than with the fixed cost of a few numpy calls (measured: about 20 us).
NUMPY_FROM_CHARS = 300


def normalized(form: Literal["NFC", "NFKC"], text: str) -> str:
    """`unicodedata.normalize(form, text)`. Checked first: most news text already is in
    the form, and the check (a few microseconds) is several times cheaper than
    normalizing, which Arabic text with marks always pays in full."""
    return text if unicodedata.is_normalized(form, text) else unicodedata.normalize(form, text)


def codes(text: str) -> np.ndarray:
    """The code points of `text` (uint32)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def text_of(points: np.ndarray) -> str:
    """The text of code points (the inverse of `codes`)."""
    return str(points.astype(np.uint32, copy=False).tobytes().decode("utf-32-le", "surrogatepass"))


def tidy_spaces(points: np.ndarray) -> np.ndarray:
    """Code points with every line's spaces tidied: runs of spaces made one, spaces at the
    start or end of a line dropped. Lines are split on "\\n" only; " " must be the only
    other whitespace left (the callers' tables map every other space to it)."""
    space = points == SPACE
    if not space.any():
        return points
    # One space per run (its first), then none next to a line break or the text's edges.
    repeated = np.zeros(len(points), dtype=bool)
    np.logical_and(space[1:], space[:-1], out=repeated[1:])
    if repeated.any():
        points = points[~repeated]
        space = points == SPACE
    newline = points == NEWLINE
    at_edge = np.ones(len(points), dtype=bool)
    at_edge[1:-1] = newline[2:] | newline[:-2]
    tidied: np.ndarray = points[~(space & at_edge)]
    return tidied


class LazyTable:
    """A lookup table over all of Unicode whose entries are computed the first time a code
    point is seen (`classify`): news text uses a few hundred distinct characters, and
    classifying all 1.1M code points up front would cost about a second per process."""

    UNSEEN = np.iinfo(np.int32).min

    def __init__(self, classify: Callable[[int], int], fixed: dict[int, int] | None = None) -> None:
        self._classify = classify
        self.values = np.full(UNICODE_SIZE, self.UNSEEN, dtype=np.int32)
        for point, value in (fixed or {}).items():
            self.values[point] = value

    def __getitem__(self, points: np.ndarray) -> np.ndarray:
        found = self.values.take(points)
        if len(found) and found.min() == self.UNSEEN:
            for point in np.unique(points[found == self.UNSEEN]).tolist():
                self.values[point] = self._classify(point)
            found = self.values.take(points)
        values: np.ndarray = found
        return values
