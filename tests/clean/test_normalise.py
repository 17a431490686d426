from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from support.edit_copies import misdecoded

from workers.clean.normalise import join_lines, normalise_for_publishing, split_lines

pytestmark = pytest.mark.unit

SEEDS = sorted((ROOT / "seeds").glob("*.txt"))


def test_whitespace_and_blank_lines() -> None:
    raw = "\r\n\n  Title\u00a0\u00a0here\t \r\n\r\n\r\n\r\npara  one\u2003line\rsecond\n\n\n"
    assert normalise_for_publishing(raw) == "Title here\n\npara one line\nsecond"


def test_controls_and_invisibles_removed_but_zwnj_zwj_kept() -> None:
    raw = "\ufeffمی\u200cخواهم\x07 و\u200dلا\u200b\x00 نص\x1b"
    assert normalise_for_publishing(raw) == "می\u200cخواهم و\u200dلا نص"


def test_nfc() -> None:
    # "e" + combining acute and alef + combining hamza above compose under NFC.
    assert normalise_for_publishing("cafe\u0301 \u0627\u0654") == "café \u0623"


def test_line_and_paragraph_separators() -> None:
    assert normalise_for_publishing("a\u2028b\u2029c\x0cd") == "a\nb\n\nc\nd"


def test_empty() -> None:
    assert normalise_for_publishing(" \n\t\n\u00a0") == ""


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_idempotent_on_seeds(path: Path) -> None:
    once = normalise_for_publishing(path.read_text(encoding="utf-8"))
    assert once
    assert normalise_for_publishing(once) == once
    assert "\n\n\n" not in once
    assert "  " not in once
    assert all(line == line.strip() for line in once.split("\n"))


def test_seed_nbsp_heading_is_cleaned() -> None:
    text = normalise_for_publishing((ROOT / "seeds" / "001_1e07eac281391908.txt").read_text())
    assert "\n\nآخر الهجمات\n\n" in text
    assert "\u00a0" not in text


def test_idempotent_on_messy_text() -> None:
    raw = "\u3000x\u202f\u202fy\n\n\u2029\n z \r\r\r\u0085w\u200b\u200b"
    once = normalise_for_publishing(raw)
    assert normalise_for_publishing(once) == once == "x y\n\nz\n\nw"


def test_split_join_round_trip_and_collapse() -> None:
    text = "a\n\nb\nc\n\nd"
    lines = split_lines(text)
    assert lines == ["a", "", "b", "c", "", "d"]
    assert join_lines(lines) == text
    # Removing "b" and "c" must not leave a double blank line behind.
    assert join_lines(["a", "", "", "", "d"]) == "a\n\nd"
    assert join_lines(["", "x", " ", ""]) == "x"
    assert split_lines("") == []


@pytest.mark.parametrize(
    "text",
    [
        "أعلنت الحكومة السعودية عن إجراءات جديدة لدعم الاقتصاد في المملكة.",
        "Le président a annoncé une réforme des retraites, « brutale » selon la CFDT.",
        "Die Straße bleibt bis Freitag gesperrt, sagte der Bürgermeister.",
        "L’économie européenne a progressé de 0,3 % — selon Eurostat, 3 € par habitant.",
    ],
)
def test_utf8_read_as_windows_1252_is_read_back(text: str) -> None:
    mojibake = misdecoded(text)
    assert mojibake != text
    assert normalise_for_publishing(mojibake) == text


@pytest.mark.parametrize(
    "text",
    [
        "São Paulo, Ørsted et Ålesund: façade, naïve, coöperate, Åsa, Ü-Bahn.",
        "„Straße“ und »Öl« — Müller’s Café, 20 °C, ½ Stunde, © 2026.",
        "Ñandú, pingüino, acción; Ça va? Â la Pâque, ô combien.",
        "Ελλάδα, Россия, עברית, العربية, 中文: no Latin-1 at all.",
    ],
)
def test_text_with_latin1_letters_is_left_as_it_is(text: str) -> None:
    assert normalise_for_publishing(text) == text
