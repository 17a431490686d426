"""The per-source boilerplate learner, end to end on a real Redis: documents go through
`process_inputs` (clean -> learn -> dedup -> publish) and the published text is checked."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from conftest import RedisTarget, cli_env, run_cli
from support.articles import article
from support.edit_copies import lightly_edit
from support.settings import settings_for

from workers.clean.boilerplate.learner import Candidate, LineLearner
from workers.clean.boilerplate.lines import BYLINE_PART_LABEL
from workers.clean.boilerplate.links import link_targets
from workers.clean.boilerplate.strip import learnable_lines
from workers.clean.normalise import normalise_for_publishing
from workers.document import Document
from workers.ops.streams import iter_range
from workers.pipeline.process import BatchResult, clean_chunk, process_inputs
from workers.worker.runtime import Runtime, build_runtime

FOOTER = "حمّل تطبيق الصحيفة على هاتفك لتصلك آخر الأخبار أولاً بأول"
MIDDLE = "وأكد المتحدث الرسمي أن العمل مستمر وفق الخطة المعتمدة دون أي تأخير"
BYLINE = "سارة الأحمد – جدة"


def make_doc(n: int, text: str, source: str = "outlet") -> Document:
    return Document(
        id=f"{source}-{n:03d}", source=source, text=text, input_ref=f"{source}-{n:03d}", title=""
    )


def run(
    rt: Runtime, docs: list[Document], *, chunk_size: int = 50, job_id: str = "learn"
) -> BatchResult:
    return process_inputs(
        docs,
        job_id=job_id,
        rules=rt.rules,
        fingerprinter=rt.fingerprinter,
        index=rt.index,
        learner=rt.learner,
        chunk_size=chunk_size,
    )


def published(rt: Runtime) -> dict[str, dict[str, str]]:
    entries = iter_range(rt.client, rt.keys.docs, limit=None)
    return {fields["id"]: fields for _, fields in entries}


def runtime_for(redis_target: RedisTarget, prefix: str, **learning: Any) -> Runtime:
    settings = settings_for(prefix)
    settings = settings.model_copy(
        update={"boilerplate": settings.boilerplate.model_copy(update=learning)}
    )
    return build_runtime(settings, redis_target.url)


@pytest.mark.parametrize("chunk_size", [50, 7, 1])
def test_shared_footer_is_stripped_from_the_20th_document_on(
    redis_target: RedisTarget, prefix: str, chunk_size: int
) -> None:
    # 50: all 30 in one chunk (tentative counts within a chunk); 7: counts carried across
    # chunks still in flight; 1: every document decided before the next is cleaned.
    rt = runtime_for(redis_target, prefix)
    docs = [make_doc(n, article(n) + "\n\n" + FOOTER) for n in range(30)]
    run(rt, docs, chunk_size=chunk_size)
    out = published(rt)
    assert len(out) == 30
    min_docs = rt.learner.settings.min_docs
    for n, doc in enumerate(docs):
        fields = out[doc.id]
        if n < min_docs:
            assert FOOTER in fields["text"], n  # nothing to learn from yet
        else:
            assert FOOTER not in fields["text"], n
            assert {"line": FOOTER, "rule": "learned"} in json.loads(fields["stripped"])
        assert fields["text"].startswith(doc.text[:200])  # the article itself is intact
    documents, lines = rt.learner.learned_lines("outlet")
    assert documents == 30
    assert [(line.text, line.count) for line in lines] == [(FOOTER, 30)]


def test_a_line_started_late_is_learned_on_its_share_since(
    redis_target: RedisTarget, prefix: str
) -> None:
    # 200 documents without the footer, then 20 with it. Against all 205 documents counted
    # a 10% share would take 21 of them; since the footer's first bucket, it takes 5.
    rt = runtime_for(redis_target, prefix, min_share=0.1, prune_every=20)
    run(rt, [make_doc(n, article(n)) for n in range(200)])
    later = [make_doc(n, article(n) + "\n\n" + FOOTER) for n in range(200, 220)]
    run(rt, later, chunk_size=1)
    out = published(rt)
    kept = [FOOTER in out[doc.id]["text"] for doc in later]
    assert kept == [True] * 5 + [False] * 15


def test_sentence_repeated_in_the_middle_is_never_stripped(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = runtime_for(redis_target, prefix)
    docs = [
        make_doc(n, article(n, 60) + f"\n\n{MIDDLE}\n\n" + article(1000 + n, 60)) for n in range(40)
    ]
    run(rt, docs)
    out = published(rt)
    assert all(MIDDLE in out[doc.id]["text"] for doc in docs)
    assert all(out[doc.id]["stripped_lines"] == "0" for doc in docs)


def test_learned_lines_go_only_in_unbroken_edge_runs(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = runtime_for(redis_target, prefix)
    run(rt, [make_doc(n, article(n) + "\n\n" + FOOTER) for n in range(10)])
    # Later: the footer line sits above the last paragraph, so it is content there.
    inside = make_doc(100, article(100) + "\n\n" + FOOTER + "\n\nفقرة أخيرة من المقال نفسه.")
    at_top = make_doc(101, FOOTER + "\n\n" + article(101))
    run(rt, [inside, at_top])
    out = published(rt)
    assert FOOTER in out[inside.id]["text"]
    assert FOOTER not in out[at_top.id]["text"]


def test_duplicates_do_not_teach(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix)
    story = article(7) + "\n\nوختم الوزير تصريحه بالتأكيد على أهمية التعاون بين الجهات."
    last_line = story.rsplit("\n\n", 1)[1]
    copies = [make_doc(0, story)]
    copies += [make_doc(n, story) for n in range(1, 5)]  # exact re-crawls
    copies += [make_doc(n, lightly_edit(story, n)) for n in range(5, 12)]  # near copies
    run(rt, copies, chunk_size=1)
    assert rt.learner.learned_lines("outlet") == (1, [])
    # A new article that happens to end with that line keeps it.
    other = make_doc(50, article(50) + "\n\n" + last_line)
    run(rt, [other])
    assert last_line in published(rt)[other.id]["text"]


def test_byline_parts_are_learned(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix)
    cities = ["جدة", "الرياض", "مكة", "الدمام", "أبها", "تبوك", "الطائف", "حائل"]
    run(rt, [make_doc(n, f"سارة الأحمد – {cities[n]}\n\n{article(n)}") for n in range(8)])
    new_city = make_doc(20, f"سارة الأحمد – نجران\n\n{article(20)}")
    run(rt, [new_city])
    fields = published(rt)[new_city.id]
    assert not fields["text"].startswith("سارة الأحمد")
    assert json.loads(fields["stripped"]) == [
        {"line": "سارة الأحمد – نجران", "rule": "learned_byline"}
    ]


def test_sources_learn_apart(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix)
    run(rt, [make_doc(n, article(n) + "\n\n" + FOOTER, "one") for n in range(10)])
    other = make_doc(0, article(500) + "\n\n" + FOOTER, "two")
    run(rt, [other])
    assert FOOTER in published(rt)[other.id]["text"]


def test_learning_is_shared_by_worker_processes(redis_target: RedisTarget, prefix: str) -> None:
    first = runtime_for(redis_target, prefix)
    run(first, [make_doc(n, article(n) + "\n\n" + FOOTER) for n in range(10)])
    second = runtime_for(redis_target, prefix)  # another process's runtime: empty caches
    later = make_doc(99, article(99) + "\n\n" + FOOTER)
    run(second, [later])
    assert FOOTER not in published(second)[later.id]["text"]


def test_all_boilerplate_document_goes_to_dead(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix)
    only_disclaimer = make_doc(1, "** جميع المقالات المنشورة تمثل رأي كتابها فقط.")
    run(rt, [only_disclaimer, make_doc(2, article(2))])
    dead = [fields for _, fields in iter_range(rt.client, rt.keys.stream("dead"), limit=None)]
    assert [(d["id"], d["reason"]) for d in dead] == [(only_disclaimer.id, "all_boilerplate")]
    assert set(published(rt)) == {"outlet-002"}


def test_learning_off(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix, learn=False)
    run(rt, [make_doc(n, article(n) + "\n\n" + FOOTER) for n in range(10)])
    assert all(FOOTER in fields["text"] for fields in published(rt).values())
    assert rt.learner.sources() == []


def test_counting_memory_is_bounded(redis_target: RedisTarget, prefix: str) -> None:
    # Every document brings 20 lines never seen again plus the footer; lossy counting
    # drops the one-offs every `prune_every` documents, and keeps the footer learned.
    rt = runtime_for(redis_target, prefix, prune_every=20)
    learner = rt.learner
    zone = learner.settings.zone_lines
    for start in range(0, 200, 10):
        candidates = []
        for n in range(start, start + 10):
            body = "\n\n".join(
                [*(f"سطر فريد رقم {n} {i} {article(n, 12)}" for i in range(20)), FOOTER]
            )
            lines = learnable_lines(body, source="s", rules=rt.rules, zone=zone)
            candidates.append(Candidate(f"d{n}", "s", lines, body))
        _, pending = learner.plan(candidates)
        learner.record(pending, [c.input_ref for c in candidates])
    counted = sum(rt.client.hlen(key) for key in rt.keys.learner_count_shards("s"))
    assert counted <= 2 * 20 * (zone + 1)  # at most ~two buckets' worth of one-offs
    documents, lines = learner.learned_lines("s")
    assert documents == 200
    assert [line.text for line in lines] == [FOOTER]


def test_boilerplate_show_and_reset_cli(redis_target: RedisTarget, prefix: str) -> None:
    rt = runtime_for(redis_target, prefix)
    run(rt, [make_doc(n, f"{BYLINE}\n\n{article(n)}\n\n{FOOTER}") for n in range(12)])
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    shown = run_cli(["boilerplate", "show", "outlet"], env)
    assert shown.returncode == 0, shown.stderr
    assert "outlet: 12 documents counted" in shown.stdout
    assert f"      12  {FOOTER}" in shown.stdout
    assert "byline part: سارة الأحمد" in shown.stdout
    listing = run_cli(["boilerplate", "show", "--json"], env)
    assert json.loads(listing.stdout) == [{"source": "outlet", "documents": 12, "learned": 4}]
    refused = run_cli(["boilerplate", "reset", "outlet"], env)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    reset = run_cli(["boilerplate", "reset", "outlet", "--yes"], env)
    assert reset.returncode == 0, reset.stderr
    assert rt.learner.learned_lines("outlet") == (0, [])
    assert LineLearner(rt.client, rt.keys, rt.learner.settings).sources() == []


def test_boilerplate_show_lists_exactly_the_lines_trimmed_as_learned(
    redis_target: RedisTarget, prefix: str
) -> None:
    # A stream where the two old definitions of "learned" parted: a line used from the
    # start, one used only early (learned then, below the share now), one started late
    # (learned on its share since), one too rare, and bylines whose reporter recurs but
    # whose cities do not. After it, every line the learner counted is probed: alone at
    # the top of a new document, planned and stripped as the pipeline does, and never
    # recorded. `boilerplate show` must list exactly the lines so trimmed.
    rt = runtime_for(redis_target, prefix, min_share=0.1, prune_every=20)
    early = "تابعونا على قناتنا الجديدة في منصات التواصل الاجتماعي"
    late = "استمع إلى النشرة الصوتية اليومية عبر تطبيق الإذاعة"
    rare = "للاشتراك في النشرة البريدية راسلونا عبر الموقع"
    cities = ["جدة", "الرياض", "مكة", "الدمام", "أبها", "تبوك", "الطائف", "حائل", "ينبع", "جازان"]
    stream = []
    for n in range(120):
        top = [f"سارة الأحمد – {cities[n % len(cities)]}", *([early] if n < 10 else [])]
        bottom = [*([late] if n >= 110 else []), *([rare] if n % 15 == 0 else []), FOOTER]
        stream.append(make_doc(n, "\n\n".join([*top, article(n, 36), *bottom])))
    run(rt, stream, chunk_size=7)
    assert len(published(rt)) == len(stream)

    learning = {
        "NEWSDEDUP_BOILERPLATE__MIN_SHARE": "0.1",
        "NEWSDEDUP_BOILERPLATE__PRUNE_EVERY": "20",
    }
    env = cli_env(redis_url=redis_target.url, prefix=prefix, **learning)
    shown_run = run_cli(["boilerplate", "show", "outlet", "--json", "--limit", "10000"], env)
    assert shown_run.returncode == 0, shown_run.stderr
    shown = json.loads(shown_run.stdout)
    assert shown["documents"] == len(stream) and shown["learned"] == len(shown["lines"])
    shown_texts = {line["text"] for line in shown["lines"]}

    counted: dict[str, str] = {}  # everything the learner was sent: hash -> text
    for doc in stream:
        body = normalise_for_publishing(doc.text)
        zone = rt.learner.settings.zone_lines
        counted.update(learnable_lines(body, source="outlet", rules=rt.rules, zone=zone))

    def trimmed_as(line: str, n: int) -> set[str]:
        probe = make_doc(1000 + n, f"{line}\n\n{article(1000 + n, 36)}")
        chunk = clean_chunk([probe], rt.rules, rt.fingerprinter, rt.learner)
        assert chunk.learning is not None
        rt.learner.discard(chunk.learning)
        (accepted,) = chunk.accepted
        return {s.rule for s in accepted.doc.stripped if s.text == line}

    trimmed: set[str] = set()
    for n, text in enumerate(counted.values()):
        if text.startswith(BYLINE_PART_LABEL):
            # A part is learned when a byline made of it and a part never seen is trimmed.
            part = text.removeprefix(BYLINE_PART_LABEL)
            if "learned_byline" in trimmed_as(f"{part} – قرية لم تذكر", n):
                trimmed.add(text)
        elif "learned" in trimmed_as(text, n):
            trimmed.add(text)

    assert shown_texts == trimmed
    assert {FOOTER, late, f"{BYLINE_PART_LABEL}سارة الأحمد"} <= shown_texts
    assert not {early, rare} & shown_texts


def titled(n: int, text: str, title: str) -> Document:
    return Document(
        id=f"outlet-{n:03d}", source="outlet", text=text, input_ref=f"outlet-{n:03d}", title=title
    )


def test_links_to_other_articles_of_the_source(redis_target: RedisTarget, prefix: str) -> None:
    # Articles 0-5; then one whose bottom is teasers of three of them (their leads, as a
    # "more from this section" box) and which links a fourth by its headline mid-text; and
    # one that quotes an earlier lead in its middle as background: that stays.
    rt = runtime_for(redis_target, prefix)
    earlier = [
        titled(n, f"(وكالة)-- {article(n, 24)}", f"عنوان الخبر رقم {n} عن تطورات المنطقة")
        for n in range(6)
    ]
    leads = [article(n, 24).split("\n\n")[0] for n in range(6)]
    body = article(100, 48).split("\n\n")
    teasers = leads[:3]
    linking = titled(100, "\n\n".join([body[0], earlier[4].title, *body[1:], *teasers]), "")
    quoting = titled(101, "\n\n".join([*body[:2], leads[5], *article(101, 36).split("\n\n")]), "")
    run(rt, [*earlier, linking, quoting], chunk_size=3)
    out = published(rt)
    stripped = json.loads(out[linking.id]["stripped"])
    assert stripped == [
        {"line": line, "rule": "related_link"} for line in [earlier[4].title, *teasers]
    ]
    assert out[linking.id]["text"] == "\n\n".join(body)
    assert out[quoting.id]["stripped_lines"] == "0"
    # Titles and leads are kept to spot links, never learned as boilerplate.
    assert rt.learner.learned_lines("outlet") == (8, [])
    assert rt.client.hlen(rt.keys.learner_lines("outlet")) == 0


def test_link_targets_of_duplicates_are_kept_too(redis_target: RedisTarget, prefix: str) -> None:
    # A duplicate teaches no furniture, but other pages still link to it: its title rides
    # with a kept document of its source, counted `link_memory` times (kept that many
    # buckets by lossy counting), once however often it is seen.
    rt = runtime_for(redis_target, prefix)
    learner = rt.learner
    kept = Candidate("a", "s", [], "a", link_targets("عنوان الخبر الأول عن المدينة", ""))
    copy_title = "عنوان الخبر الثاني عن المدينة"
    copy = Candidate("b", "s", [], "b", link_targets(copy_title, ""))
    for _ in range(2):
        _, pending = learner.plan([kept, copy])
        learner.record(pending, ["a"])
    counts = {
        line: value
        for key in rt.keys.learner_count_shards("s")
        for line, value in rt.client.hgetall(key).items()
    }
    boost = learner.settings.link_memory
    assert sorted(int(v) % 2**32 for v in counts.values()) == [boost, boost]
    assert rt.client.hlen(rt.keys.learner_lines("s")) == 0
    probe = copy.targets[0][0]  # a later line equal to the duplicate's title
    _, pending = learner.plan([Candidate("c", "s", [], "c", probes=[probe])])
    learner.discard(pending)
    assert pending.links == [frozenset({probe})]


# ---------------------------------------------------------------------------- variants

UPDATED = "آخر تحديث للخبر: الخميس 10 مارس 2017 - 11:02 صباحا"
DISCLAIMER = "نرحب بتعليقاتكم على هذا الموضوع شريطة الالتزام بآداب الحوار وعدم الإساءة لأي طرف"
QUOTE = "قال الشاعر: إذا الشعب يوما أراد الحياة فلا بد أن يستجيب القدر"


def test_a_marker_with_a_date_is_learned_whatever_the_date(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = runtime_for(redis_target, prefix)
    days = ["الأحد", "الإثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت"]
    docs = [
        make_doc(
            n,
            f"آخر تحديث للخبر: {days[n % 7]} {n + 1} مارس 2017 - {n % 12}:{n:02d}\n\n" + article(n),
        )
        for n in range(20)
    ]
    run(rt, docs)
    out = published(rt)
    min_docs = rt.learner.settings.min_docs
    assert all(out[doc.id]["text"].startswith("آخر تحديث") for doc in docs[:min_docs])
    assert not any(out[doc.id]["text"].startswith("آخر تحديث") for doc in docs[min_docs:])


def test_near_variants_of_a_learned_line_go_at_the_edges_only(
    redis_target: RedisTarget, prefix: str
) -> None:
    rt = runtime_for(redis_target, prefix)
    run(rt, [make_doc(n, article(n) + "\n\n" + DISCLAIMER) for n in range(12)])
    reworded = DISCLAIMER.replace("بتعليقاتكم", "بمشاركاتكم")
    misspelt = DISCLAIMER.replace("شريطة", "شرط")
    at_bottom = make_doc(100, article(100) + "\n\n" + reworded)
    at_top = make_doc(101, misspelt + "\n\n" + article(101))
    # Inside the article, a variant is content like the learned line itself would be.
    inside = make_doc(102, article(102) + "\n\n" + reworded + "\n\nفقرة أخيرة من المقال نفسه.")
    run(rt, [at_bottom, at_top, inside], chunk_size=1)
    out = published(rt)
    assert reworded not in out[at_bottom.id]["text"]
    assert {"line": reworded, "rule": "learned"} in json.loads(out[at_bottom.id]["stripped"])
    assert misspelt not in out[at_top.id]["text"]
    assert reworded in out[inside.id]["text"]


def test_what_variants_never_take(redis_target: RedisTarget, prefix: str) -> None:
    # A quotation several columns open with is not furniture unless it is at an edge of
    # many documents, and a line a few words away from a learned one is another line.
    rt = runtime_for(redis_target, prefix)
    footer = "حمّل تطبيق الصحيفة على هاتفك لتصلك آخر الأخبار"
    docs = [
        make_doc(n, article(n, 60) + f"\n\n{QUOTE}\n\n" + article(500 + n, 60) + "\n\n" + footer)
        for n in range(12)
    ]
    run(rt, docs)
    closing = "حمّل كتاب الصحيفة السنوي من موقعها لتقرأ أبرز الأحداث"
    short = "الرياضي"
    last = make_doc(
        100,
        article(100)
        + "\n\n"
        + QUOTE.replace("الشاعر", "الشابي")
        + "\n\n"
        + short
        + "\n\n"
        + closing,
    )
    run(rt, [last], chunk_size=1)
    out = published(rt)
    assert all(QUOTE in out[doc.id]["text"] for doc in docs)
    kept = out[last.id]["text"]
    assert closing in kept and short in kept and QUOTE.replace("الشاعر", "الشابي") in kept


def test_an_input_read_again_is_a_refetch_though_lines_learned_since_strip_it(
    redis_target: RedisTarget, prefix: str
) -> None:
    """The first documents of an outlet keep its footer (nothing learned yet); backfilled
    again, the footer is stripped from them too, so their cleaned texts differ from what
    was published. The same input under the same URL is still a re-fetch: exact
    duplicates, not updates, and nothing published twice."""
    rt = runtime_for(redis_target, prefix)
    docs = [
        replace(make_doc(n, article(n) + "\n\n" + FOOTER), url=f"https://outlet.example/{n}")
        for n in range(30)
    ]
    assert run(rt, docs, job_id="first").counts() == {"published": 30}
    assert FOOTER in published(rt)[docs[0].id]["text"]
    assert run(rt, docs, job_id="again").counts() == {"exact": 30}
    assert len(published(rt)) == 30
