"""Deterministic light edits of an article, to make near-duplicates with known originals.

Each copy gets two or three of: words dropped, a sentence added, diacritics added or
removed, a footer appended. These are the edits wire copy goes through when outlets
reprint it.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workers.document import Document
from workers.pipeline.process import Cleaned, clean_document

if TYPE_CHECKING:
    from workers.worker.runtime import Runtime

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


Edit = Callable[[str, random.Random], str]
EDITS: tuple[Edit, ...] = (drop_words, add_sentence, toggle_diacritics, append_footer)
# Edits that bring no new words: on synthetic articles whose only rare facts are a few
# numbers, an added sentence's words are new facts on one side, which the index may read
# as "same template, other facts" depending on arrival order.
WORDLESS_EDITS: tuple[Edit, ...] = (drop_words, toggle_diacritics)


def lightly_edit(text: str, seed: int, edits: Sequence[Edit] = EDITS) -> str:
    rng = random.Random(seed)
    for edit in rng.sample(list(edits), min(len(edits), rng.choice((2, 3)))):
        text = edit(text, rng)
    return text


def mutual_copies(
    rt: Runtime,
    original: str,
    count: int,
    min_jaccard: float = 0.6,
    edits: Sequence[Edit] = EDITS,
) -> list[str]:
    """`count` lightly edited copies (the first unedited) that are all near-duplicates of
    each other on the tokens the pipeline fingerprints, so whichever copy is indexed first,
    every other copy is its duplicate: only a race can make two of them originals."""

    def signature(text: str) -> bytes:
        cleaned = clean_document(Document(id="x", source="x", text=text, input_ref="x"), rt.rules)
        assert isinstance(cleaned, Cleaned)
        return rt.fingerprinter.fingerprint(cleaned.tokens).signature

    def similar(a: bytes, b: bytes) -> bool:
        equal = sum(a[k : k + 2] == b[k : k + 2] for k in range(0, len(a), 2))
        return equal / rt.fingerprinter.params.num_perm >= min_jaccard

    copies, signatures, seed = [original], [signature(original)], 0
    while len(copies) < count:
        seed += 1
        candidate = lightly_edit(original, seed, edits)
        candidate_signature = signature(candidate)
        if all(similar(candidate_signature, other) for other in signatures):
            copies.append(candidate)
            signatures.append(candidate_signature)
    return copies


def make_corpus(folder: Path) -> Path:
    """Seeds, an exact copy of each in another folder, and a lightly edited copy of each."""
    for sub in ("a", "b", "c"):
        (folder / sub).mkdir(parents=True)
    from conftest import SEEDS  # the repository's seeds/

    for n, path in enumerate(sorted(SEEDS.glob("*.txt"))):
        shutil.copy(path, folder / "a" / path.name)
        shutil.copy(path, folder / "b" / path.name)
        title, _, body = path.read_text("utf-8").partition("\n")
        (folder / "c" / path.name).write_text(title + "\n" + lightly_edit(body, n), "utf-8")
    return folder


def misdecoded(text: str) -> str:
    """`text` as an exporter that read its UTF-8 as windows-1252 hands it over
    ("Ø§Ù„Ø­ÙƒÙˆÙ…Ø©" for "الحكومة"): the five bytes windows-1252 leaves undefined become the
    C1 controls, as MySQL's "latin1" does."""
    return "".join(
        bytes([byte]).decode("cp1252", errors="ignore") or chr(byte) for byte in text.encode()
    )
