"""The relations the index decides beside duplicate / new: the best candidate, partials
(`partial_of` / `contains`), updates (`update_of`, `version`), per-source policies, and the
`reason` every docs and duplicates entry carries (scripts/accept_documents.lua)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import RedisTarget
from support.articles import article
from support.edit_copies import lightly_edit
from support.settings import settings_for

from workers.config import SourcePolicy
from workers.document import Document
from workers.pipeline.process import clean_and_fingerprint
from workers.records import DocRecord, DuplicateRecord
from workers.worker.runtime import Runtime, build_runtime


def doc(
    doc_id: str,
    text: str,
    *,
    url: str = "",
    title: str = "",
    source: str = "test",
    policy: SourcePolicy | None = None,
    published_at: str = "",
) -> Document:
    return Document(
        id=doc_id,
        source=source,
        text=text,
        input_ref=doc_id,
        title=title or doc_id,
        url=url,
        published_at=published_at,
        policy=policy,
    )


def submit(rt: Runtime, *docs: Document) -> list[tuple[str, str]]:
    items = [clean_and_fingerprint(d, rt.rules, rt.fingerprinter) for d in docs]
    outcomes = rt.index.run(rt.index.build_batch("", items))  # type: ignore[arg-type]
    return [(o.kind, o.duplicate_of) for o in outcomes]


def last_doc(rt: Runtime) -> DocRecord:
    ((_, fields),) = rt.client.xrevrange(rt.keys.stream("docs"), count=1)
    return DocRecord.from_fields(fields)


def last_duplicate(rt: Runtime) -> DuplicateRecord:
    ((_, fields),) = rt.client.xrevrange(rt.keys.stream("duplicates"), count=1)
    return DuplicateRecord.from_fields(fields)


def roundup(*items: str, filler_seeds: tuple[int, ...] = (901, 902)) -> str:
    """A compilation: another article first, then the items, then another (2.2x an item
    of 120 words, J ~ 0.45: below the J bar, well above where LSH starts to miss)."""
    others = [article(seed, words=72) for seed in filler_seeds]
    return "\n\n".join([others[0], *items, *others[1:]])


def common_words(rt: Runtime) -> None:
    """Index enough unrelated articles that their words are common facts (counted in more
    than rare_floor documents): only the figures stay rare."""
    submit(rt, *(doc(f"bg{n}", article(100 + n)) for n in range(12)))


@pytest.fixture
def runtime(redis_target: RedisTarget, prefix: str) -> Runtime:
    return build_runtime(settings_for(prefix), redis_target.url)


def test_a_new_document_says_why(runtime: Runtime) -> None:
    assert submit(runtime, doc("a", article(1))) == [("published", "")]
    record = last_doc(runtime)
    assert record.reason is not None
    assert (record.reason.rule, record.reason.candidates) == ("new", ())
    assert (record.partial_of, record.contains, record.update_of, record.version) == (None,) * 4


def test_a_near_duplicate_names_its_rule_and_candidates(runtime: Runtime) -> None:
    original = article(2)
    submit(runtime, doc("a", original))
    assert submit(runtime, doc("b", lightly_edit(original, 3))) == [("near", "a")]
    record = last_duplicate(runtime)
    assert record.reason is not None and record.reason.rule in ("near-jaccard", "near-facts")
    (candidate,) = record.reason.candidates
    assert (candidate.id, candidate.verdict) == ("a", "duplicate")
    assert candidate.similarity == pytest.approx(float(record.similarity or 0), abs=1e-4)
    assert candidate.gap_hours == 0
    # The duplicate carries its cleaned text, for `newsdedup explain`.
    cleaned = clean_and_fingerprint(
        doc("b", lightly_edit(original, 3)), runtime.rules, runtime.fingerprinter
    )
    assert record.text == cleaned.doc.text  # type: ignore[union-attr]


def test_a_story_goes_to_its_own_copy_not_to_a_roundup_holding_it(runtime: Runtime) -> None:
    story = article(3, words=120)
    assert submit(runtime, doc("own-copy", lightly_edit(story, 1))) == [("published", "")]
    # A round-up published later the same day holds the story.
    assert submit(runtime, doc("roundup", roundup(story))) == [("published", "")]
    # The story itself: inside the round-up (a partial of it), a near copy of its own.
    assert submit(runtime, doc("story", story)) == [("near", "own-copy")]
    verdicts = {c.id: c.verdict for c in last_duplicate(runtime).reason.candidates}  # type: ignore[union-attr]
    assert verdicts == {"own-copy": "duplicate", "roundup": "partial_of"}


def test_of_the_qualifying_candidates_the_most_similar_wins(runtime: Runtime) -> None:
    story = article(11, words=120)
    tail_a, tail_b = article(12, words=36), article(13, words=72)
    # Two published versions of a story, more than 48 hours apart (so the second is new).
    day_1, day_4 = "2024-03-01T08:00:00+00:00", "2024-03-04T08:00:00+00:00"
    submit(runtime, doc("monday", story + "\n\n" + tail_a, published_at=day_1))
    assert submit(runtime, doc("thursday", story + "\n\n" + tail_b, published_at=day_4)) == [
        ("published", "")
    ]
    # A copy dated between them qualifies against both; the closer one (same tail) wins.
    between = "2024-03-02T20:00:00+00:00"
    late = doc("between", lightly_edit(story, 5) + "\n\n" + tail_b, published_at=between)
    assert submit(runtime, late) == [("near", "thursday")]
    candidates = last_duplicate(runtime).reason.candidates  # type: ignore[union-attr]
    assert [c.verdict for c in candidates] == ["duplicate", "duplicate"]
    assert candidates[0].id == "thursday" and candidates[0].similarity > candidates[1].similarity


def test_a_story_inside_a_longer_roundup_is_published_as_partial_of_it(runtime: Runtime) -> None:
    story = article(4, words=120)
    submit(runtime, doc("roundup", roundup(story)))
    assert submit(runtime, doc("story", story)) == [("published", "")]
    record = last_doc(runtime)
    assert (record.partial_of, record.contains) == ("roundup", None)
    assert record.reason is not None and record.reason.rule == "partial"
    (candidate,) = record.reason.candidates
    assert candidate.verdict == "partial_of" and candidate.containment >= 0.8


def test_a_roundup_containing_a_published_story_is_published_with_contains(
    runtime: Runtime,
) -> None:
    story = article(5, words=120)
    submit(runtime, doc("story", story))
    assert submit(runtime, doc("roundup", roundup(story))) == [("published", "")]
    record = last_doc(runtime)
    assert (record.contains, record.partial_of) == ("story", None)
    assert record.reason is not None and record.reason.rule == "partial"


def test_a_trimmed_copy_that_starts_alike_stays_a_duplicate(runtime: Runtime) -> None:
    # The same containment as a partial, but the short text is the long one cut short.
    common_words(runtime)
    # Without figures its facts are too few to judge: only containment can decide.
    long_text = re.sub(r" [0-9]+[.]", ".", article(6, words=480))
    trimmed = "\n\n".join(long_text.split("\n\n")[:12])
    submit(runtime, doc("long", long_text))
    assert submit(runtime, doc("trimmed", trimmed)) == [("near", "long")]
    assert last_duplicate(runtime).reason.rule == "near-contained"  # type: ignore[union-attr]


def test_a_changed_text_under_the_same_url_is_an_update(runtime: Runtime) -> None:
    url = "https://news.example/story/1"
    first = article(7)
    assert submit(runtime, doc("s1", first, url=url)) == [("published", "")]
    second = first + "\n\n" + article(70, words=36)  # a new paragraph
    assert submit(runtime, doc("s1", second, url=url + "?utm_source=feed")) == [("published", "")]
    record = last_doc(runtime)
    assert (record.id, record.input_id, record.update_of, record.version) == ("s1~2", "s1", "s1", 2)
    assert record.reason is not None and record.reason.rule == "update"
    assert record.reason.candidates[0].verdict == "earlier-version"
    # A corrected figure is an update of the latest version.
    third = second.replace(second.split()[5], "1999", 1)
    assert submit(runtime, doc("s1", third, url=url)) == [("published", "")]
    record = last_doc(runtime)
    assert (record.id, record.update_of, record.version) == ("s1~3", "s1~2", 3)
    # A new headline alone is an update too.
    assert submit(runtime, doc("s1", third, url=url, title="new headline")) == [("published", "")]
    assert last_doc(runtime).version == 4
    # The same text and headline again is a re-fetch: an exact duplicate of the latest.
    assert submit(runtime, doc("s1", third, url=url, title="new headline")) == [("exact", "s1~4")]
    assert last_duplicate(runtime).reason.rule == "exact-url"  # type: ignore[union-attr]


def test_every_version_read_again_is_an_exact_duplicate(runtime: Runtime) -> None:
    """A backfill or a feed read twice: each revision is published once, whether the text
    or only the headline changed, and in whatever order the versions come back."""
    url = "https://news.example/story/9"
    text, edited = article(9), article(9) + "\n\n" + article(90, words=36)
    versions = [
        doc("r1", text, url=url, title="first headline"),
        doc("r2", text, url=url, title="second headline"),  # the headline alone changed
        doc("r3", edited, url=url, title="second headline"),  # then the text
        doc("r4", text, url=url, title="third headline"),  # back to the text, a new headline
    ]
    outcomes = [submit(runtime, version)[0][0] for version in versions]
    assert outcomes == ["published"] * 4
    published = {v.id: last for v, last in zip(versions, ["r1", "r2", "r3", "r4"], strict=True)}
    for round_ in range(2):
        for version in versions if round_ == 0 else reversed(versions):
            assert submit(runtime, version) == [("exact", published[version.id])], version.id
    assert last_duplicate(runtime).reason.rule in ("exact-url", "exact-content")  # type: ignore[union-attr]


def test_a_source_can_keep_first_versions_only(runtime: Runtime) -> None:
    url = "https://news.example/story/2"
    first_only = SourcePolicy(updates=False)
    submit(runtime, doc("u1", article(8), url=url, policy=first_only))
    changed = doc("u1", article(8) + "\n\nتحديث جديد للخبر", url=url, policy=first_only)
    assert submit(runtime, changed) == [("exact", "u1")]


def test_source_policies_from_the_settings(redis_target: RedisTarget, prefix: str) -> None:
    settings = settings_for(prefix).model_copy(
        update={
            "sources": {
                "strict": SourcePolicy(threshold=0.97),
                "templated": SourcePolicy(near_duplicates=False),
            }
        }
    )
    runtime = build_runtime(settings, redis_target.url)
    original = article(9)
    submit(runtime, doc("a", original))
    # Its own threshold: a light edit (J ~ 0.8) is not enough for the strict source.
    assert submit(runtime, doc("b", lightly_edit(original, 1), source="strict")) == [
        ("published", "")
    ]
    (candidate,) = last_doc(runtime).reason.candidates  # type: ignore[union-attr]
    assert candidate.verdict == "below-threshold"
    # Opted out of near-duplicate matching: published, the rule says so.
    assert submit(runtime, doc("c", lightly_edit(original, 2), source="templated")) == [
        ("published", "")
    ]
    assert last_doc(runtime).reason.rule == "near-off"  # type: ignore[union-attr]
    # Exact matching still applies to it.
    assert submit(runtime, doc("d", original, source="templated")) == [("exact", "a")]
    # Other sources keep the settings' threshold.
    assert submit(runtime, doc("e", lightly_edit(original, 3))) == [("near", "a")]


def test_same_template_with_other_facts_is_a_conflict_not_a_duplicate(runtime: Runtime) -> None:
    # The template's words become common (counted in more than rare_floor documents); the
    # figures stay rare and differ.
    common_words(runtime)
    template = article(10)
    figures = [word for word in template.split() if word.rstrip(".").isdigit()]
    other = template
    for n, figure in enumerate(figures):
        other = other.replace(figure, str(500_000 + n), 1)
    submit(runtime, doc("cable-1", template))
    assert submit(runtime, doc("cable-2", other)) == [("published", "")]
    record = last_doc(runtime)
    assert record.reason is not None and record.reason.rule == "new"
    (candidate,) = record.reason.candidates
    assert (candidate.id, candidate.facts, candidate.verdict) == (
        "cable-1",
        "conflict",
        "facts-conflict",
    )
    assert candidate.similarity >= 0.5


def test_a_reason_names_each_original_once(runtime: Runtime) -> None:
    # Two copies indexed standing for one original: the reason lists the original once.
    story = article(14)
    submit(runtime, doc("original", story))
    assert submit(runtime, doc("copy-1", lightly_edit(story, 1))) == [("near", "original")]
    assert submit(runtime, doc("copy-2", lightly_edit(story, 2))) == [("near", "original")]
    assert submit(runtime, doc("copy-3", lightly_edit(story, 3))) == [("near", "original")]
    ids = [c.id for c in last_duplicate(runtime).reason.candidates]  # type: ignore[union-attr]
    assert ids == ["original"]


@pytest.mark.parametrize(
    "hostile",
    [
        'quote"d\\back',
        "line\nbreak\ttab\x00nul\x1b[31m",
        "عربي‏\u200f\u202eRTL",
        "</script><b>",
        "",
    ],
)
def test_a_reason_carries_any_id_as_valid_json(runtime: Runtime, hostile: str) -> None:
    story = article(15)
    original = Document(id=hostile, source="test", text=story, input_ref=f"ref-{hostile!r}")
    submit(runtime, original)
    submit(runtime, doc("copy", lightly_edit(story, 4)))
    ((_, fields),) = runtime.client.xrevrange(runtime.keys.stream("duplicates"), count=1)
    (candidate,) = json.loads(fields[b"reason"].decode("utf-8"))["candidates"]
    assert candidate["id"] == fields[b"duplicate_of"].decode("utf-8") == hostile


def test_no_partial_link_where_the_facts_conflict(runtime: Runtime) -> None:
    # A long text that holds a same-template text with other figures is no partial of it.
    common_words(runtime)
    template = article(16, words=120)
    figures = [word for word in template.split() if word.rstrip(".").isdigit()]
    other = template
    for n, figure in enumerate(figures):
        other = other.replace(figure, str(700_000 + n), 1)
    submit(runtime, doc("long", roundup(template)))
    assert submit(runtime, doc("other", other)) == [("published", "")]
    record = last_doc(runtime)
    assert (record.partial_of, record.contains) == (None, None)
    assert record.reason is not None and record.reason.rule == "new"
    assert [(c.id, c.verdict) for c in record.reason.candidates] == [("long", "facts-conflict")]


def test_past_the_time_gap_only_a_near_identical_copy_joins(runtime: Runtime) -> None:
    """Beyond max_gap_hours (48) a candidate needs J >= stale_threshold (0.7): a copy 50
    hours late with J ~0.6 is published (its candidate's verdict says why); a closer one
    (J > 0.7) joins its story as `near-stale`."""
    story = article(21, words=100)
    day_0, late = "2024-05-01T08:00:00+00:00", "2024-05-03T10:00:00+00:00"
    submit(runtime, doc("first", story + "\n\n" + article(22, words=30), published_at=day_0))
    late_copy = doc("late", story + "\n\n" + article(23, words=30), published_at=late)
    assert submit(runtime, late_copy) == [("published", "")]
    (candidate,) = last_doc(runtime).reason.candidates  # type: ignore[union-attr]
    assert (candidate.id, candidate.verdict, candidate.gap_hours) == ("first", "time-gap", 50)
    assert 0.5 < candidate.similarity < 0.7

    other = article(24, words=100)
    submit(runtime, doc("other", other + "\n\n" + article(25, words=12), published_at=day_0))
    close = doc("close", other + "\n\n" + article(26, words=12), published_at=late)
    assert submit(runtime, close) == [("near", "other")]
    record = last_duplicate(runtime)
    assert record.reason is not None and record.reason.rule == "near-stale"
    assert record.reason.candidates[0].similarity >= 0.7
