"""Shared passages: runs of common words, found however the texts spell or order them,
mapped back to character spans of the texts as given."""

from __future__ import annotations

import pytest

from workers.explain.passages import shared_passages, words

pytestmark = pytest.mark.unit


def _shown(text: str, span: tuple[int, int]) -> str:
    return text[span[0] : span[1]]


def test_arabic_spelling_differences_do_not_break_a_passage() -> None:
    # Diacritics, hamza seats, teh marbuta, Arabic-Indic digits and tatweel differ.
    a = "قال الوزير إنّ الاجتماعَ المقبل سيُعقد في القاهرة يوم ٢٥ مارس. ثم غادر."
    b = "وأكد أن الاجتماع المقبـــل سيعقد في القاهره يوم 25 مارس، دون تفاصيل"
    shared = shared_passages(a, b)
    assert len(shared.passages) == 1
    (p,) = shared.passages
    assert _shown(a, p.a_chars) == "إنّ الاجتماعَ المقبل سيُعقد في القاهرة يوم ٢٥ مارس"
    assert _shown(b, p.b_chars) == "أن الاجتماع المقبـــل سيعقد في القاهره يوم 25 مارس"
    assert p.words == 9 and p.a_words == (2, 11) and p.b_words == (1, 10)


def test_spans_are_code_point_offsets_of_the_text_as_given() -> None:
    # Characters before the passage that are not one UTF-16 unit or one byte each.
    a = "🇱🇾 👍🏽 e\u0301té — نص مشترك بين المقالين هنا"
    b = "نص مشترك بين المقالين"
    (p,) = shared_passages(a, b).passages
    assert _shown(a, p.a_chars) == "نص مشترك بين المقالين" == _shown(b, p.b_chars)
    assert p.a_chars[0] == a.index("نص")
    assert [(w.start, w.end) for w in words("é-x")] == [(0, 1), (2, 3)]


def test_english_case_and_punctuation_do_not_count() -> None:
    a = "The Central Bank raised rates today. Markets fell sharply in early trading."
    b = "Earlier, the central bank raised RATES today; markets fell sharply in Asia."
    shared = shared_passages(a, b)
    assert [_shown(a, p.a_chars) for p in shared.passages] == [
        "The Central Bank raised rates today. Markets fell sharply in"
    ]
    assert [_shown(b, p.b_chars) for p in shared.passages] == [
        "the central bank raised RATES today; markets fell sharply in"
    ]


def test_moved_paragraphs_are_found_and_coverage_counts_words() -> None:
    one = "the minister opened the new hospital in the east"
    two = "rains flooded three villages near the river overnight"
    a = f"{one}\n\n{two}"
    b = f"{two}\n\nother news of the day\n\n{one}"
    shared = shared_passages(a, b)
    assert [(_shown(a, p.a_chars), _shown(b, p.b_chars)) for p in shared.passages] == [
        (one, one),
        (two, two),
    ]
    assert shared.coverage("a") == 1.0
    assert shared.coverage("b") == pytest.approx(17 / 22)
    assert shared.summary() == ("shared passages: 2, covering 100% of A and 77% of B (by words)")


def test_a_word_is_in_one_passage_only_and_short_runs_are_not_passages() -> None:
    sentence = "prices rose again this week"
    a = f"{sentence}. {sentence}."
    b = f"{sentence} and nothing else"
    shared = shared_passages(a, b)
    assert len(shared.passages) == 1  # b has it once: matched once
    assert shared_passages("one two x", "one two y").passages == ()  # two words: too short
    assert len(shared_passages("one two x", "one two y", min_words=2).passages) == 1


def test_a_longer_run_wins_over_overlapping_shorter_ones() -> None:
    a = "a b c d e f g"
    b = "x c d e y a b c d e f g"
    (p,) = shared_passages(a, b).passages
    assert p.a_words == (0, 7) and p.b_words == (5, 12)


def test_empty_and_unrelated_texts() -> None:
    assert shared_passages("", "").passages == ()
    assert shared_passages("", "").coverage("a") == 0.0
    assert shared_passages("مرحبا بكم في ليبيا", "hello and welcome here").passages == ()
    with pytest.raises(ValueError):
        shared_passages("a", "b", min_words=0)


def test_chinese_passages_are_runs_of_characters() -> None:
    # No spaces: a character is a word, as it is a token of the fingerprint, so a clause
    # that differs by one word still shares the characters around it.
    a = "国家统计局周二发布数据显示，工业增加值同比增长。"
    b = "国家统计局星期二发布数据显示，工业增加值增长较快。"
    assert [w.key for w in words("统计局，11月份")] == ["统", "计", "局", "11", "月", "份"]
    shared = shared_passages(a, b)
    shown = [_shown(a, p.a_chars) for p in shared.passages]
    assert shown == ["国家统计局", "二发布数据显示，工业增加值"]
