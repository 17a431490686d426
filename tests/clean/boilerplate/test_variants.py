"""Near variants of learned lines: the tolerances (`variants.py`) and the date and time
folding of line keys (`lines.line_key`)."""

from __future__ import annotations

import pytest

from workers.clean.boilerplate.lines import line_hash, line_key
from workers.clean.boilerplate.variants import LearnedKeys

pytestmark = pytest.mark.unit

DISCLAIMER = "جميع المقالات المنشورة تمثل رأي كتابها فقط ولا تعبر عن رأي الصحيفة"
APP = "حمّل تطبيق الصحيفة على هاتفك"


def learned(*lines: str) -> LearnedKeys:
    return LearnedKeys.of(line_key(line) for line in lines)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("آخر تحديث: 10:35", "آخر تحديث: 11:02"),
        ("آخر تحديث: 10:35 صباحاً", "آخر تحديث: 9:02 مساءً"),
        ("نشر في: الخميس 10 مارس 2017 - 11:02", "نشر في: السبت ٢ أبريل ٢٠١٨ - ٠٩:١٥"),
        ("Updated: Thursday, 10 March 2017 11:02 GMT", "Updated: Sat 2 Apr 2018 09:15 GMT"),
        ("الرياض 25 شوال 1436 هـ", "الرياض 3 ذو القعدة 1436 هـ"),
        ("أرسل رسالة تبدأ بالرمز (34)", "أرسل رسالة تبدأ بالرمز (262)"),
    ],
)
def test_dates_and_times_fold_to_one_key(one: str, other: str) -> None:
    assert line_hash(one) == line_hash(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # A month or weekday name that is no date stays a word.
        ("صفر على الشمال", "واحد على الشمال"),
        ("تقرير الجمعة", "تقرير السبت"),
        ("May the best team win", "Let the best team win"),
    ],
)
def test_words_that_are_no_date_stay(one: str, other: str) -> None:
    assert line_hash(one) != line_hash(other)


@pytest.mark.parametrize(
    "variant",
    [
        "حمل تطبيق الصحيفه علي هاتفكم",  # a letter more
        "جميع المقالات المنشورة تمثل رأي أصحابها فقط ولا تعبر عن رأي الصحيفة",  # a word
        "جميع المقالات المنشورة تمثل رأي كتابها ولا تعبر بالضرورة عن رأي الصحيفة",  # two
    ],
)
def test_near_variants_of_learned_lines(variant: str) -> None:
    assert learned(DISCLAIMER, APP).near(line_key(variant))


@pytest.mark.parametrize(
    "line",
    [
        # Short lines have no variants: one letter makes another name or place.
        "الرياضي",
        "سارة الأحمد",
        # Beyond the tolerance: another promotion, another sentence.
        "حمّل تطبيق المجلة على هاتفك",
        "جميع المقالات المنشورة في الملحق الثقافي تمثل آراء الأدباء المشاركين فيه",
        # A paragraph: matched exactly or not at all.
        DISCLAIMER + " " + " ".join(["وقال الوزير إن الخطة تشمل جميع المناطق"] * 6),
    ],
)
def test_no_variant(line: str) -> None:
    assert not learned(DISCLAIMER, APP, "الرياض", "سارة أحمد").near(line_key(line))


def test_nothing_learned_matches_nothing() -> None:
    assert not LearnedKeys().near(line_key(APP))


def test_a_learned_line_is_no_variant_of_itself() -> None:
    # Learned or not, a line is the counts' call: the learned keys may be stale.
    assert not learned(APP).near(line_key(APP))
