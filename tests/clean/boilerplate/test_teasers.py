"""Links recognised by shape: link prompts with their headlines, and teaser boxes at the
bottom whose words the article does not use; and what neither may ever take."""

from __future__ import annotations

import random

import pytest

from workers.clean.boilerplate.rules import LINK_PROMPT_RULE, TEASER_RULE, RuleSet
from workers.clean.boilerplate.strip import strip_boilerplate
from workers.clean.boilerplate.teasers import (
    cohesion,
    is_headline_text,
    is_prompt_line,
    is_verse,
    prompt_headline,
    stems,
)
from workers.clean.normalise import split_lines

pytestmark = pytest.mark.unit

LEAD = (
    "ارتفعت أسعار القمح في الأسواق العالمية بنسبة عشرة بالمئة خلال الأسبوع الماضي، بعد "
    "تراجع توقعات المحاصيل في عدد من الدول المصدرة."
)
BODY = [
    LEAD,
    "ويقول متعاملون في أسواق السلع إن موجات الجفاف التي ضربت مناطق الزراعة رفعت المخاوف "
    "من نقص الإمدادات خلال الأشهر المقبلة.",
    "وتستورد دول المنطقة كميات كبيرة من القمح سنويا، ما يجعلها عرضة لتقلبات الأسعار في "
    "الأسواق العالمية وتكاليف الشحن.",
    "ويتوقع محللون أن تبقى الأسعار مرتفعة حتى موسم الحصاد المقبل، ما لم تتحسن الأحوال "
    "الجوية في الدول المنتجة.",
]
TEASERS = [
    "نجم كرة سلة أمريكي يعلن اعتزاله بعد عشرين موسما",
    "مهرجان سينمائي يكرم مخرجة شابة عن فيلمها الوثائقي الأول",
    "علماء يرصدون مذنبا نادرا يقترب من كوكب الأرض",
]


def removed(lines: list[str], rules: RuleSet) -> dict[str, str]:
    result = strip_boilerplate("\n\n".join(lines), title="", source="", rules=rules)
    return {s.text: s.rule for s in result.stripped}


# ---------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(
    "line",
    [
        "اقرأ أيضا: الجيش يعلن السيطرة على المدينة",
        "إقرأ أيضا هل عجلت رحلة شامبليون إلى مصر بوفاته؟",
        "اقرأ..\u00a0لجنة بريطانية: كاميرون ضخّم الأوضاع بليبيا",
        "اقرأ أيضا| أول تعليق من الوزير بشأن الأزمة",
        "شاهد.. ما هو الطرح الأولي للعملات الرقمية؟",
        "شاهد أيضا: سلطات الهجرة تعتقل أما أمام بناتها",
        "للمزيد - بوتين يمتحن شعبيته في انتخابات رئاسية",
        "بالفيديو: أطفال ضحايا للصراع يروون قصصهم",
        "Read more: Talks resume in Geneva",
        "WATCH: Rescue teams reach the village",
    ],
)
def test_prompt_with_headline(line: str, rules: RuleSet) -> None:
    assert prompt_headline(line)
    assert removed([*BODY, line], rules).get(line) is not None


@pytest.mark.parametrize(
    "line",
    [
        # The verb, not a prompt: no separator after it.
        "شاهد عشرات الأطفال موكبا عسكريا في قرية بولاية قندهار",
        "تابع وزير الصحة الحادث ووجه بسرعة تقديم الخدمات",
        "فيديو يظهر الشرطة تطلق النار على رجل",
        # A witness quoted with a sentence: not a headline after the colon.
        "شاهد: وصلنا إلى المكان، وكان الدخان يملأ الشارع.",
        # A prompt introducing the article's own list.
        "للمزيد من المعلومات:",
    ],
)
def test_not_a_prompt_with_headline(line: str) -> None:
    assert not prompt_headline(line)


def test_prompt_line_takes_the_headlines_under_it(rules: RuleSet) -> None:
    lines = [BODY[0], "اقرأ أيضاً:", *TEASERS[:2], BODY[1], BODY[2]]
    gone = removed(lines, rules)
    assert set(gone) == {"اقرأ أيضاً:", *TEASERS[:2]}
    assert all(gone[t] == LINK_PROMPT_RULE for t in TEASERS[:2])


def test_prompt_line_stops_at_the_first_sentence(rules: RuleSet) -> None:
    # "More:" over the article's own closing sentence and list: nothing under it goes.
    intro = "ولم تخل الدراما المصرية من مشاركته في أعمال مهمة منها:"
    lines = [*BODY, "اقرأ أيضاً:", intro, "ليلة القدر وسنة أولى حب"]
    gone = removed(lines, rules)
    assert intro not in gone and "ليلة القدر وسنة أولى حب" not in gone
    assert is_prompt_line("اقرأ أيضاً:") and not is_prompt_line(intro)


# ---------------------------------------------------------------------------- teaser boxes


def test_box_of_unrelated_headlines_at_the_bottom(rules: RuleSet) -> None:
    gone = removed([*BODY, *TEASERS], rules)
    assert gone == {t: TEASER_RULE for t in TEASERS}


def test_facts_that_cohere_with_the_story_stay(rules: RuleSet) -> None:
    # A list of facts closing the story: short, headline-shaped, but about the story.
    facts = [
        "أسعار القمح ترتفع عشرة بالمئة في أسبوع",
        "الجفاف يضرب مناطق الزراعة في الدول المصدرة",
        "دول المنطقة تستورد كميات كبيرة من القمح",
    ]
    assert removed([*BODY, *facts], rules) == {}


def test_two_headlines_are_no_box(rules: RuleSet) -> None:
    # A columnist's closing lines or a caption pair: a box needs three entries.
    assert removed([*BODY, *TEASERS[:2]], rules) == {}


def test_a_list_the_story_introduces_stays(rules: RuleSet) -> None:
    lines = [*BODY[:-1], "ومن أبرز الأفلام التي شارك فيها:", *TEASERS]
    assert removed(lines, rules) == {}


def test_poem_closing_a_column_stays(rules: RuleSet) -> None:
    # Hemistichs set one per line: every second line rhymes ("ـيه").
    poem = [
        "يسأل ولا يلقى جواب يجيبه",
        "ليش الهوى مزروع دربه بالاشواك",
        "ليش النهاية في المحبه كئيبه",
        "وش ذنب قلب عاش عمره فداك",
    ]
    assert is_verse(poem)
    assert removed([*BODY, *poem], rules) == {}


def test_a_short_story_is_no_box(rules: RuleSet) -> None:
    # Too little prose above to say which words the story uses.
    assert removed([BODY[0], *TEASERS], rules) == {}


def test_field_list_stays(rules: RuleSet) -> None:
    fields = [
        "الدفاع: بيبي - رافائيل جيريرو - جوزيه فونتي",
        "الوسط: جواو موتينيو - جواو ماريو - برناردو سيلفا",
        "الهجوم: غونزالو غيديس - كريستيانو رونالدو",
    ]
    assert removed([*BODY, *fields], rules) == {}


def test_box_lines_keep_their_positions(rules: RuleSet) -> None:
    body = "\n\n".join([*BODY, *TEASERS])
    result = strip_boilerplate(body, title="", source="", rules=rules)
    assert all(split_lines(body)[s.line_no] == s.text for s in result.stripped)


def test_stretched_prompt(rules: RuleSet) -> None:
    line = "شاهـد.. لحظة إطلاق أول قطار يعمل بالهيدروجين"
    assert removed([*BODY, line], rules) == {line: LINK_PROMPT_RULE}


def test_a_quoted_sentence_is_no_headline() -> None:
    assert not prompt_headline('شاهد: "وصلنا إلى المكان وكان الدخان يملأ الشارع."')
    assert not prompt_headline("Read more: «The talks resumed in Geneva.»")


def test_chinese_and_japanese_sentences_are_no_headlines(rules: RuleSet) -> None:
    # Their clauses are no words ("，" and "。" are no spaces), so every line shares almost
    # nothing with the rest by word stems: the closing paragraphs of a long article were
    # taken as a teaser box. Their full stop and commas end a sentence as "." and "," do.
    rng = random.Random(3)

    def clause() -> str:
        return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(6, 12)))

    paragraphs = ["，".join(clause() for _ in range(4)) + "。" for _ in range(24)]
    assert removed(paragraphs, rules) == {}
    assert not is_headline_text("政府は五日、来年度の予算案の概要を発表した。")
    assert not is_headline_text("国家统计局周二发布数据显示，工业增加值同比增长，")
    assert is_headline_text("统计局：十一月工业增加值增长5.4%")


def test_chinese_cohesion_counts_character_bigrams() -> None:
    # A line on the article's subject shares its character pairs, however the words are
    # cut; a headline of another story does not.
    body = stems("人民币汇率周二继续上涨 外汇市场交易活跃")
    assert cohesion("人民币 汇率 上涨", body) == 1.0
    assert cohesion("寒潮 来袭 北方 降温", body) == 0.0
