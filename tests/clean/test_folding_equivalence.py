"""The vectorised folding against the character-by-character reference it replaced.

`normalise_for_matching`, `fold_lines` and `normalise_for_publishing` must give exactly
what the plain `str.translate` definitions below give, on random text drawn from the
characters that make trouble (every class the tables treat differently) and on real
articles.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata

import pytest
from conftest import shared_path

from workers.clean.matching import fold_lines, matching_tokens, normalise_for_matching
from workers.clean.normalise import join_lines, normalise_for_publishing, repair_mojibake

pytestmark = pytest.mark.unit


class _ReferenceMatchTable(dict[int, int | str | None]):
    def __missing__(self, key: int) -> int | str | None:
        category = unicodedata.category(chr(key))
        value: int | str | None
        if category[0] in "PSZ" or category == "Cc":
            value = " "
        elif category == "Cf":
            value = None
        else:
            value = key
        self[key] = value
        return value


def _unaccented(point: int) -> str | None:
    decomposed = unicodedata.normalize("NFD", chr(point))
    base = "".join(part for part in decomposed if unicodedata.category(part) != "Mn")
    return base if len(base) == 1 and base != chr(point) else None


_MATCH = _ReferenceMatchTable(
    {
        **{
            point: base
            for point in (*range(0xC0, 0x250), *range(0x370, 0x530), *range(0x1E00, 0x2000))
            if (base := _unaccented(point)) is not None
        },
        **{ord(letter): base for letter, base in zip("đĐłŁøØħĦŧŦı", "ddlloohhtti", strict=True)},
        **dict.fromkeys(map(ord, "أإآٱٲٳ"), "ا"),
        **{ord("ى"): "ي", ord("ئ"): "ي", ord("ی"): "ي", ord("ة"): "ه", ord("ۀ"): "ه"},
        **{ord("ؤ"): "و", ord("ک"): "ك"},
        **{0x0660 + d: str(d) for d in range(10)},
        **{0x06F0 + d: str(d) for d in range(10)},
        **dict.fromkeys(
            (
                *range(0x064B, 0x0660),
                0x0670,
                *range(0x0610, 0x061B),
                *range(0x06D6, 0x06EE),
                0x0640,
            ),
            None,
        ),
    }
)


def reference_matching(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).translate(_MATCH).casefold()
    return " ".join(folded.split())


_PUBLISH: dict[int, str | None] = {
    cp: None for cp in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0xFEFF, 0x200B, 0x2060)
}
_PUBLISH.update(
    {cp: " " for cp in (0x09, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000)}
)
_PUBLISH.update({0x0B: "\n", 0x0C: "\n", 0x0D: "\n", 0x85: "\n", 0x2028: "\n", 0x2029: "\n\n"})
del _PUBLISH[0x0A]


def reference_publishing(text: str) -> str:
    # The tables are what is compared; the mojibake repair before them is ftfy's.
    text = (
        unicodedata.normalize("NFC", repair_mojibake(text))
        .replace("\r\n", "\n")
        .translate(_PUBLISH)
    )
    return join_lines([re.sub(" {2,}", " ", line).strip(" ") for line in text.split("\n")])


# Every class of character the tables tell apart, and the ones NFC/NFKC/casefold change.
_POOL = (
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"  # Arabic letters
    "أإآٱٲٳىئیةۀؤکء"  # folded variants
    "\u064b\u064c\u064e\u0650\u0651\u0652\u0670\u0640\u0610\u06d6"  # marks, tatweel
    "٠١٢٣٤٥٦٧٨٩۰۱۲۳0123456789"  # digits
    "abcXYZßİﬁÅé\u0301\u0308ΣσςД"  # Latin, Greek, Cyrillic, combining, casefold cases
    "\ufefb\ufe8d\ufdf2\u2460\u00bd\uff21"  # presentation forms, compatibility characters
    "«»\"'.,،؛؟!?-–—()[]%$+#@/\\|"  # punctuation and symbols
    " \t\n\r\x0b\x0c\x85\u2028\u2029\xa0\u2003\u202f\u3000"  # spaces and breaks
    "\x00\x01\x1b\x7f\x9f\ufeff\u200b\u2060\u200c\u200d\u200f\u202e\xad"  # controls, formats
    "😀🇸🇦\U000e0041\ufe0f\u115f\u3164"  # emoji, tags, selectors, fillers
    "\ud800\udfff"  # lone surrogates (JSON can carry them)
)


def _random_texts(count: int) -> list[str]:
    rng = random.Random(20261205)
    return [
        "".join(rng.choices(_POOL, k=rng.choice((rng.randint(0, 80), rng.randint(250, 900)))))
        for _ in range(count)
    ]


def test_matching_equals_the_reference_on_random_text() -> None:
    for text in _random_texts(5000):
        expected = reference_matching(text)
        assert normalise_for_matching(text) == expected, repr(text)
        assert matching_tokens(text) == expected.split(), repr(text)
        lines = text.split("\n") if text else []
        assert fold_lines(text) == [reference_matching(line) for line in lines]


def test_publishing_equals_the_reference_on_random_text() -> None:
    for text in _random_texts(5000):
        assert normalise_for_publishing(text) == reference_publishing(text), repr(text)


def test_both_equal_the_reference_on_real_articles() -> None:
    path = shared_path("corpus", "ant_multisource_v2.1.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number >= 300:
                break
            text = str(json.loads(line).get("text") or "")
            published = normalise_for_publishing(text)
            assert published == reference_publishing(text)
            assert fold_lines(published) == [
                reference_matching(part) for part in published.split("\n")
            ]
