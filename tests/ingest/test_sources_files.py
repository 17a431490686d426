"""Planning and loading backfill files: exact accounting, record mapping, batching."""

from __future__ import annotations

import codecs
import gzip
import json
import os
import random
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED

from workers.document import DeadInput, Document, LoadedInput
from workers.ingest.dates import parse_date
from workers.ingest.html import read_article
from workers.ingest.load import document_from_record, load_location, load_task
from workers.ingest.plan import Plan, PlanError, plan_backfill
from workers.ingest.spec import Limits, Location, TaskSpec

pytestmark = pytest.mark.unit

SHARED_CORPUS = SHARED / "corpus"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ARABIC_TITLE = "أمير الرياض يفتتح المعرض"
ARABIC_BODY = "افتتح أمير منطقة الرياض اليوم معرض الكتاب الدولي بحضور عدد من المسؤولين."
# An article of one paragraph on one line, as text dumps often hold them.
ONE_PARAGRAPH = (
    "أعلنت وزارة الصحة اليوم تسجيل حالات جديدة في ثلاث مناطق، وقالت إن فرقها الميدانية "
    "تتابع المخالطين وإن الوضع تحت السيطرة، داعية المواطنين إلى اتباع الإرشادات الوقائية."
)

ARTICLE_PARAGRAPHS = [
    "The city council approved the new transit plan on Tuesday after a long debate that "
    "lasted well into the evening and drew hundreds of residents to the hall.",
    "Under the plan, three bus lines will be extended to the northern suburbs, and a new "
    "light rail link will connect the airport with the central station by 2027.",
    "Opponents argued that the cost, estimated at 1.2 billion, would burden taxpayers for "
    "decades, while supporters said congestion was already costing far more every year.",
]
HTML_PAGE = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Council approves transit plan | Daily</title>
<meta property="article:published_time" content="2018-02-18T21:35:43+04:00"></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li>
<li><a href="/sport">Sport</a></li><li><a href="/subscribe">Subscribe now</a></li></ul></nav>
<header><div class="menu">Breaking news menu</div></header>
<main><article>
<h1>Council approves transit plan</h1>
{"".join(f"<p>{p}</p>" for p in ARTICLE_PARAGRAPHS)}
</article></main>
<footer><p>Copyright 2018 Daily Newspaper Group. All rights reserved.</p>
<ul><li><a href="/privacy">Privacy policy</a></li><li><a href="/terms">Terms</a></li></ul>
</footer></body></html>
"""


def _record(i: int, **extra: object) -> str:
    rec: dict[str, object] = {"id": f"r{i}", "title": f"T{i}", "text": f"body {i}"}
    rec.update(extra)
    return json.dumps(rec, ensure_ascii=False)


def _load_all(plan: Plan, default_source: str | None = None) -> list[LoadedInput]:
    items: list[LoadedInput] = []
    for spec in plan.tasks:
        # Tasks travel as JSON through Celery: round-trip them like the worker sees them.
        wire = TaskSpec.from_json(json.loads(json.dumps(spec.to_json())))
        assert wire == spec
        got = list(load_task(wire, default_source=default_source, read_html=read_article))
        assert len(got) == spec.inputs
        items.extend(got)
    assert len(items) == plan.total_inputs
    refs = [item.input_ref for item in items]
    assert len(refs) == len(set(refs)), "input_ref must be unique within a job"
    return items


def _by_ref(items: Iterable[LoadedInput]) -> dict[str, LoadedInput]:
    return {item.input_ref: item for item in items}


def _doc(item: LoadedInput) -> Document:
    assert isinstance(item, Document), item
    return item


def _dead(item: LoadedInput) -> DeadInput:
    assert isinstance(item, DeadInput), item
    return item


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "okaz" / "nested" / "deep").mkdir(parents=True)
    (root / "feeds").mkdir()
    (root / "site").mkdir()
    (root / ".git").mkdir()

    (root / "okaz" / "a.txt").write_text("\n  First headline  \nBody line one.\nBody two.\n")
    (root / "okaz" / "nested" / "deep" / "b.txt").write_text("Deep title\nDeep body.\n")
    (root / "okaz" / "legacy.txt").write_bytes(f"{ARABIC_TITLE}\n{ARABIC_BODY}\n".encode("cp1256"))
    (root / "okaz" / "title_only.txt").write_text("Just a headline\n\n")
    (root / "okaz" / "one_paragraph.txt").write_text(f"\n{ONE_PARAGRAPH}\n")
    (root / "okaz" / "one_sentence.txt").write_text("A storm closed the port today.")
    (root / "okaz" / "empty.txt").write_bytes(b"")

    lines = [
        _record(1, source="sabq", url="http://x/1", published="2015-07-21 02:51:32"),
        "",
        json.dumps({"title": "no id", "content": "content body", "link": "http://x/3"}),
        "{not json",
        json.dumps({"id": 5, "title": "empty text", "text": "   "}),
        "[1, 2]",
        "   ",
        json.dumps({"text": "rfc date", "time": "Sun, 18 Feb 2018 21:35:43 +0400"}),
        "",
    ]
    (root / "feeds" / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with gzip.open(root / "feeds" / "more.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(_record(i) for i in range(10, 14)) + "\n\n")
    (root / "feeds" / "blank.ndjson").write_text("\n \n\n")

    array = [
        {"id": "a-0", "text": "zero"},
        {"text": "one", "date": 1519000000},
        "not an object",
        {"title": "no text"},
    ]
    (root / "arr.json").write_text(json.dumps(array))
    (root / "site" / "obj.json").write_text(json.dumps({"text": "an object", "pubDate": "x"}))
    (root / "site" / "broken.json").write_text("[{]")
    (root / "site" / "empty_array.json").write_text("[]")
    (root / "site" / "page.html").write_text(HTML_PAGE, encoding="utf-8")

    (root / "notes.pdf").write_bytes(b"%PDF-1.4")
    (root / "Makefile").write_text("all:\n")
    (root / ".hidden.txt").write_text("hidden\nfile\n")
    (root / ".git" / "config.txt").write_text("hidden\ndir\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\nroot\n")
    (root / "link_out.txt").symlink_to(outside)
    (root / "link_in.txt").symlink_to(root / "okaz" / "a.txt")  # same file twice
    (root / "dangling.txt").symlink_to(tmp_path / "nope.txt")
    return root


def test_plan_and_load_agree_exactly(corpus: Path) -> None:
    plan = plan_backfill([corpus], batch_size=3)
    assert plan.skipped == {
        "broken_symlink": 1,
        "duplicate_path": 1,
        "hidden": 2,  # .hidden.txt, and the .git folder as one
        "no_records": 2,
        "symlink_outside_root": 1,
        "unknown_extension": 2,
    }
    assert plan.unknown_extensions == {".pdf": 1, "(none)": 1}
    # 4 array + 2 object/broken json + 7 txt + 1 html + 6 jsonl + 4 jsonl.gz
    assert plan.total_inputs == 24
    assert plan.files == 13
    assert all(spec.inputs <= 3 for spec in plan.tasks)
    assert sum(spec.inputs for spec in plan.tasks) == plan.total_inputs
    assert all(spec.root == str(corpus.resolve()) for spec in plan.tasks)

    items = _by_ref(_load_all(plan))
    assert not any(ref.startswith((".", "link_", "dangling")) for ref in items)
    assert "notes.pdf" not in items


def test_symlinks_inside_root_prefer_real_paths_and_stop_loops(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.txt").write_text("title\nbody\n")
    (tmp_path / "a_link").symlink_to(tmp_path / "real")  # sorts before the real folder
    (tmp_path / "real" / "loop").symlink_to(tmp_path)
    plan = plan_backfill([tmp_path], batch_size=10)
    # The loop is met twice: as real/loop and as a_link/loop.
    assert plan.skipped == {"duplicate_path": 1, "symlink_loop": 2}
    assert [d.input_ref for d in _load_all(plan)] == ["real/x.txt"]


def test_plan_walks_in_sorted_order_and_is_deterministic(corpus: Path) -> None:
    first = plan_backfill([corpus], batch_size=5)
    second = plan_backfill([corpus], batch_size=5)
    assert first.tasks == second.tasks
    paths = [loc.path for spec in first.tasks for loc in spec.locations]
    assert paths.index("arr.json") < paths.index("feeds/items.jsonl")
    assert paths.index("okaz/a.txt") < paths.index("okaz/nested/deep/b.txt")
    assert paths.index("okaz/nested/deep/b.txt") < paths.index("site/obj.json")


def test_jsonl_records(corpus: Path) -> None:
    items = _by_ref(_load_all(plan_backfill([corpus], batch_size=4)))
    first = _doc(items["feeds/items.jsonl:1"])
    assert (first.id, first.source, first.url, first.title) == ("r1", "sabq", "http://x/1", "T1")
    assert first.published_at == "2015-07-21T02:51:32"

    no_id = _doc(items["feeds/items.jsonl:3"])
    assert no_id.id == "feeds/items.jsonl:3"
    assert (no_id.text, no_id.url, no_id.source) == ("content body", "http://x/3", "feeds")

    assert _dead(items["feeds/items.jsonl:4"]).reason == "malformed_json"
    missing = _dead(items["feeds/items.jsonl:5"])
    assert (missing.reason, missing.id, missing.source) == ("missing_text", "5", "feeds")
    assert _dead(items["feeds/items.jsonl:6"]).reason == "not_an_object"
    rfc = _doc(items["feeds/items.jsonl:8"])
    assert rfc.published_at == "2018-02-18T21:35:43+04:00"
    # Blank lines are not inputs.
    assert not {"feeds/items.jsonl:2", "feeds/items.jsonl:7", "feeds/items.jsonl:9"} & set(items)

    gz = [items[f"feeds/more.jsonl.gz:{n}"] for n in range(1, 5)]
    assert [_doc(d).id for d in gz] == ["r10", "r11", "r12", "r13"]


def test_json_array_ranges_read_from_their_offsets(tmp_path: Path) -> None:
    """A UTF-8 array's ranges start at their first element's byte offset, and each gives
    what the whole file's parse gives: the same file in UTF-16 (parsed whole by every
    range) loads to the same inputs. A file changed after planning falls back to the
    whole parse."""
    rng = random.Random(5)
    records: list[object] = []
    for i in range(57):
        kind = rng.random()
        if kind < 0.1:
            records.append(["not", "an object", i])
        elif kind < 0.2:
            records.append({"id": f"r{i}", "title": "no text", "nested": {"a": [1, "]"]}})
        else:
            text = f'خبر رقم {i}: "اقتباس" [بين قوسين], {{وأقواس}} \\ وسطر\nثان'
            records.append({"id": f"r{i}", "text": text, "tags": ["a,b", "]["], "n": i})
    dumped = json.dumps(records, ensure_ascii=False, indent=rng.choice([None, 2]))
    # Folders of one name: the source, from the folder, is the same for both.
    utf8, utf16 = tmp_path / "utf8" / "wire", tmp_path / "utf16" / "wire"
    utf8.mkdir(parents=True)
    utf16.mkdir(parents=True)
    (utf8 / "a.json").write_text(dumped, encoding="utf-8")
    (utf16 / "a.json").write_text(dumped, encoding="utf-16")
    plan = plan_backfill([utf8], batch_size=10)
    locations = [loc for spec in plan.tasks for loc in spec.locations]
    assert len(locations) == 6 and all(loc.offset >= 0 for loc in locations)
    whole = plan_backfill([utf16], batch_size=10)
    assert all(loc.offset < 0 for spec in whole.tasks for loc in spec.locations)
    from_offsets, parsed_whole = _load_all(plan), _load_all(whole)
    assert [item.input_ref for item in from_offsets] == [f"a.json#{i}" for i in range(57)]
    assert from_offsets == parsed_whole
    texts = [d.text for d in from_offsets if isinstance(d, Document)]
    assert texts == [r["text"] for r in records if isinstance(r, dict) and "text" in r]

    # Moved bytes: the offsets now point between elements, so every range parses the
    # whole file instead, and still gives every input.
    (utf8 / "a.json").write_text("   " + dumped, encoding="utf-8")
    assert _load_all(plan) == parsed_whole


def _outcomes(items: Iterable[LoadedInput]) -> dict[str, str]:
    """input_ref -> the document's id, or "dead: <reason>"."""
    return {
        item.input_ref: item.id if isinstance(item, Document) else f"dead: {item.reason}"
        for item in items
    }


# A malformed element among well-formed ones, anywhere in a UTF-8 array (read from
# offsets); the same with a control byte, so the file is parsed whole by each task; a
# form feed (no JSON space) before the first element; a missing value between two commas
# and after the last one. `<i>` is record i, `<bad>` a malformed element; the number of
# elements, and those that are dead.
_BAD_ARRAYS: dict[str, tuple[str, int, set[int]]] = {
    "middle.json": ("[<0>,\n<1>,\n<2>,\n<bad>,\n<4>,\n<5>,\n<6>]", 7, {3}),
    "first_last.json": ("[<bad>,<1>,<2>,<3>,<4>,<5>,<bad>]", 7, {0, 6}),
    "control.json": ('[<0>,<1>,{"id": "r2", "text": "a\x01b"},<bad>,<4>,<5>,<6>]', 7, {2, 3}),
    "form_feed.json": ("[\x0c<0>,<1>,<2>,<3>,<4>,<5>,<6>]", 7, {0}),
    "missing.json": ("[<0>,<1>,,<3>,<4>,<5>,<6>,]", 8, {2, 7}),
}


@pytest.mark.parametrize("name", sorted(_BAD_ARRAYS))
def test_a_bad_json_array_element_is_one_dead_input_whatever_the_batch(
    tmp_path: Path, name: str
) -> None:
    """Each element of a .json array is its own input, as each line of a .jsonl is: a
    malformed one is one dead input (`malformed_json`, naming the element and where in
    the file it breaks), and every well-formed one is read, whatever the tasks' ranges.
    (A range holding a bad element used to be dead whole, the valid ones included.)"""
    template, count, bad = _BAD_ARRAYS[name]
    text = template.replace("<bad>", '{"id": "broken", "text": }')
    for i in range(count):
        text = text.replace(f"<{i}>", _record(i))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_text(text, encoding="utf-8")
    runs = {
        size: _by_ref(_load_all(plan_backfill([tmp_path / "in"], batch_size=size)))
        for size in (1, 2, 3, 4, 200)
    }
    outcomes = [_outcomes(items.values()) for items in runs.values()]
    assert all(outcome == outcomes[0] for outcome in outcomes), outcomes
    expected = {
        f"{name}#{i}": "dead: malformed_json" if i in bad else f"r{i}" for i in range(count)
    }
    assert outcomes[0] == expected
    for i in sorted(bad):
        error = _dead(runs[200][f"{name}#{i}"]).error
        assert error.startswith(f"malformed JSON in element {i}: "), error
        assert " line " in error and " column " in error, error


def test_records_in_the_shapes_of_common_exports(tmp_path: Path) -> None:
    """NewsAPI's articles and schema.org's NewsArticle give their source, author, text and
    date under names of their own; a record that names neither keeps the folder's."""
    newsapi = {
        "source": {"id": "bbc-news", "name": "BBC News"},
        "author": "A. Writer",
        "title": "Storm closes port",
        "url": "https://example.org/storm",
        "publishedAt": "2024-01-02T03:04:05Z",
        # NewsAPI cuts its content and says by how much: the marker is not published.
        "content": "A storm closed the main port today, and ships… [+2345 chars]",
    }
    schema_org = {
        "@type": "NewsArticle",
        "headline": "unused: the title is `title`",
        "title": "Budget passed",
        "author": {"@type": "Person", "name": "B. Reporter"},
        "datePublished": "2024-02-03T04:05:06+03:00",
        "articleBody": "The parliament passed the budget.",
    }
    unnamed = {"source": {"id": "x"}, "author": ["a", "b"], "text": "No names here."}
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "a.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (newsapi, schema_org, unnamed)), encoding="utf-8"
    )
    items = _by_ref(_load_all(plan_backfill([tmp_path / "exports"], batch_size=10)))
    first, second, third = (_doc(items[f"a.jsonl:{n}"]) for n in (1, 2, 3))
    assert (first.source, first.author, first.text, first.published_at) == (
        "BBC News",
        "A. Writer",
        "A storm closed the main port today, and ships…",
        "2024-01-02T03:04:05+00:00",
    )
    assert (second.source, second.author, second.text, second.published_at) == (
        "exports",
        "B. Reporter",
        "The parliament passed the budget.",
        "2024-02-03T04:05:06+03:00",
    )
    assert (third.source, third.author) == ("exports", "")


def test_html_in_a_record_is_read_as_a_page_s_paragraphs(tmp_path: Path) -> None:
    """JSON Feed's items (content_html, content_text, date_published, authors), a
    WordPress REST export ({"rendered": ...} values) and a scraped dataset's HTML text
    are published as text, never with their tags; a plain text with a bracketed word keeps
    its lines as they are."""
    json_feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Example News",
        # A second array of objects: a JSON Feed's records are its items all the same.
        "authors": [{"name": "Desk"}],
        "items": [
            {
                "id": "https://example.org/a1",
                "url": "https://example.org/a1",
                "title": "Council approves budget",
                "content_html": "<p>The council approved the budget.</p><p>Two bus lines"
                " &amp; forty bridges.</p>",
                "date_published": "2026-12-01T10:00:00+01:00",
                "authors": [{"name": "Jane Roe"}],
            },
            {"id": "a2", "content_text": "Schools closed.\n\nThe storm eases Friday."},
            {"id": "a3", "content_html": "<p> </p><div><br></div>"},
        ],
    }
    wordpress = {
        "id": 17,
        "link": "https://example.org/?p=17",
        "date": "2026-11-30T08:00:00",
        "title": {"rendered": "Rates &#8216;on hold&#8217;"},
        "content": {
            "rendered": "<p>The bank held its rate.</p>\n<ul><li>one</li><li>two</li></ul>"
        },
    }
    scraped = {"id": "s1", "text": "<div><h2>Sub</h2>Line one<br>line two</div>"}
    plain = {"id": "p1", "text": "A <Reuters> report.\n\nSecond paragraph with <b>x</b>."}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "feed.json").write_text(json.dumps(json_feed), encoding="utf-8")
    (tmp_path / "in" / "r.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in (wordpress, scraped, plain)), encoding="utf-8"
    )
    items = _by_ref(_load_all(plan_backfill([tmp_path / "in"], batch_size=10)))
    first = _doc(items["feed.json#0"])
    assert (first.text, first.author, first.published_at, first.url) == (
        "The council approved the budget.\nTwo bus lines & forty bridges.",
        "Jane Roe",
        "2026-12-01T10:00:00+01:00",
        "https://example.org/a1",
    )
    assert _doc(items["feed.json#1"]).text == "Schools closed.\n\nThe storm eases Friday."
    assert _dead(items["feed.json#2"]).reason == "missing_text"
    post = _doc(items["r.jsonl:1"])
    assert (post.title, post.text, post.url) == (
        "Rates ‘on hold’",
        "The bank held its rate.\none\ntwo",
        "https://example.org/?p=17",
    )
    assert _doc(items["r.jsonl:2"]).text == "Sub\nLine one\nline two"
    assert _doc(items["r.jsonl:3"]).text == plain["text"]


def test_an_object_that_wraps_records_gives_its_records(tmp_path: Path) -> None:
    """NewsAPI's page ({"status": "ok", "articles": [...]}) is its articles; an object
    with two arrays of records is dead, naming them."""
    (tmp_path / "api").mkdir()
    page = {
        "status": "ok",
        "totalResults": 3,
        "articles": [
            {"source": {"name": "BBC News"}, "content": "A storm closed the port."},
            {"title": "no text"},
            "not an object",
        ],
    }
    (tmp_path / "api" / "page1.json").write_text(json.dumps(page), encoding="utf-8")
    two = {"news": [{"text": "a"}], "sports": [{"text": "b"}]}
    (tmp_path / "api" / "two.json").write_text(json.dumps(two), encoding="utf-8")
    plan = plan_backfill([tmp_path / "api"], batch_size=2)
    assert plan.total_inputs == 4
    items = _by_ref(_load_all(plan))
    assert set(items) == {"page1.json#0", "page1.json#1", "page1.json#2", "two.json"}
    first = _doc(items["page1.json#0"])
    assert (first.source, first.text) == ("BBC News", "A storm closed the port.")
    assert _dead(items["page1.json#1"]).reason == "missing_text"
    assert _dead(items["page1.json#2"]).reason == "not_an_object"
    dead = _dead(items["two.json"])
    assert (dead.reason, dead.error) == (
        "missing_text",
        "record has no text, content, body, articleBody, content_text or content_html; it "
        'holds records under "news", "sports": give them as a JSON array or JSONL',
    )


def test_json_files(corpus: Path) -> None:
    items = _by_ref(_load_all(plan_backfill([corpus], batch_size=2)))
    zero = _doc(items["arr.json#0"])
    assert (zero.id, zero.source) == ("a-0", "corpus")  # file directly in root: root's name
    one = _doc(items["arr.json#1"])
    assert one.id == "arr.json#1"
    assert one.published_at == "2018-02-19T00:26:40+00:00"
    assert _dead(items["arr.json#2"]).reason == "not_an_object"
    assert _dead(items["arr.json#3"]).reason == "missing_text"

    obj = _doc(items["site/obj.json"])
    assert (obj.id, obj.text, obj.source, obj.published_at) == (
        "site/obj.json",
        "an object",
        "site",
        "",
    )
    assert _dead(items["site/broken.json"]).reason == "malformed_json"
    assert not any(ref.startswith("site/empty_array.json") for ref in items)


def test_txt_files(corpus: Path) -> None:
    items = _by_ref(_load_all(plan_backfill([corpus], batch_size=50)))
    a = _doc(items["okaz/a.txt"])
    assert (a.id, a.source, a.title) == ("okaz/a.txt", "okaz", "First headline")
    assert a.text == "Body line one.\nBody two.\n"
    deep = _doc(items["okaz/nested/deep/b.txt"])
    assert (deep.source, deep.title, deep.text) == ("deep", "Deep title", "Deep body.\n")

    legacy = _doc(items["okaz/legacy.txt"])
    assert legacy.title == ARABIC_TITLE
    assert legacy.text.strip() == ARABIC_BODY

    # A lone line is the text unless it has a headline's shape (a few words, no full stop).
    title_only = _dead(items["okaz/title_only.txt"])
    assert (title_only.reason, title_only.error) == (
        "missing_text",
        "text file has only a title line, no body",
    )
    paragraph = _doc(items["okaz/one_paragraph.txt"])
    assert (paragraph.title, paragraph.text) == ("", ONE_PARAGRAPH)
    sentence = _doc(items["okaz/one_sentence.txt"])
    assert (sentence.title, sentence.text) == ("", "A storm closed the port today.")
    empty = _dead(items["okaz/empty.txt"])
    assert empty.reason == "decode_empty"
    assert empty.error and "\n" not in empty.error


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_txt_lines_may_end_in_any_newline(tmp_path: Path, newline: str) -> None:
    """Bare carriage returns (old Mac editors, some exporters) end lines too: the first is
    the headline."""
    lines = ["Headline of the day", "Body one.", "Body two."]
    (tmp_path / "a.txt").write_bytes(newline.join(lines).encode())
    (item,) = _load_all(plan_backfill([tmp_path], batch_size=10))
    doc = _doc(item)
    assert doc.title == "Headline of the day"
    assert doc.text.replace("\r", "").split("\n") == ["Body one.", "Body two."]


def test_html_article_extraction(corpus: Path) -> None:
    plan = plan_backfill([corpus / "site" / "page.html"], batch_size=10)
    assert plan.total_inputs == 1
    (spec,) = plan.tasks
    assert spec.root == str((corpus / "site").resolve())
    page = _doc(next(iter(load_task(spec, default_source=None, read_html=read_article))))
    assert (page.id, page.input_ref, page.source) == ("page.html", "page.html", "site")
    for paragraph in ARTICLE_PARAGRAPHS:
        assert paragraph in page.text
    for furniture in ("Subscribe now", "Copyright 2018", "Privacy policy", "Breaking news menu"):
        assert furniture not in page.text
    assert "Council approves transit plan" in page.title
    assert page.published_at.startswith("2018-02-18")


def test_html_without_text_is_dead(tmp_path: Path) -> None:
    (tmp_path / "nav.html").write_text("<html><body><script>var a = 1;</script></body></html>")
    plan = plan_backfill([tmp_path], batch_size=10)
    assert _dead(_load_all(plan)[0]).reason == "no_text"


def test_source_precedence(corpus: Path) -> None:
    items = _by_ref(_load_all(plan_backfill([corpus], batch_size=7), default_source="cli"))
    assert _doc(items["feeds/items.jsonl:1"]).source == "sabq"  # the record's own source wins
    assert _doc(items["feeds/items.jsonl:3"]).source == "cli"
    assert _doc(items["okaz/a.txt"]).source == "cli"
    assert _dead(items["okaz/empty.txt"]).source == "cli"


def test_jsonl_batches_seek_to_their_offsets(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text("".join(_record(i) + "\n" for i in range(1050)), encoding="utf-8")
    plan = plan_backfill([path], batch_size=200)
    assert [spec.inputs for spec in plan.tasks] == [200] * 5 + [50]
    assert plan.total_inputs == 1050
    with path.open("rb") as f:
        for n, spec in enumerate(plan.tasks):
            (loc,) = spec.locations
            assert (loc.start, loc.count) == (n * 200, spec.inputs)
            f.seek(loc.offset)
            assert json.loads(f.readline())["id"] == f"r{loc.start}"
    fourth = list(load_task(plan.tasks[3], default_source=None, read_html=read_article))
    assert [_doc(d).id for d in fourth] == [f"r{i}" for i in range(600, 800)]
    assert fourth[0].input_ref == "big.jsonl:601"
    _load_all(plan)


def test_jsonl_ranges_with_blank_lines(tmp_path: Path) -> None:
    # Every third line blank: ranges cover more physical lines than inputs.
    lines = ["" if i % 3 == 2 else _record(i) for i in range(30)]
    path = tmp_path / "gaps.jsonl"
    path.write_text("\n".join(lines) + "\n")
    plan = plan_backfill([tmp_path], batch_size=7)
    assert plan.total_inputs == 20
    assert [spec.inputs for spec in plan.tasks] == [7, 7, 6]
    first = plan.tasks[0].locations[0]
    assert (first.start, first.count, first.inputs) == (0, 10, 7)
    items = _load_all(plan)
    assert [_doc(d).id for d in items] == [f"r{i}" for i in range(30) if i % 3 != 2]


def test_gz_batches(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "x.jsonl.gz", "wt") as f:
        f.write("".join(_record(i) + "\n" for i in range(25)))
    plan = plan_backfill([tmp_path], batch_size=10)
    assert [spec.inputs for spec in plan.tasks] == [10, 10, 5]
    assert all(loc.offset == -1 for spec in plan.tasks for loc in spec.locations)
    last = list(load_task(plan.tasks[-1], default_source=None, read_html=read_article))
    assert [_doc(d).id for d in last] == [f"r{i}" for i in range(20, 25)]


def test_a_gzip_file_named_jsonl_is_read_as_jsonl_gz(tmp_path: Path) -> None:
    """`gzip -c items > items.jsonl`: its records, not its compressed bytes cut at
    newlines (each one a dead input)."""
    (tmp_path / "items.jsonl").write_bytes(
        gzip.compress("".join(_record(i) + "\n" for i in range(25)).encode())
    )
    plan = plan_backfill([tmp_path], batch_size=10)
    assert (plan.total_inputs, [spec.inputs for spec in plan.tasks]) == (25, [10, 10, 5])
    loaded = [
        d
        for spec in plan.tasks
        for d in load_task(spec, default_source=None, read_html=read_article)
    ]
    assert [_doc(d).id for d in loaded] == [f"r{i}" for i in range(25)]


def test_small_files_share_tasks_with_jsonl_ranges(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"a{i}.txt").write_text(f"title {i}\nbody {i}\n")
    (tmp_path / "b.jsonl").write_text("".join(_record(i) + "\n" for i in range(10)))
    plan = plan_backfill([tmp_path], batch_size=4)
    # 3 txt + 10 lines = 13 inputs: tasks are filled, the JSONL range cut to fit.
    assert [spec.inputs for spec in plan.tasks] == [4, 4, 4, 1]
    head = zlib.crc32(_record(0).encode())  # the range's first line, as planned
    assert plan.tasks[0].locations[-1] == Location("b.jsonl", 0, 1, 0, head=head)
    _load_all(plan)


def test_vanished_and_shrunk_files_stay_accounted(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").write_text("t\nbody\n")
    (tmp_path / "arr.json").write_text(json.dumps([{"text": str(i)} for i in range(5)]))
    (tmp_path / "s.jsonl").write_text("".join(_record(i) + "\n" for i in range(10)))
    plan = plan_backfill([tmp_path], batch_size=100)
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "arr.json").write_text(json.dumps([{"text": "0"}, {"text": "1"}]))
    (tmp_path / "s.jsonl").write_text("".join(_record(i) + "\n" for i in range(4)))
    items = _by_ref(_load_all(plan))
    assert len(items) == 16
    assert _dead(items["gone.txt"]).reason == "missing"
    assert _doc(items["arr.json#1"]).text == "1"
    assert [_dead(items[f"arr.json#{i}"]).reason for i in (2, 3, 4)] == ["missing"] * 3
    assert _doc(items["s.jsonl:4"]).id == "r3"
    assert all(_dead(items[f"s.jsonl:{n}"]).reason == "missing" for n in range(5, 11))


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
def test_a_jsonl_file_rewritten_since_planning_is_file_changed_not_misread(
    tmp_path: Path, name: str
) -> None:
    """An exporter that rewrites its file (other records, other lengths) between planning
    and loading: the planned offsets now fall in the middle of lines and the line numbers
    name other records. No range is read as if it were the planned one: every input is
    dead as file_changed, once, under its planned ref."""
    path = tmp_path / name

    def write(records: Iterable[str]) -> None:
        data = "".join(line + "\n" for line in records).encode()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)

    write(_record(i) for i in range(30))
    plan = plan_backfill([tmp_path], batch_size=10)
    write(_record(i, text="longer text " * (i % 4)) for i in range(100, 140))
    items = _by_ref(_load_all(plan))
    assert sorted(items) == sorted(f"{name}:{n}" for n in range(1, 31))
    reasons = {_dead(item).reason for item in items.values()}
    assert reasons == {"file_changed"}
    message = _dead(items[f"{name}:11"]).error
    assert message.startswith("line 11 is not the one the backfill planned")


def test_a_jsonl_file_appended_to_since_planning_reads_as_planned(tmp_path: Path) -> None:
    """Lines appended after planning (a growing export) change no planned line: the
    planned records load, the new ones wait for the next backfill."""
    path = tmp_path / "grows.jsonl"
    path.write_text("".join(_record(i) + "\n" for i in range(25)))
    plan = plan_backfill([tmp_path], batch_size=10)
    with path.open("a") as f:
        f.write("".join(_record(i) + "\n" for i in range(25, 60)))
    items = _load_all(plan)
    assert [_doc(d).id for d in items] == [f"r{i}" for i in range(25)]


def test_a_range_planned_before_heads_were_noted_loads_as_before(tmp_path: Path) -> None:
    """A task planned by an older version carries no head check: it loads unchecked."""
    (tmp_path / "old.jsonl").write_text("".join(_record(i) + "\n" for i in range(5)))
    plan = plan_backfill([tmp_path], batch_size=10)
    [spec] = plan.tasks
    old = spec.to_json()
    for loc in old["locations"]:
        del loc["head"]
    wire = TaskSpec.from_json(old)
    assert all(loc.head == -1 for loc in wire.locations)
    got = list(load_task(wire, default_source=None, read_html=read_article))
    assert [_doc(d).id for d in got] == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("name", "bom", "encoding"),
    [
        ("ps.jsonl", codecs.BOM_UTF16_LE, "utf-16-le"),  # Windows PowerShell 5's default
        ("le.jsonl", b"", "utf-16-le"),
        ("be.ndjson", b"", "utf-16-be"),
        ("wide.jsonl", codecs.BOM_UTF32_LE, "utf-32-le"),
        ("ps.jsonl.gz", codecs.BOM_UTF16_BE, "utf-16-be"),
    ],
)
def test_a_jsonl_file_in_utf16_or_utf32_reads_record_by_record(
    tmp_path: Path, name: str, bom: bytes, encoding: str
) -> None:
    """Before, its lines were cut at every 0x0A byte: records split in two (dead as
    malformed_json) and halves of two records read as one."""
    records = [_record(i, title=f"عنوان الخبر {i} ✓", text=f"نص الخبر {i}") for i in range(7)]
    data = bom + "".join(line + "\r\n" for line in records).encode(encoding)
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    plan = plan_backfill([tmp_path], batch_size=3)
    assert plan.total_inputs == 7 and [spec.inputs for spec in plan.tasks] == [3, 3, 1]
    items = _load_all(plan)
    assert [_doc(d).id for d in items] == [f"r{i}" for i in range(7)]
    assert [_doc(d).title for d in items] == [f"عنوان الخبر {i} ✓" for i in range(7)]
    assert [d.input_ref for d in items] == [f"{name}:{n}" for n in range(1, 8)]
    # Rewritten after planning: still found out, as for a UTF-8 file.
    other = "".join(_record(i + 50) + "\n" for i in range(7)).encode(encoding)
    (tmp_path / name).write_bytes(
        gzip.compress(bom + other) if name.endswith(".gz") else bom + other
    )
    assert {_dead(d).reason for d in _load_all(plan)} == {"file_changed"}


def test_parts_joined_with_their_byte_order_marks_each_read(tmp_path: Path) -> None:
    """`cat a.jsonl b.jsonl > all.jsonl` of files written with a UTF-8 BOM: the second
    part's first record starts with a BOM mid-file (was dead as malformed_json)."""
    parts = [codecs.BOM_UTF8 + (_record(i) + "\n").encode() for i in range(3)]
    (tmp_path / "all.jsonl").write_bytes(b"".join(parts))
    items = _load_all(plan_backfill([tmp_path], batch_size=2))
    assert [_doc(d).id for d in items] == ["r0", "r1", "r2"]


def test_a_json_file_of_json_lines_is_read_as_jsonl(tmp_path: Path) -> None:
    """mongoexport and many scrapers write one object per line into a `.json` file: each
    line is a record (before, the whole file was one dead input, malformed_json), in
    ranges with offsets and head checks like a .jsonl; the file's size cap for a single
    JSON document does not apply to it."""
    body = "".join(_record(i, text="x" * 400) + "\n" for i in range(25))
    (tmp_path / "export.json").write_text(body)
    (tmp_path / "pretty.json").write_text(json.dumps(json.loads(_record(90)), indent=2))
    (tmp_path / "one.json").write_text(_record(91) + "\n")
    (tmp_path / "array.json").write_text(json.dumps([json.loads(_record(92))]))
    plan = plan_backfill([tmp_path], batch_size=10, limits=Limits(max_file_bytes=5000))
    assert plan.total_inputs == 28
    ranges = [loc for spec in plan.tasks for loc in spec.locations if loc.path == "export.json"]
    assert ranges and all(loc.lines and loc.offset >= 0 and loc.head != -1 for loc in ranges)
    items = _by_ref(_load_all(plan))
    assert [_doc(items[f"export.json:{n}"]).id for n in range(1, 26)] == [
        f"r{i}" for i in range(25)
    ]
    assert (_doc(items["pretty.json"]).id, _doc(items["one.json"]).id) == ("r90", "r91")
    assert _doc(items["array.json#0"]).id == "r92"


def test_a_bad_record_in_a_json_file_of_json_lines_kills_only_itself(tmp_path: Path) -> None:
    """A `.json` file of JSON Lines whose first record is cut short, or whose second line
    is not an object: each bad line is one dead input and every good record is read
    (before, the whole file was one dead input and the good records were lost). A file
    that is one JSON value stays one input, whatever its lines look like."""
    good = [_record(i) for i in range(4)]
    (tmp_path / "cut.json").write_text("\n".join([good[0][:30], *good[1:3]]) + "\n")
    (tmp_path / "garbage.json").write_text("\n".join([good[3], "<html>oops", _record(4)]) + "\n")
    nested = '{"id": "r95", "text": "t",\n"meta":\n{"a": 1}\n,"more":\n{"b": 2}\n}\n'
    (tmp_path / "nested.json").write_text(nested)
    (tmp_path / "broken.json").write_text('{"id": "r96",\n"text": "cut')
    items = _by_ref(_load_all(plan_backfill([tmp_path], batch_size=2)))
    assert sorted(items) == [
        "broken.json", "cut.json:1", "cut.json:2", "cut.json:3",
        "garbage.json:1", "garbage.json:2", "garbage.json:3", "nested.json",
    ]  # fmt: skip
    assert [_dead(items[ref]).reason for ref in ("cut.json:1", "garbage.json:2")] == [
        "malformed_json",
        "malformed_json",
    ]
    assert [_doc(items[ref]).id for ref in ("cut.json:2", "cut.json:3")] == ["r1", "r2"]
    assert [_doc(items[ref]).id for ref in ("garbage.json:1", "garbage.json:3")] == ["r3", "r4"]
    assert _doc(items["nested.json"]).id == "r95"
    assert _dead(items["broken.json"]).reason == "malformed_json"


def test_a_text_given_as_a_list_of_paragraphs_is_read_one_per_line(tmp_path: Path) -> None:
    """Scrapers and datasets give `text` as a list of paragraph strings (was dead as
    missing_text); a list holding anything else is still no text."""
    records = [
        {"id": "p", "title": "T", "text": ["first paragraph", "second paragraph"]},
        {"id": "q", "title": "T", "content": ["only in content"]},
        {"id": "r", "title": "T", "text": [{"p": 1}, "mixed"]},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    items = _by_ref(_load_all(plan_backfill([tmp_path], batch_size=10)))
    assert _doc(items["p.jsonl:1"]).text == "first paragraph\nsecond paragraph"
    assert _doc(items["p.jsonl:2"]).text == "only in content"
    assert _dead(items["p.jsonl:3"]).reason == "missing_text"


def test_truncated_gzip_is_one_dead_input(tmp_path: Path) -> None:
    data = gzip.compress("".join(_record(i) + "\n" for i in range(2000)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "fake.jsonl.gz").write_text(_record(1) + "\n")  # not gzip at all
    plan = plan_backfill([tmp_path], batch_size=300)
    items = _load_all(plan)
    dead = [d for d in items if isinstance(d, DeadInput)]
    assert [d.reason for d in dead] == ["read_error", "read_error"]
    assert dead[-1].input_ref == "fake.jsonl.gz:1"
    assert sum(isinstance(d, Document) for d in items) == plan.total_inputs - 2 > 0


def test_too_large_file(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("title\n" + "x" * 5000)
    (tmp_path / "big.json").write_text(json.dumps([{"text": "x" * 3000}, {"text": "y"}]))
    (tmp_path / "ok.jsonl").write_text(_record(1, text="z" * 5000) + "\n")  # JSONL is exempt
    plan = plan_backfill([tmp_path], batch_size=10, limits=Limits(max_file_bytes=1000))
    items = _by_ref(_load_all(plan))
    assert plan.total_inputs == 3
    assert _dead(items["big.txt"]).reason == "too_large"
    assert _dead(items["big.json"]).reason == "too_large"
    assert isinstance(items["ok.jsonl:1"], Document)


def test_unreadable_file_is_one_dead_input(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("title\nbody\n")
    locked = tmp_path / "locked.jsonl"
    locked.write_text(_record(1) + "\n" + _record(2) + "\n")
    secret.chmod(0)
    locked.chmod(0)
    try:
        plan = plan_backfill([tmp_path], batch_size=10)
        items = _by_ref(_load_all(plan))
        if IS_ROOT:
            pytest.skip("running as root: chmod 000 does not block reads, so nothing to assert")
        assert plan.total_inputs == 2
        assert _dead(items["secret.txt"]).reason == "unreadable"
        assert _dead(items["locked.jsonl:1"]).reason == "unreadable"
    finally:
        secret.chmod(0o644)
        locked.chmod(0o644)


def test_permission_denied_maps_to_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs even as root: simulate EACCES at open() instead of relying on chmod.
    (tmp_path / "secret.txt").write_text("title\nbody\n")
    (tmp_path / "secret.jsonl").write_text(_record(1) + "\n" + _record(2) + "\n")
    real_open = os.open

    def guarded_open(path: str, *args: Any, **kwargs: Any) -> Any:
        if os.path.basename(path).startswith("secret"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    plan = plan_backfill([tmp_path], batch_size=10)
    items = _by_ref(_load_all(plan))
    assert plan.total_inputs == 2  # the JSONL could not be counted: one input
    assert _dead(items["secret.txt"]).reason == "unreadable"
    assert _dead(items["secret.jsonl:1"]).reason == "unreadable"


def test_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such file or folder"):
        plan_backfill([tmp_path / "missing"], batch_size=10)
    with pytest.raises(PlanError):
        plan_backfill([], batch_size=10)


def test_explicit_files_share_their_folder_root(tmp_path: Path) -> None:
    (tmp_path / "news").mkdir()
    for i in range(3):
        (tmp_path / "news" / f"{i}.txt").write_text(f"t{i}\nb{i}\n")
    paths = sorted((tmp_path / "news").glob("*.txt"))
    plan = plan_backfill([*paths, paths[0]], batch_size=10)
    assert len(plan.tasks) == 1
    assert plan.total_inputs == 3
    assert plan.skipped == {"duplicate_path": 1}
    docs = [_doc(d) for d in _load_all(plan)]
    assert [(d.id, d.source) for d in docs] == [(f"{i}.txt", "news") for i in range(3)]


def test_location_json_round_trip_and_validation() -> None:
    loc = Location("a/b.jsonl", start=200, count=210, offset=12345, inputs=200)
    assert Location.from_json(loc.to_json()) == loc
    assert Location("x.txt").to_json() == {"path": "x.txt"}
    assert Location("x.jsonl", 3, 2).inputs == 2
    for bad in ("", "/etc/passwd", "../x.txt", "a/../../x.txt"):
        with pytest.raises(ValueError):
            Location(bad)
    with pytest.raises(ValueError):
        TaskSpec("/r", (Location("x.txt"),), inputs=2)


def test_load_location_directly(tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").write_text(_record(0) + "\n\n" + _record(2) + "\n")
    loc = Location("f.jsonl", start=0, count=3, offset=0, inputs=2)
    got = list(load_location(tmp_path, loc, default_source="s", read_html=read_article))
    assert [(_doc(d).id, d.input_ref, d.source) for d in got] == [
        ("r0", "f.jsonl:1", "s"),
        ("r2", "f.jsonl:3", "s"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2015-07-21 02:51:32", "2015-07-21T02:51:32"),
        ("2017-01-20T21:43:00+01:00", "2017-01-20T21:43:00+01:00"),
        ("2018-02-18T17:35:43Z", "2018-02-18T17:35:43+00:00"),
        ("2015-07-21", "2015-07-21T00:00:00"),
        ("Sun, 18 Feb 2018 21:35:43 +0400", "2018-02-18T21:35:43+04:00"),
        ("Sun, 18 Feb 2018 21:35:43 GMT", "2018-02-18T21:35:43+00:00"),
        (1519000000, "2018-02-19T00:26:40+00:00"),
        (1519000000.5, "2018-02-19T00:26:40.500000+00:00"),
        ("1519000000", "2018-02-19T00:26:40+00:00"),
        (1519000000000, "2018-02-19T00:26:40+00:00"),  # milliseconds
        ("2015/07/21 02:51:32", "2015-07-21T02:51:32"),
        ("20150721", "2015-07-21T00:00:00"),
        # Arabic-Indic digits; month names in English and in each region's Arabic.
        ("٢٠١٥-٠٧-٢١ ٠٢:٥١", "2015-07-21T02:51:00"),
        ("August 1, 2015", "2015-08-01T00:00:00"),
        ("Saturday, Aug 1, 2015 10:30", "2015-08-01T10:30:00"),
        ("1 August 2015", "2015-08-01T00:00:00"),
        ("السبت، ١ أغسطس ٢٠١٥م - 10:30", "2015-08-01T10:30:00"),
        ("1 آب 2015 10:30:05", "2015-08-01T10:30:05"),
        ("السبت، 01 أغسطس 2015 10:30:00 +0300", "2015-08-01T10:30:00+03:00"),  # a pubDate
        ("1 أوت 2015 10:30 GMT", "2015-08-01T10:30:00+00:00"),
        ("15 تشرين الأول 2017", "2017-10-15T00:00:00"),
        ("3 إبريل 2016", "2016-04-03T00:00:00"),
        ("12 جويلية 2019", "2019-07-12T00:00:00"),
        ("5 ماي 2018", "2018-05-05T00:00:00"),
        # Not read rather than guessed: day/month order, a Hijri date, no such day.
        ("01/08/2015", ""),
        ("01-08-2015", ""),
        ("الخميس 12 محرم 1437 هـ", ""),
        ("31 فبراير 2016", ""),
        ("May 2015", ""),
        ("", ""),
        ("  ", ""),
        ("yesterday", ""),
        ("2015-13-45", ""),
        (None, ""),
        (True, ""),
        (-5, ""),
        (float("nan"), ""),
        (10**30, ""),
        (["2015-07-21"], ""),
    ],
)
def test_parse_date(value: object, expected: str) -> None:
    assert parse_date(value) == expected


@pytest.mark.shared
def test_shared_saudinewsnet_corpus() -> None:
    path = SHARED_CORPUS / "saudinewsnet.jsonl.gz"
    if not path.exists():
        pytest.skip(f"shared corpus not available at {path}")
    started = time.perf_counter()
    plan = plan_backfill([path], batch_size=500)
    elapsed = time.perf_counter() - started
    assert plan.total_inputs == 31030
    assert len(plan.tasks) == 63
    assert elapsed < 5, f"planning took {elapsed:.2f}s"
    first = [_doc(d) for d in load_task(plan.tasks[0], default_source=None, read_html=read_article)]
    last = [_doc(d) for d in load_task(plan.tasks[-1], default_source=None, read_html=read_article)]
    assert len(first) == 500
    assert len(last) == plan.tasks[-1].inputs == 31030 - 62 * 500
    assert first[0].id == "2015-07-21-00000"
    assert first[0].input_ref == "saudinewsnet.jsonl.gz:1"
    assert last[-1].id == "2015-08-11-01685"
    assert first[0].published_at == "2015-07-21T02:51:32"
    assert all(d.source and d.text and d.title for d in first + last)


@pytest.mark.parametrize(
    ("title", "text", "published"),
    [
        # sabq's and alweeam's titles in SaudiNewsNet (226 of them) quote with references
        (
            "توزيع &#8220;موسوعة خطب الجمعة&#8221; على الخطباء",
            "نص",
            "توزيع “موسوعة خطب الجمعة” على الخطباء",
        ),
        ("AT&amp;T", "Shares rose… [+120 chars]", "AT&T"),
        ("AT&amp;T", "<p>Shares rose.</p>", "AT&T"),
        ("<b>Gaza</b>: talks <i>resume</i>", "text", "Gaza: talks resume"),
        ("Title <script>alert(1)</script>", "text", "Title"),
        ({"rendered": "Budget &#8211; the vote"}, "text", "Budget – the vote"),
        (["Part one:", "the vote"], "text", "Part one: the vote"),
        (2026, "text", "2026"),
        # no markup: what the record says, even what looks like it
        ("AT&T and R&D; a < b <Reuters>", "text", "AT&T and R&D; a < b <Reuters>"),
        ("a &lt; b", "<p>HTML text: its title is HTML too</p>", "a < b"),
    ],
)
def test_a_title_given_as_html_is_published_as_plain_text(
    title: object, text: str, published: str
) -> None:
    """A record's title holding tags or character references was published with them
    ("&#8220;" in 226 SaudiNewsNet titles); it is read as HTML, as a feed's title is."""
    record = {"title": title, "content": text}
    doc = _doc(document_from_record(record, "r", default_source="s", max_title_chars=200))
    assert doc.title == published
