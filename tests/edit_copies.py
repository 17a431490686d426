"""Deterministic light edits of an article, to make near-duplicates with known originals.

Each copy gets two or three of: words dropped, a sentence added, diacritics added or
removed, a footer appended. These are the edits wire copy goes through when outlets
reprint it.
"""

from __future__ import annotations

import random

TASHKEEL = "\u064e\u064f\u0650\u0651\u0652\u064b\u064c\u064d"
ADDED_SENTENCES = (
    "وأكد مصدر مطلع أن الجهات المعنية تتابع تطورات الموضوع عن كثب.",
    "ومن المتوقع أن تصدر تفاصيل إضافية خلال الأيام المقبلة.",
    "وأشار المتحدث إلى أن هذه الخطوة تأتي في إطار خطة شاملة.",
)
FOOTERS = (
    "للمزيد من الأخبار تابعونا على تويتر",
    "جميع الحقوق محفوظة للصحيفة",
    "اقرأ أيضاً: أخبار ذات صلة",
)


def drop_words(text: str, rng: random.Random, share: float = 0.04) -> str:
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        kept = [w for w in words if rng.random() >= share] if len(words) > 5 else words
        lines.append(" ".join(kept))
    return "\n".join(lines)


def add_sentence(text: str, rng: random.Random) -> str:
    paragraphs = text.split("\n")
    at = rng.randrange(len(paragraphs) + 1)
    paragraphs.insert(at, rng.choice(ADDED_SENTENCES))
    return "\n".join(paragraphs)


def toggle_diacritics(text: str, rng: random.Random) -> str:
    stripped = "".join(ch for ch in text if ch not in TASHKEEL)
    if stripped != text:
        return stripped
    out = []
    for ch in text:
        out.append(ch)
        if "\u0621" <= ch <= "\u064a" and rng.random() < 0.3:
            out.append(rng.choice(TASHKEEL))
    return "".join(out)


def append_footer(text: str, rng: random.Random) -> str:
    return text + "\n" + rng.choice(FOOTERS)


EDITS = (drop_words, add_sentence, toggle_diacritics, append_footer)


def lightly_edit(text: str, seed: int) -> str:
    rng = random.Random(seed)
    for edit in rng.sample(EDITS, rng.choice((2, 3))):
        text = edit(text, rng)
    return text
