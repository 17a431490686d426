from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from workers.clean.boilerplate.lines import byline_parts, line_hash
from workers.clean.boilerplate.links import link_probes, link_targets
from workers.clean.boilerplate.rules import RuleSet, load_rules, parse_rules
from workers.clean.boilerplate.strip import learnable_lines, strip_boilerplate
from workers.clean.normalise import normalise_for_publishing, split_lines

pytestmark = pytest.mark.unit


# Exactly the lines the default rules must remove from each seed; everything else stays.
# Shared with bench/boilerplate_bench.py.
SEED_BOILERPLATE: dict[str, set[str]] = {
    name: set(lines)
    for name, lines in json.loads(
        (ROOT / "tests" / "golden" / "seed_boilerplate.json").read_text(encoding="utf-8")
    )["seeds"].items()
}


def split_seed(path: Path) -> tuple[str, str]:
    """Title = first non-empty line; body = the rest, publish-normalised."""
    lines = path.read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if line.strip())
    return lines[first].strip(), normalise_for_publishing("\n".join(lines[first + 1 :]))


def content_lines(text: str) -> list[str]:
    return [line for line in split_lines(text) if line]


# ---------------------------------------------------------------------------- golden seeds


@pytest.mark.parametrize("name", sorted(SEED_BOILERPLATE))
def test_seeds_golden(name: str, rules: RuleSet) -> None:
    title, body = split_seed(ROOT / "seeds" / name)
    result = strip_boilerplate(body, title=title, source="", rules=rules)
    expected = SEED_BOILERPLATE[name]

    assert {s.text for s in result.stripped} == expected
    kept = content_lines(result.text)
    for line in expected:
        assert line not in kept
    others = [line for line in content_lines(body) if line not in expected]
    assert kept == others  # every other line, in order, untouched
    for stripped in result.stripped:
        assert split_lines(body)[stripped.line_no] == stripped.text
    assert "\n\n\n" not in result.text
    assert result.text == normalise_for_publishing(result.text)


def test_seed_lines_that_must_survive(rules: RuleSet) -> None:
    kept: list[str] = []
    for name in SEED_BOILERPLATE:
        title, body = split_seed(ROOT / "seeds" / name)
        kept += content_lines(strip_boilerplate(body, title=title, source="", rules=rules).text)
    for line in ("آخر الهجمات", "دور بارز", "العنصر النتيجة", "• مصادرة عبوات ناسفة وأسلحة متطورة"):
        assert line in kept
    # Seed 000 repeats its first paragraph with other quote marks: both copies stay.
    assert sum(line.startswith("وتكشف القضية المعروفة إعلاميا") for line in kept) == 2


def test_seed_rule_names(rules: RuleSet) -> None:
    title, body = split_seed(ROOT / "seeds" / "002_9399e0bcda40dfec.txt")
    result = strip_boilerplate(body, title=title, source="", rules=rules)
    assert [s.rule for s in result.stripped] == ["title_repeated", "followup_credit"]
    title, body = split_seed(ROOT / "seeds" / "000_b1ab6303fef3538a.txt")
    result = strip_boilerplate(body, title=title, source="", rules=rules)
    assert [s.rule for s in result.stripped] == ["lone_number", "outlet_credit", "more_news"]


# ---------------------------------------------------------------------------- default rules

CONTENT = [
    "أعلنت وزارة الداخلية اليوم القبض على خلية إرهابية في حلب.",
    "وقال المتحدث إن العملية استمرت ثلاث ساعات.",
    "وأضاف أن التحقيقات ما زالت جارية مع الموقوفين.",
    "وأكدت الوزارة أن الوضع الأمني تحت السيطرة.",
]


def wrap(line: str, *, at: str = "middle") -> str:
    lines = list(CONTENT)
    if at == "top":
        lines.insert(0, line)
    elif at == "bottom":
        lines.append(line)
    else:
        lines.insert(2, line)
    return normalise_for_publishing("\n\n".join(lines))


@pytest.mark.parametrize(
    "line",
    [
        "واس",
        "(واس)",
        "أ ف ب",
        "فرانس24/ أ ف ب",
        "رويترز",
        "AFP",
        "Reuters",
        "اقرأ أيضا",
        "اقرأ أيضاً:",
        "Read more",
        "Lire aussi",
        "À lire aussi",
        "Share this",
        "شارك",
        "-----",
        "* * *",
        "•••",
        "=====",
        "____",
        "Advertisement",
        "إعلان",
        "news@example.com",
        "Comments are closed.",
        "المزيد من الأخبار",
        "Hot Topics",
        "Related Articles",
        "@T_algashgari",
        "تويتر: @arfaj",
        "لقراءة الحوار كاملا أنقر هنــا",  # tatweel and hamza do not hide a prompt
        "لمراسلة الكاتب: writer@example.net",
        "للتواصل أرسل sms إلى 88548 الاتصالات ,636250 موبايلي, 738303 زين تبدأ بالرمز 262 مسافة",
        "165 مسافة ثم الرسالة",
        "(تصوير: علي الشهري)",
        "Photo: AFP",
        "زين تبدأ بالرمز 158 مسافة ثم الرسالة",
        "88591 - Stc",
        "// يتبع //",
        "（责任编辑：王小明）",
        "责编：李四 校对：张三",
        "【纠错】",
        "打印本页 | 关闭窗口",
    ],
)
def test_furniture_removed_anywhere(line: str, rules: RuleSet) -> None:
    result = strip_boilerplate(wrap(line), title="", source="", rules=rules)
    assert [s.text for s in result.stripped] == [line]
    assert content_lines(result.text) == CONTENT


@pytest.mark.parametrize(
    "line",
    [
        "12",
        "متابعات",
        "عين اليوم - متابعات",
        "منذ 3 ساعات",
        "للاطلاع على المشروع كاملا: عن التحدي والحب والاختلاف، رسائل من رسامات شابات",
        "للمزيد: ضربات جوية تستهدف مطار التيفور العسكري السوري",
        "مقالات أخرى للكاتبعنوان المقال الأول!عنوان المقال الثاني",
        "www.example.com",
        "هذا التقرير بقلم محرر الموقع ولا يعكس بالضرورة رأي أو توجهات الشبكة.",
        "نشر هذا المقال بالتعاون مع موقع التوظيف الإلكتروني مثال.كوم",
        "2026-12-01 10:00 来源：新华网",
        "发布时间：2026年12月01日 来源：人民网 作者：李明",
        "原标题：统计局：十一月工业增加值增长5.4%",
        "（共同）",
    ],
)
@pytest.mark.parametrize("at", ["top", "bottom"])
def test_edge_furniture_removed_at_edges(line: str, at: str, rules: RuleSet) -> None:
    result = strip_boilerplate(wrap(line, at=at), title="", source="", rules=rules)
    assert [s.text for s in result.stripped] == [line]


def test_lone_number_in_the_middle_is_kept(rules: RuleSet) -> None:
    body = normalise_for_publishing("\n\n".join([*CONTENT, "12", *CONTENT]))
    result = strip_boilerplate(body, title="", source="", rules=rules)
    assert result.stripped == []
    assert result.text == body


@pytest.mark.parametrize(
    "line",
    [
        "تابعنا على مدى أسبوع تطورات الملف الأمني في المدينة",
        "شارك آلاف المتظاهرين في المسيرة",
        "انتهى الاجتماع دون اتفاق",
        "إعلان الرياض للسلام",
        "المزيد من الضحايا سقطوا في القصف",
        "Read more about the plan in our report.",
        "Reuters reported that talks resumed.",
        "12 قتيلا في هجوم انتحاري",
        "نقلا عن مصادر مطلعة، قال المسؤول إن الاجتماع تأجل",
        "رويترز: الجيش يتقدم نحو المدينة",
        "للاطلاع على التقرير قال الوزير إن الخطة جاهزة",
        "Contact @support for help with the app.",
        "https://twitter.com/example_committee",  # a page the article gives out
        ".",  # the sentence above's full stop, split off
        "تصوير الفيلم يبدأ الشهر المقبل في جدة",
        "مقالات الرأي تعبر عن كتابها",
        "وقال إن التصريحات لا تعكس موقف الحكومة الرسمي من الاتفاق الأخير بين البلدين",
        "وقال إن التصريحات لا تعكس موقف الحكومة.",
        "خدمة العملاء متاحة على مدار الساعة في جميع الفروع",
        # An interview's question, a source named in a sentence, the editors in a sentence.
        "记者：这次会议达成了哪些共识？",
        "消息来源：据知情人士透露，双方将于下周恢复谈判。",
        "编辑部表示，将继续关注事件进展。",
        "共同社报道，日本政府将于明年提交预算案。",
    ],
)
@pytest.mark.parametrize("at", ["top", "middle", "bottom"])
def test_content_sentences_are_kept(line: str, at: str, rules: RuleSet) -> None:
    result = strip_boilerplate(wrap(line, at=at), title="", source="", rules=rules)
    assert result.stripped == []


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("المنامة 25 شوال 1436 هـ الموافق 10 اغسطس 2015 م واس", "top"),  # wire dateline
        ("* أكاديمي سعودي", "bottom"),  # the writer's description
        ("* خدمة «نيويورك تايمز»", "bottom"),  # syndication credit
        ("أو الفاكس رقم: 0114871070", "bottom"),
        ("20:26 ت م", "bottom"),  # the wire's transmission time
    ],
)
def test_one_sided_rules(line: str, where: str, rules: RuleSet) -> None:
    placed = {
        "top": [line, *CONTENT, *CONTENT],
        "middle": [*CONTENT, line, *CONTENT],
        "bottom": [*CONTENT, *CONTENT, line],
    }
    for at, lines in placed.items():
        body = normalise_for_publishing("\n\n".join(lines))
        result = strip_boilerplate(body, title="", source="", rules=rules)
        assert [s.text for s in result.stripped] == ([line] if at == where else []), at


def test_end_marker_truncates(rules: RuleSet) -> None:
    body = normalise_for_publishing("\n\n".join([*CONTENT[:2], "// انتهى //", "14:12 ت م", "ع ت"]))
    result = strip_boilerplate(body, title="", source="", rules=rules)
    assert content_lines(result.text) == CONTENT[:2]
    assert [(s.text, s.rule) for s in result.stripped] == [
        ("// انتهى //", "end_marker"),
        ("14:12 ت م", "end_marker"),
        ("ع ت", "end_marker"),
    ]


# ---------------------------------------------------------------------------- rule kinds


def make_rules(**extra: Any) -> RuleSet:
    data: dict[str, Any] = {
        "settings": {"edge_lines": 2},
        "rule": [
            {"name": "credit", "pattern": "أخبار ليبيا ?24"},
            {"name": "counter", "pattern": r"\d+", "where": "edges"},
            {"name": "stop", "pattern": "انتهى", "action": "truncate_after"},
        ],
        "protect": [{"pattern": "محمي"}],
        "source": {"outlet": {"rule": [{"name": "outlet_promo", "pattern": "حمل تطبيقنا"}]}},
    }
    data.update(extra)
    return parse_rules(data, "test")


BODY_LINES = ["فقرة أولى.", "فقرة ثانية.", "فقرة ثالثة.", "فقرة رابعة.", "فقرة خامسة."]


def body_with(*inserts: tuple[int, str]) -> str:
    lines = list(BODY_LINES)
    for index, line in sorted(inserts, reverse=True):
        lines.insert(index, line)
    return "\n\n".join(lines)


def test_anywhere_rule() -> None:
    result = strip_boilerplate(
        body_with((3, "أخبار ليبيا24")), title="", source="", rules=make_rules()
    )
    assert [(s.line_no, s.text, s.rule) for s in result.stripped] == [
        (6, "أخبار ليبيا24", "credit")
    ]
    assert result.text == "\n\n".join(BODY_LINES)


def test_anywhere_rule_tolerates_decoration() -> None:
    result = strip_boilerplate(
        body_with((3, "- أخبار ليبيا 24 -")), title="", source="", rules=make_rules()
    )
    assert [s.rule for s in result.stripped] == ["credit"]


def test_edges_rule_top_bottom_and_not_middle() -> None:
    rules = make_rules()
    top = strip_boilerplate(body_with((1, "12")), title="", source="", rules=rules)
    assert [s.text for s in top.stripped] == ["12"]  # second non-empty line
    bottom = strip_boilerplate(body_with((5, "340")), title="", source="", rules=rules)
    assert [s.text for s in bottom.stripped] == ["340"]
    middle = strip_boilerplate(body_with((2, "12")), title="", source="", rules=rules)
    assert middle.stripped == []  # third line, edge_lines is 2


def test_edges_peel_after_other_removals() -> None:
    # The credit line does not use up the edge budget, so the counter under it still goes.
    body = "\n\n".join(["مقدمة.", "أخبار ليبيا24", "7", *BODY_LINES])
    result = strip_boilerplate(body, title="", source="", rules=make_rules())
    assert [s.text for s in result.stripped] == ["أخبار ليبيا24", "7"]


def test_title_repeated() -> None:
    title = "«هكذا تمكن» البسيج من تجنيب المغرب خطر عملية انتحارية"
    line = "هكذا تمكّن البسيج من تجنيب المغرب خطر عملية انتحارية."
    result = strip_boilerplate(body_with((0, line)), title=title, source="", rules=make_rules())
    assert [(s.text, s.rule) for s in result.stripped] == [(line, "title_repeated")]
    longer = strip_boilerplate(
        body_with((0, line + " في الدار البيضاء")), title=title, source="", rules=make_rules()
    )
    assert longer.stripped == []


def test_per_source_rule_only_for_its_source() -> None:
    body = body_with((3, "حمل تطبيقنا"))
    rules = make_rules()
    assert [
        s.rule for s in strip_boilerplate(body, title="", source="outlet", rules=rules).stripped
    ] == ["outlet_promo"]
    assert strip_boilerplate(body, title="", source="other", rules=rules).stripped == []


def test_truncate_after() -> None:
    body = body_with((3, "انتهى"))
    result = strip_boilerplate(body, title="", source="", rules=make_rules())
    assert content_lines(result.text) == BODY_LINES[:3]
    assert [s.rule for s in result.stripped] == ["stop", "stop", "stop"]


def test_protect_beats_every_rule() -> None:
    rules = make_rules(
        rule=[
            {"name": "credit", "pattern": "أخبار ليبيا ?24.*"},
            {"name": "stop", "pattern": "انتهى", "action": "truncate_after"},
        ]
    )
    body = body_with((1, "أخبار ليبيا24 محمي"), (3, "انتهى"), (5, "سطر محمي بعد النهاية"))
    result = strip_boilerplate(body, title="", source="", rules=rules)
    kept = content_lines(result.text)
    assert "أخبار ليبيا24 محمي" in kept
    assert "سطر محمي بعد النهاية" in kept
    assert "انتهى" not in kept


def test_all_boilerplate_is_returned_unchanged() -> None:
    body = "أخبار ليبيا24\n\n12\n\nأخبار ليبيا 24"
    result = strip_boilerplate(body, title="", source="", rules=make_rules())
    assert result.text == body
    assert result.stripped == []


def test_empty_body() -> None:
    result = strip_boilerplate("", title="عنوان", source="", rules=make_rules())
    assert (result.text, result.stripped) == ("", [])


def test_no_double_blank_lines_after_removal() -> None:
    body = "أ\n\nأخبار ليبيا24\n\nب\nأخبار ليبيا 24\nج\n\nد"
    result = strip_boilerplate(body, title="", source="", rules=make_rules())
    assert result.text == "أ\n\nب\nج\n\nد"


def test_top_and_bottom_rules() -> None:
    rules = make_rules(
        rule=[
            {"name": "kicker", "pattern": "عاجل", "where": "top"},
            {"name": "signoff", "pattern": "تحرير", "where": "bottom"},
        ]
    )
    top = strip_boilerplate(body_with((0, "عاجل"), (5, "تحرير")), title="", source="", rules=rules)
    assert [(s.text, s.rule) for s in top.stripped] == [("عاجل", "kicker"), ("تحرير", "signoff")]
    wrong_side = strip_boilerplate(
        body_with((0, "تحرير"), (5, "عاجل")), title="", source="", rules=rules
    )
    assert wrong_side.stripped == []


def test_outlet_name_and_bylines_around_it() -> None:
    rules = make_rules(source={"outlet": {"names": ["عين اليوم"]}})
    alone = strip_boilerplate(body_with((3, "عين اليوم")), title="", source="outlet", rules=rules)
    assert [(s.text, s.rule) for s in alone.stripped] == [("عين اليوم", "outlet_name")]
    for byline in ("أميرة المولد – عين اليوم", "عين اليوم - الطوال"):
        top = strip_boilerplate(body_with((0, byline)), title="", source="outlet", rules=rules)
        assert [(s.text, s.rule) for s in top.stripped] == [(byline, "outlet_name")]
    # The source id itself counts as a name; a sentence naming the outlet stays.
    sentence = "وقالت عين اليوم إن المصادر أكدت الخبر"
    kept = strip_boilerplate(body_with((0, sentence)), title="", source="outlet", rules=rules)
    assert kept.stripped == []
    own = strip_boilerplate(body_with((4, "outlet")), title="", source="outlet", rules=rules)
    assert [s.rule for s in own.stripped] == ["outlet_name"]


def test_title_byline_at_the_top_only() -> None:
    title = "ناصر الجديع: إنجليزي يقود السوبر .. والرؤساء بعيداً عن الدكة!"
    rules = make_rules()
    top = strip_boilerplate(body_with((0, "ناصر الجديع")), title=title, source="", rules=rules)
    assert [(s.text, s.rule) for s in top.stripped] == [("ناصر الجديع", "title_byline")]
    bottom = strip_boilerplate(body_with((5, "ناصر الجديع")), title=title, source="", rules=rules)
    assert bottom.stripped == []
    partial_word = strip_boilerplate(body_with((0, "ناصر")), title="ناصري", source="", rules=rules)
    assert partial_word.stripped == []


def test_learned_lines_trim_edge_runs_even_when_long() -> None:
    promo = " ".join(["يمكنكم استلام إشعارات بأهم الموضوعات"] * 4)  # 20+ words: long_line
    rules = make_rules(protect=[{"pattern": r"(?:\S+\s+){19}\S+"}])
    learned = {line_hash(promo) or ""}
    bottom = strip_boilerplate(
        body_with((5, "-----"), (6, promo)), title="", source="", rules=rules, learned=learned
    )
    assert [s.rule for s in bottom.stripped] == ["learned"]
    assert promo not in bottom.text
    middle = strip_boilerplate(
        body_with((2, promo)), title="", source="", rules=rules, learned=learned
    )
    assert middle.stripped == []


def test_pinned_and_content_lines_per_source() -> None:
    rules = make_rules(
        source={
            "outlet": {
                "boilerplate_lines": ["حمّل تطبيق الصحيفة"],
                "content_lines": ["فقرة خامسة."],
            }
        }
    )
    body = body_with((5, "حمل تطبيق الصحيفة"))
    pinned = strip_boilerplate(body, title="", source="outlet", rules=rules)
    assert [(s.text, s.rule) for s in pinned.stripped] == [("حمل تطبيق الصحيفة", "pinned")]
    # A content line is never trimmed, even when the learner reports it.
    guarded = strip_boilerplate(
        body_with(),
        title="",
        source="outlet",
        rules=rules,
        learned={line_hash("فقرة خامسة.") or ""},
    )
    assert guarded.stripped == []
    lines = learnable_lines(body_with(), source="outlet", rules=rules, zone=10)
    assert "فقرة خامسة." not in [text for _, text in lines]


def test_learnable_lines_zone_and_byline_parts() -> None:
    lines = [f"سطر رقم {chr(0x0627 + i)} من المقال" for i in range(30)]
    found = learnable_lines("\n".join(lines), source="", rules=make_rules(), zone=3)
    assert [text for _, text in found] == lines[:3] + lines[-3:]
    parts = [
        text
        for _, text in learnable_lines("سارة الأحمد – جدة", source="", rules=make_rules(), zone=3)
    ]
    assert parts == ["سارة الأحمد – جدة", "byline part: سارة الأحمد", "byline part: جدة"]
    assert byline_parts("Al-Madina reports") == []  # a hyphenated word is not a separator


def test_all_boilerplate_flag() -> None:
    result = strip_boilerplate("أخبار ليبيا24\n\n12", title="", source="", rules=make_rules())
    assert result.all_boilerplate
    assert not strip_boilerplate("", title="", source="", rules=make_rules()).all_boilerplate


def test_headline_only_document_is_not_all_boilerplate() -> None:
    rules = load_rules()
    result = strip_boilerplate(
        "Storm hits the coast", title="Storm hits the coast", source="x", rules=rules
    )
    assert (result.all_boilerplate, result.stripped, result.text) == (
        False,
        [],
        "Storm hits the coast",
    )
    furniture = strip_boilerplate(
        "Storm hits the coast\n\nShare on Facebook",
        title="Storm hits the coast",
        source="x",
        rules=rules,
    )
    assert furniture.all_boilerplate


def test_overlong_lines_are_content_and_never_learned() -> None:
    # Rule patterns backtrack quadratically on one huge token; such lines skip them.
    rules = load_rules()
    token = "x" * 200_000
    result = strip_boilerplate(
        f"Share on Facebook\n\n{token}", title="t", source="s", rules=rules, learned=frozenset()
    )
    assert result.text.endswith(token)
    assert [s.rule for s in result.stripped] != []  # the short share line still goes
    assert learnable_lines(token, source="s", rules=rules, zone=10) == []


# ---------------------------------------------------------------------------- links


def test_tatweel_after_a_space_separates_byline_parts() -> None:
    assert [text for _, text in byline_parts("الرياضي ـ الكويت")] == [
        "byline part: الرياضي",
        "byline part: الكويت",
    ]
    assert byline_parts("المباراة الـ 11 للفريق") == []  # a stretched letter is no dash
    rules = parse_rules({"source": {"outlet": {"names": ["الرياضي"]}}}, "test")
    result = strip_boilerplate(
        body_with((0, "الرياضي ـ جدة")), title="", source="outlet", rules=rules
    )
    assert [(s.text, s.rule) for s in result.stripped] == [("الرياضي ـ جدة", "outlet_name")]


TITLE = "الكويت: ارتفاع معدل التضخم المحلي بنسبة 3.5 في المائة"


@pytest.mark.parametrize(
    "line",
    [f"رابط الخبر بصحيفة المثال: {TITLE}", f"{TITLE} - صحيفة المثال"],
)
def test_own_title_with_a_link_prompt_at_an_edge(line: str) -> None:
    rules = make_rules()
    bottom = strip_boilerplate(body_with((5, line)), title=TITLE, source="", rules=rules)
    assert [(s.text, s.rule) for s in bottom.stripped] == [(line, "title_link")]
    middle = strip_boilerplate(body_with((2, line)), title=TITLE, source="", rules=rules)
    assert middle.stripped == []
    # Without a separator, the title followed by more words is a lead sentence.
    lead = f"{TITLE} خلال الشهر الماضي"
    plain = strip_boilerplate(body_with((5, lead)), title=TITLE, source="", rules=rules)
    assert plain.stripped == []


HEADLINE = "وزير الخارجية يبحث مع نظيره الفرنسي تطورات المنطقة"
LEAD = (
    "بحث وزير الخارجية مع نظيره الفرنسي في اتصال هاتفي اليوم تطورات الأوضاع في المنطقة "
    "وسبل تعزيز العلاقات الثنائية بين البلدين."
)


def test_link_targets_are_the_title_and_the_lead_without_its_dateline() -> None:
    body = f"دبي، الإمارات العربية المتحدة (CNN)-- {LEAD}\n\nفقرة ثانية من الخبر."
    texts = [text for _, text in link_targets(HEADLINE, body)]
    assert texts == [
        "link title: " + HEADLINE,
        "link lead: دبي، الإمارات العربية المتحدة (CNN)-- " + LEAD,
        "link lead: " + LEAD,
    ]
    assert link_targets("خبر", "قصير.") == []  # too short to be linked by


def links_of(title: str, body: str) -> frozenset[str]:
    """The link hashes another document with this title and body lets its peers match."""
    return frozenset(digest for digest, _ in link_targets(title, body))


def test_another_articles_headline_is_a_related_link_anywhere() -> None:
    rules = make_rules()
    links = links_of(HEADLINE, LEAD)
    body = body_with((2, HEADLINE))
    result = strip_boilerplate(body, title="", source="s", rules=rules, links=links)
    assert [(s.text, s.rule) for s in result.stripped] == [(HEADLINE, "related_link")]
    assert strip_boilerplate(body, title="", source="s", rules=rules).stripped == []
    # A digest made mostly of other articles' headlines keeps them: they are its content.
    others = [f"{HEADLINE} رقم {n}" for n in range(4)]
    digest_links = frozenset().union(*(links_of(h, LEAD) for h in others))
    digest = "\n\n".join(["موجز أخبار اليوم كما نشرت في الموقع خلال الساعات الماضية.", *others])
    kept = strip_boilerplate(digest, title="", source="s", rules=rules, links=digest_links)
    assert kept.stripped == []
    # A sentence that happens to be another article's title is no headline.
    sentence = strip_boilerplate(
        body_with((2, HEADLINE + ".")), title="", source="s", rules=rules, links=links
    )
    assert sentence.stripped == []


def test_one_other_articles_lead_is_background_not_a_link() -> None:
    # A story's last paragraph can recall an earlier story by its lead; only a box of
    # two or more (below) is taken for links.
    rules = make_rules()
    links = links_of(HEADLINE, LEAD)
    for at in (5, 3):
        result = strip_boilerplate(
            body_with((at, LEAD)), title="", source="s", rules=rules, links=links
        )
        assert result.stripped == []


def test_a_box_of_other_articles_leads_at_the_bottom() -> None:
    # Two teasers match leads seen; the box's other entries link articles not seen.
    rules = make_rules()
    teasers = [f"{LEAD[:-1]} رقم {n}." for n in range(4)]
    links = links_of("", teasers[0]) | links_of("", teasers[2])
    body = "\n\n".join([*BODY_LINES, *teasers])
    result = strip_boilerplate(body, title="", source="s", rules=rules, links=links)
    assert [s.text for s in result.stripped] == teasers
    assert all(s.rule == "related_link" for s in result.stripped)
    # One match is no box: the unmatched line under it keeps it.
    alone = strip_boilerplate(
        body, title="", source="s", rules=rules, links=links_of("", teasers[2])
    )
    assert alone.stripped == []


def test_link_probes_cover_headlines_and_the_tail() -> None:
    body = "\n\n".join([LEAD, HEADLINE, *BODY_LINES, LEAD])
    probes = set(link_probes(body, zone=3))
    assert links_of(HEADLINE, "") <= probes  # the headline-sized line
    lead_hash = next(h for h, t in link_targets("", LEAD) if t == "link lead: " + LEAD)
    assert lead_hash in probes  # the last line, as a lead (the first, its own lead, is not)
    assert len(probes) == 2  # not the last line as a headline: it ends with a full stop


def test_an_edge_line_equal_to_the_author_metadata_is_its_byline() -> None:
    rules = make_rules()
    top = strip_boilerplate(
        body_with((0, "ســيد حــكم")), title="", source="", rules=rules, author="سيد حكم"
    )
    assert [(s.text, s.rule) for s in top.stripped] == [("ســيد حــكم", "author_byline")]
    middle = strip_boilerplate(
        body_with((2, "سيد حكم")), title="", source="", rules=rules, author="سيد حكم"
    )
    assert middle.stripped == []
    assert (
        strip_boilerplate(body_with((0, "سيد حكم")), title="", source="", rules=rules).stripped
        == []
    )


def test_a_long_number_is_no_list_of_contact_numbers(rules: RuleSet) -> None:
    # A bank account (15 digits) on its own line is what the article gives out.
    body = "\n\n".join(
        ["أعلن المكتب أرقام حساباته لمن يرغب في دعم برامجه.", "حساب الزكاة :", "٤٨٠٦٠٨٠١٠٠٨٩٠٠٠"]
    )
    result = strip_boilerplate(body, title="", source="", rules=rules)
    assert result.stripped == []


# An opinion piece's or a health page's last paragraphs, above the paper's note.
NOTE_BODY = [
    "يحاول الكاتب من خلال أربع حكايات أن يفسر مراحل الحب السبع كما يراها بطل الرواية.",
    "اعتمد الكاتب أسلوب التشويق مستخدما تقنية التقطيع السينمائي لسرد أربع علاقات عاطفية.",
]


@pytest.mark.parametrize(
    "note",
    [
        "* ناقد مصري",  # a profession the writer_bio rule does not list
        "* قسم التثقيف الصحي",  # a hospital department's health page
        "* خدمة «نيويورك تايمز».",  # a syndication service
        "*مؤرخ وعضو مجلس الشورى",
    ],
)
def test_an_asterisked_note_under_the_article_is_the_papers(note: str, rules: RuleSet) -> None:
    dashed = [*NOTE_BODY, "- حوالي 10% من المرضى يستمر الألم لديهم لمدة أسبوع بعد الإجراء."]
    for above in (NOTE_BODY, dashed):  # a list of other marks above it is the article's
        result = strip_boilerplate("\n\n".join([*above, note]), title="", source="", rules=rules)
        assert [(s.text, s.rule) for s in result.stripped] == [(note, "author_note")]


@pytest.mark.parametrize(
    "lines",
    [
        # the last item of an asterisked list of facts
        [*NOTE_BODY, "* ارتفاع ضغط الدم", "* التدخين", "* قلة النشاط البدني"],
        # a table's footnote, marked with two asterisks
        [*NOTE_BODY, "**الأرقام قبل المباريات الودية هذا الأسبوع"],
        # a heading, even left last
        [*NOTE_BODY, "* ماذا يحدث بعد الإجراء؟"],
        [*NOTE_BODY, "* النتائج الأولية:"],
        # longer than a note: a sentence
        [*NOTE_BODY, "* وقد أكد الطبيب أن معظم المرضى يعودون إلى نشاطهم المعتاد خلال أيام قليلة"],
        # an asterisked line that is not the last one
        [*NOTE_BODY[:1], "* ناقد مصري", *NOTE_BODY[1:]],
        # alone: nothing above it to be a note to
        ["* ناقد مصري"],
    ],
)
def test_asterisked_lines_that_are_the_articles_own(lines: list[str], rules: RuleSet) -> None:
    result = strip_boilerplate("\n\n".join(lines), title="", source="", rules=rules)
    assert [s.text for s in result.stripped if s.rule == "author_note"] == []


def test_a_learned_byline_under_a_kicker_is_still_the_top() -> None:
    rules = make_rules()
    learned = frozenset(digest for digest, _ in byline_parts("طلال عبدالله ـ جدة")[:1])
    kicker, byline = "عودة الطائي إلى التدريبات", "طلال عبدالله ـ دبي"

    def strip(*top: str, known: frozenset[str] = learned) -> list[tuple[str, str]]:
        body = "\n\n".join([*top, *BODY_LINES])
        result = strip_boilerplate(body, title="", source="", rules=rules, learned=known)
        return [(s.text, s.rule) for s in result.stripped]

    assert strip(kicker, byline) == [(byline, "learned_byline")]  # the kicker stays
    # Under a sentence, or lower down, the same line is the article's.
    sentence = "وصل الفريق إلى دبي مساء أمس."
    assert strip(sentence, byline) == []
    assert strip(kicker, sentence, byline) == []
    # Without a learned part it is not known to be a byline.
    assert strip(kicker, byline, known=frozenset()) == []
