"""`newsdedup explain` after a real backfill on the embedded server: the index's own
decisions for a near duplicate, a partial, an update and a fact conflict, explained.

Two backfills: the originals, then the inputs that repeat, update or resemble them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import cli_env, run_cli

HOSPITAL = (
    "أعلنت وزارة الصحة الليبية صباح اليوم افتتاح مستشفى الجلاء الجديد في مدينة بنغازي بسعة "
    "مئتين وأربعين سريرا، بحضور وزير الصحة عثمان عبد الجليل وعدد من المسؤولين المحليين.\n\n"
    "وقال الوزير في كلمة خلال حفل الافتتاح إن المستشفى سيخدم أكثر من نصف مليون نسمة في "
    "المنطقة الشرقية، وإن الأقسام الجراحية ستبدأ استقبال المرضى مطلع الشهر المقبل.\n\n"
    "وأضاف أن الحكومة خصصت ميزانية إضافية قدرها سبعة وثلاثون مليون دينار لتجهيز أقسام "
    "الطوارئ والعناية المركزة وغرف العمليات بأحدث المعدات الطبية."
)
HOSPITAL_COPY = (
    "افتتحت وزارة الصحة الليبية صباح اليوم مستشفى الجلاء الجديد في مدينة بنغازي بسعة "
    "مئتين وأربعين سريرا، بحضور وزير الصحة عثمان عبد الجليل وعدد من المسؤولين المحليين.\n\n"
    "وقال الوزير في كلمة خلال حفل الافتتاح إن المستشفى سيخدم أكثر من نصف مليون نسمة في "
    "المنطقة الشرقية، وإن الأقسام الجراحية ستبدأ استقبال المرضى مطلع الشهر المقبل.\n\n"
    "وأضاف أن الحكومة خصصت ميزانية إضافية قدرها سبعة وثلاثون مليون دينار لتجهيز أقسام "
    "الطوارئ."
)
HOSPITAL_UPDATE = HOSPITAL + (
    "\n\nوفي وقت لاحق، أكدت إدارة المستشفى أن قسم الأطفال سيفتح أبوابه بعد أسبوعين، وأن "
    "التوظيف سيشمل مئة وعشرين طبيبا وممرضا من أبناء المدينة."
)
OIL = (
    "ارتفعت أسعار خام برنت في الأسواق العالمية اليوم بنسبة ثلاثة فاصلة أربعة في المئة لتصل إلى "
    "ثمانية وثمانين دولارا للبرميل، بعد قرار تحالف أوبك بلس خفض الإنتاج مليون برميل يوميا."
)
# The oil item in the middle of a round-up (a round-up that starts with an item reads as
# a longer version of it: the lead decides, scripts/accept_documents.lua).
ROUND_UP = "\n\n".join(
    (
        "موجز الأخبار الاقتصادية ليوم الخميس كما رصدته نشرة المساء.",
        "أولا: تراجع سعر صرف الدينار الليبي أمام الدولار الأمريكي في السوق الموازية بطرابلس "
        "إلى سبعة دنانير وعشرين درهما، بعد إعلان المصرف المركزي فتح اعتمادات جديدة للتجار.",
        "ثانيا: " + OIL,
    )
)
MATCH = (
    "حقق فريق {winner} فوزا ثمينا على ضيفه فريق {loser} بنتيجة {score} في المباراة التي جمعت "
    "بينهما مساء الجمعة على ملعب {stadium} ضمن منافسات الجولة {round} من الدوري الليبي "
    "الممتاز لكرة القدم.\n\nوسجل أهداف المباراة اللاعب {scorer} في الدقيقة {minute}، "
    "ليرفع {winner} رصيده إلى {points} نقطة في صدارة المجموعة الأولى، فيما تجمد رصيد "
    "{loser} عند {other} نقطة في المركز الرابع."
)
MATCH_1 = MATCH.format(winner="الأهلي طرابلس", loser="الاتحاد", score="اثنين مقابل هدف",
                       stadium="طرابلس الدولي", round="السابعة", scorer="محمد صولة",
                       minute="سبعة وستين", points="ثماني عشرة", other="إحدى عشرة")  # fmt: skip
MATCH_2 = MATCH.format(winner="النصر بنغازي", loser="الهلال", score="ثلاثة أهداف دون رد",
                       stadium="الشهيد حسن الدرسي", round="الثامنة", scorer="أنيس سالتو",
                       minute="اثنتي عشرة", points="إحدى وعشرين", other="ثلاث عشرة")  # fmt: skip


# Other match reports of the same template, so that its words are common facts and only
# the names and figures stay rare (as in a real archive).
TEAMS = ("السويحلي", "المدينة", "الأخضر", "التحدي", "الصداقة", "الشط", "أبوسليم", "دارنس",
         "الملعب", "رفيق", "الظهرة", "النجمة", "الخمس", "الوحدة")  # fmt: skip
BACKGROUND = tuple(
    (
        f"match-bg-{n}",
        f"https://c.example/bg-{n}",
        MATCH.format(winner=TEAMS[n], loser=TEAMS[n + 1], score=f"{n % 4 + 1} مقابل صفر",
                     stadium=f"الملعب رقم {n}", round=f"{n + 1}", scorer=f"اللاعب {TEAMS[n]}",
                     minute=f"{n + 10}", points=f"{n + 20}", other=f"{n + 5}"),
        "outlet-c",
        f"2026-02-{n + 1:02d}T20:00:00Z",
    )
    for n in range(13)
)  # fmt: skip


def _record(doc_id: str, url: str, text: str, source: str, date: str) -> str:
    title = text.split("،")[0][:70]
    return json.dumps(
        {"id": doc_id, "url": url, "title": title, "text": text, "source": source,
         "language": "ar", "published_at": date},
        ensure_ascii=False,
    )  # fmt: skip


FIRST = (
    *BACKGROUND,
    ("hospital", "https://a.example/hospital", HOSPITAL, "outlet-a", "2026-03-05T08:00:00Z"),
    ("roundup", "https://b.example/roundup", ROUND_UP, "outlet-b", "2026-03-05T09:00:00Z"),
    ("match-1", "https://c.example/match-1", MATCH_1, "outlet-c", "2026-03-05T20:00:00Z"),
)
SECOND = (
    ("hospital-copy", "https://d.example/h", HOSPITAL_COPY, "outlet-d", "2026-03-05T10:00:00Z"),
    ("oil", "https://e.example/oil", OIL, "outlet-e", "2026-03-05T09:30:00Z"),
    ("hospital-v2", "https://a.example/hospital", HOSPITAL_UPDATE, "outlet-a",
     "2026-03-05T12:00:00Z"),
    ("match-2", "https://c.example/match-2", MATCH_2, "outlet-c", "2026-03-06T20:00:00Z"),
)  # fmt: skip


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("explain")
    env = cli_env(data_dir=root / "data")
    for n, records in enumerate((FIRST, SECOND), 1):
        folder = root / f"round{n}"
        folder.mkdir()
        lines = [_record(*r) for r in records]
        (folder / "articles.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = run_cli(["backfill", "-c", "1", str(folder)], env)
        assert result.returncode == 0, result.stderr
    return env


def _match(env: dict[str, str], doc_id: str) -> dict[str, Any]:
    result = run_cli(["explain", "--json", doc_id], env, timeout=120)
    assert result.returncode == 0, result.stderr
    matches: list[dict[str, Any]] = json.loads(result.stdout)["matches"]
    return matches[0]


def test_near_duplicate(backfilled: dict[str, str]) -> None:
    m = _match(backfilled, "hospital-copy")
    assert (m["stream"], m["decision"], m["b_relation"]) == (
        "duplicates",
        "duplicate",
        "duplicate_of",
    )
    assert m["rule"].startswith("near-") and m["b"]["id"] == "hospital"
    assert m["candidates"][0]["id"] == "hospital" and m["candidates"][0]["verdict"] == "duplicate"
    assert m["passages"]["a_coverage"] > 0.9


def test_partial(backfilled: dict[str, str]) -> None:
    m = _match(backfilled, "oil")
    assert (m["decision"], m["rule"], m["b_relation"]) == ("partial", "partial", "partial_of")
    assert m["b"]["id"] == "roundup" and m["passages"]["a_coverage"] > 0.9
    assert m["passages"]["b_coverage"] < 0.6  # the round-up's other item is not shared


def test_update(backfilled: dict[str, str]) -> None:
    m = _match(backfilled, "hospital-v2")
    assert (m["decision"], m["rule"], m["b_relation"]) == ("update", "update", "update_of")
    assert m["b"]["id"] == "hospital" and m["record"]["version"] == 2


def test_fact_conflict(backfilled: dict[str, str]) -> None:
    m = _match(backfilled, "match-2")
    assert (m["decision"], m["rule"]) == ("published", "new")
    assert m["candidates"][0]["id"] == "match-1"
    assert m["candidates"][0]["verdict"] == "facts-conflict"
    assert m["candidates"][0]["facts"] == "conflict"
    text = run_cli(["explain", "match-2"], backfilled, timeout=120).stdout
    assert "candidate: match-1" in text and "facts-conflict" in text


def test_tail_shows_what_a_document_relates_to(backfilled: dict[str, str]) -> None:
    result = run_cli(["tail", "--from-start"], backfilled, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines()}
    assert lines["hospital-v2"].endswith("(update 2 of hospital)")
    assert lines["oil"].endswith("(part of roundup)")
    assert not lines["hospital"].endswith(")")
