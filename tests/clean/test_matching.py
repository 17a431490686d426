from __future__ import annotations

import pytest
from conftest import ROOT

from workers.clean.matching import matching_tokens, normalise_for_matching

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("left", "right"),
    [
        # diacritics (tashkeel, shadda, superscript alef) and tatweel
        ("هزائم داعش لا تُعدّ ولا تُحصى", "هزائم داعش لا تعد ولا تحصى"),
        ("ذٰلِكَ الكِتَابُ", "ذلك الكتاب"),
        ("الجيـــش الوطنـي", "الجيش الوطني"),
        # alef maqsura / yeh, teh marbuta / heh
        ("مستشفى المدينة", "مستشفي المدينه"),
        # hamza-carrying alefs and seats
        ("أحمد إبراهيم آمن ٱلله", "احمد ابراهيم امن الله"),
        ("مسؤول شؤون رئيس", "مسوول شوون رييس"),
        # Arabic-Indic and Persian digits
        ("قتل ٣٠ شخصا في ١٢ هجوما عام ۲۰۲۴", "قتل 30 شخصا في 12 هجوما عام 2024"),
        # punctuation, Arabic and typographic quotes
        ("بـ«داعش الإسكندرية»، حجم؟ نعم؛ لا!", 'بـ"داعش الاسكندرية" حجم نعم لا'),
        ('بـ"داعش الإسكندرية", حجم', "بـ”داعش الإسكندرية”, حجم"),
        # Persian letters, presentation forms (NFKC), case, whitespace and newlines
        ("کتاب یک", "كتاب يك"),
        ("\ufefb \ufe8d\ufedf\ufee0\ufeea", "لا الله"),
        ("Reuters  SAID\n\nToday", "reuters said today"),
    ],
)
def test_equivalences(left: str, right: str) -> None:
    assert normalise_for_matching(left) == normalise_for_matching(right)


def test_exact_output() -> None:
    text = "«أَخْبَارٌ» لِيبِيَا ٢٤، المُدَرَّسَةُ على مستوى — Hello\tWORLD؟"
    assert normalise_for_matching(text) == "اخبار ليبيا 24 المدرسه علي مستوي hello world"


def test_symbols_and_zero_width() -> None:
    assert normalise_for_matching("50% $100 +5 a\u200cb x\u200fy") == "50 100 5 ab xy"


def test_letters_of_other_scripts_are_kept() -> None:
    assert normalise_for_matching("Ville à Paris — हिन्दी 정부는") == "ville a paris हिन्दी 정부는"


@pytest.mark.parametrize(
    ("accented", "plain"),
    [
        ("Le président de la République a annoncé", "Le president de la Republique a annonce"),
        ("Ещё всё её", "Еще все ее"),
        ("Η ΚΥΒΕΡΝΗΣΗ ανακοίνωσε", "η κυβερνηση ανακοινωσε"),
        ("İstanbul'da Ağustos", "istanbul da agustos"),
        ("Hà Nội là thủ đô của Việt Nam", "Ha Noi la thu do cua Viet Nam"),
    ],
)
def test_accents_of_latin_greek_and_cyrillic_letters_are_folded(accented: str, plain: str) -> None:
    # Copies differ by feeds that strip accents, capitals written without them, ё as е.
    assert normalise_for_matching(accented) == normalise_for_matching(plain)


def test_stroked_letters_fold_as_copies_without_accents_write_them() -> None:
    assert normalise_for_matching("Straße Łódź Øresund Đà Nẵng æble") == (
        "strasse lodz oresund da nang æble"
    )


def test_seed_variants_match() -> None:
    # Seed 000 opens a paragraph twice with different quote marks ("..." vs ”...”); the
    # second copy runs on longer.
    lines = (ROOT / "seeds" / "000_b1ab6303fef3538a.txt").read_text(encoding="utf-8").split("\n")
    first, second = matching_tokens(lines[2]), matching_tokens(lines[13])
    assert lines[2] != lines[13][: len(lines[2])]
    assert len(first) > 15
    assert second[: len(first)] == first


def test_tokens() -> None:
    assert matching_tokens("  ،أخبار   ليبيا24 \n ") == ["اخبار", "ليبيا24"]
    assert matching_tokens("...!!") == []


def test_a_character_of_a_script_without_spaces_is_a_token() -> None:
    # Chinese and Japanese clauses are not split into whole-clause tokens: one edited
    # character must change only the shingles around it.
    assert matching_tokens("统计局：11月份GDP增长5.4%。") == [
        *"统计局",
        "11",
        *"月份",
        "gdp",
        *"增长",
        "5",
        "4",
    ]
    assert matching_tokens("トランプ氏は東京で") == list("トランプ氏は東京で")
    # Halfwidth katakana fold to the full forms first; compatibility ideographs to theirs.
    assert matching_tokens("ｶﾀｶﾅ") == list("カタカナ")
    # Scripts written with spaces, and alphabets written without (Thai), keep their words.
    assert matching_tokens("한국 서울에서 hello") == ["한국", "서울에서", "hello"]
    assert matching_tokens("ภาษาไทย ข่าว") == ["ภาษาไทย", "ข่าว"]
