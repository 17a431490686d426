"""Hand-made stream entries for `newsdedup explain`: the four cases it must tell apart (a
near duplicate, a partial, an update, a fact conflict) and a hostile article, as the index
writes them (records' `to_fields()`), to XADD before the index fills `reason` itself."""

from __future__ import annotations

from workers.records import DeadRecord, Decision, DecisionCandidate, DocRecord, DuplicateRecord

ORIGINAL = (
    "أعلنت وزارة الصحة الليبية اليوم افتتاح مستشفى جديد في مدينة بنغازي بسعة مئتي سرير.\n\n"
    "وقال وزير الصحة إن المستشفى سيخدم أكثر من نصف مليون نسمة في المنطقة الشرقية، وإن "
    "العمل فيه سيبدأ مطلع الشهر المقبل.\n\n"
    "وأضاف أن الحكومة خصصت ميزانية إضافية لتجهيز أقسام الطوارئ والعناية المركزة."
)
# The same story reworded a little by another outlet.
NEAR_COPY = (
    "افتتحت وزارة الصحة الليبية اليوم مستشفى جديدا في مدينة بنغازي بسعة مئتي سرير.\n\n"
    "وقال وزير الصحة إن المستشفى سيخدم أكثر من نصف مليون نسمة في المنطقة الشرقية، وإن "
    "العمل فيه سيبدأ مطلع الشهر المقبل.\n\n"
    "وأضاف أن الحكومة خصصت ميزانية إضافية لتجهيز أقسام الطوارئ."
)
SHORT_ITEM = (
    "ارتفعت أسعار النفط الخام في الأسواق العالمية اليوم بنسبة ثلاثة في المئة بعد قرار أوبك."
)
ROUND_UP = (
    "موجز الأخبار الاقتصادية لهذا اليوم.\n\n"
    "أولا: " + SHORT_ITEM + "\n\n"
    "ثانيا: تراجع سعر صرف الدينار أمام الدولار في السوق الموازية بعد قرار المصرف المركزي.\n\n"
    "ثالثا: وقعت الحكومة اتفاقية مع شركة أجنبية لتطوير ميناء طرابلس خلال ثلاث سنوات."
)
UPDATED = ORIGINAL.replace("مئتي سرير", "ثلاثمئة سرير") + "\n\nوحضر الافتتاح عدد من المسؤولين."
TEMPLATE = "فاز فريق {team} على فريق {other} بنتيجة {score} في الدوري الليبي الممتاز يوم الجمعة."
HOSTILE = (
    'Breaking <script>document.title="pwned"</script> & "quotes" <b>bold</b> news today'
    " <img src=x onerror=\"document.title='pwned'\"> from the wire."
)


def doc(doc_id: str, text: str, *, reason: Decision, **extra: object) -> DocRecord:
    fields: dict[str, object] = {
        "source": "test",
        "url": f"https://news.example/{doc_id}",
        "title": text.split("\n")[0][:60],
        "text": text,
        "published_at": "2026-01-10T08:00:00+00:00",
        "author": "",
        "language": "ar",
        "ingested_at": "2026-01-10T08:05:00+00:00",
        "content_hash": f"hash-{doc_id}",
        "stripped_lines": 0,
        "stripped": (),
        "input_ref": f"{doc_id}.txt",
        **extra,
    }
    return DocRecord(id=doc_id, reason=reason, **fields)  # type: ignore[arg-type]


def candidate(doc_id: str, verdict: str, **values: object) -> DecisionCandidate:
    given: dict[str, object] = {
        "similarity": 0.2, "containment": 0.3, "facts": "few", "facts_share": -1.0,
        "rare_facts": (1, 1), "gap_hours": 0, **values,
    }  # fmt: skip
    return DecisionCandidate(id=doc_id, verdict=verdict, **given)  # type: ignore[arg-type]


def duplicate(dup_id: str, text: str, of: str, reason: Decision) -> DuplicateRecord:
    return DuplicateRecord(
        id=dup_id,
        source="other",
        url=f"https://other.example/{dup_id}",
        title=text.split("\n")[0][:60],
        text=text,
        published_at="2026-01-10T09:00:00+00:00",
        ingested_at="2026-01-10T09:05:00+00:00",
        content_hash=f"hash-{dup_id}",
        input_ref=f"{dup_id}.txt",
        duplicate_of=of,
        similarity=0.62,
        containment=0.7,
        kind="near",
        match="minhash",
        reason=reason,
    )


def cases() -> list[tuple[str, DocRecord | DuplicateRecord | DeadRecord]]:
    """(stream, record) in the order they are added: the originals, then each case."""
    new = Decision("new")
    near = candidate(
        "hospital", "duplicate", similarity=0.62, containment=0.7, facts="agree",
        facts_share=1.0, rare_facts=(3, 3), gap_hours=1,
    )  # fmt: skip
    conflict = candidate(
        "match-1", "facts-conflict", similarity=0.58, containment=0.6, facts="conflict",
        facts_share=0.0, rare_facts=(3, 3), gap_hours=2,
    )  # fmt: skip
    return [
        ("docs", doc("hospital", ORIGINAL, reason=new)),
        ("docs", doc("roundup", ROUND_UP, reason=new)),
        (
            "docs",
            doc(
                "match-1", TEMPLATE.format(team="الأهلي", other="الاتحاد", score="2-1"), reason=new
            ),
        ),
        (
            "duplicates",
            duplicate("hospital-copy", NEAR_COPY, "hospital", Decision("near-jaccard", (near,))),
        ),
        (
            "docs",
            doc(
                "oil",
                SHORT_ITEM,
                partial_of="roundup",
                reason=Decision(
                    "partial",
                    (
                        candidate(
                            "roundup", "partial_of", similarity=0.2, containment=0.95, gap_hours=0
                        ),
                    ),
                ),
            ),
        ),
        (
            "docs",
            doc(
                "hospital~2",
                UPDATED,
                input_id="hospital",
                update_of="hospital",
                version=2,
                reason=Decision("update"),
            ),
        ),
        (
            "docs",
            doc(
                "match-2",
                TEMPLATE.format(team="النصر", other="الهلال", score="3-0"),
                reason=Decision("new", (conflict,)),
            ),
        ),
        ("docs", doc("hostile", HOSTILE, language="en", reason=Decision("new"))),
        ("duplicates", duplicate("hostile-copy", HOSTILE, "hostile", Decision("exact-content"))),
        (
            "dead",
            DeadRecord(
                id="scan-7",
                input_ref="archive/scan-7.txt",
                source="archive",
                reason="decode_binary",
                error="binary data, not text (NUL bytes)",
                failed_at="2026-01-02T03:04:05.000Z",
            ),
        ),
    ]


def add_cases(client: object, prefix: str) -> dict[str, str]:
    """XADD every case under `prefix`; the stream id of each, by record id."""
    added = {}
    for stream, record in cases():
        entry_id = client.xadd(f"{prefix}{stream}", record.to_fields())  # type: ignore[attr-defined]
        added[record.id] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return added
