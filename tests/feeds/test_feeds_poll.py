"""Feed polling end to end: a real HTTP server on loopback, real Redis, the real pipeline.

Most tests poll in-process (`poll_once`, what the Celery task runs); the must-show
scenarios also go through the CLI, which starts real Celery worker processes.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import (
    RedisTarget,
    cli_env,
    run_cli,
    shared_path,
    start_cli,
    start_worker,
    stop_workers,
)
from support.loopback import LoopbackServer, Scripted
from support.pages import ARTICLE_PARAGRAPHS, article_page, rss

from workers.config import ConfigError, load_settings
from workers.feeds.fetch import Fetcher
from workers.feeds.gate import gate_host
from workers.feeds.poll import ARTICLE_ATTEMPTS, HostBusy, host_patience, poll_once
from workers.feeds.schedule import schedule_entries
from workers.feeds.spec import FeedSpec, parse_feed
from workers.feeds.status import PollReport, feed_job, feed_key, feed_statuses
from workers.index.keys import Keys
from workers.index.locks import RedisLock
from workers.ops.embedded import SERVER_PROGRAM
from workers.ops.streams import iter_range
from workers.worker.runtime import Runtime, build_fetcher, build_runtime, load_feeds_and_rules

SNAPSHOT_FEEDS = (
    "aljazeera",
    "amarbanglabd",
    "banglatribune",
    "bbc_world",
    "bd24live",
    "crypto",
    "ekattor",
    "indiatoday",
    "ittefaq",
    "jagonews",
    "mehr",
    "nyt",
    "nyt_home",
    "prothomalo",
)

# ---------------------------------------------------------------------------- fixtures


def write_config(
    tmp_path: Path, prefix: str, feeds_toml: str = "", allow_private: bool = True, **feeds: Any
) -> Path:
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(feeds_toml, encoding="utf-8")
    settings = {
        "host_delay": 0,
        "retries": 1,
        "read_timeout": 1.0,
        "connect_timeout": 1.0,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        **feeds,
    }
    lines = [
        f'prefix = "{prefix}"',
        f"allow_private_networks = {json.dumps(allow_private)}",
        "[feeds]",
        f'config = "{feeds_file}"',
        *(f"{k} = {json.dumps(v)}" for k, v in settings.items()),
    ]
    path = tmp_path / "test.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Poller:
    """A runtime and fetcher on the test's Redis prefix, polling in-process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.fetcher: Fetcher = build_fetcher(runtime)
        self.calls = 0

    def __call__(
        self, spec: FeedSpec, task_id: str | None = None, *, step_aside: bool = False
    ) -> PollReport:
        self.calls += 1
        return poll_once(
            self.runtime,
            spec,
            task_id=task_id or f"task-{self.calls}",
            fetcher=self.fetcher,
            step_aside=step_aside,
        )

    def stream(self, name: str) -> list[dict[str, str]]:
        return [
            fields
            for _, fields in iter_range(
                self.runtime.client, self.runtime.keys.stream(name), limit=None
            )
        ]


@pytest.fixture
def make_poller(
    redis_target: RedisTarget, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    for var in ("REDIS_URL", "BROKER_URL", "NEWSDEDUP_CONFIG", "NEWSDEDUP_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    made: list[Poller] = []

    def make(feeds_toml: str = "", allow_private: bool = True, **feeds: Any) -> Poller:
        config = write_config(tmp_path, prefix, feeds_toml, allow_private, **feeds)
        settings = load_settings(config)
        poller = Poller(build_runtime(settings, redis_target.url))
        made.append(poller)
        return poller

    yield make
    for poller in made:
        poller.fetcher.close()


def spec_for(url: str, fetch_article: str = "never", **more: Any) -> FeedSpec:
    return FeedSpec.from_json(
        {
            "name": "test",
            "url": url,
            "source": "test",
            "interval": 60,
            "fetch_article": fetch_article,
            **more,
        }
    )


def snapshot_files(feed: str) -> list[Path]:
    folder = shared_path("feeds", "news-snapshots")
    files = sorted(folder.glob(f"{feed}__*.xml"))
    assert files, f"no captures of {feed}"
    return files


def distinct_keys(files: list[Path], url: str) -> set[str]:
    return {key for key, _ in distinct_revisions(files, url)}


def distinct_revisions(files: list[Path], url: str) -> set[tuple[str, str]]:
    """(key, revision) of every entry of the captures: an entry whose headline or text
    changed from one capture to the next is a new revision of the same key."""
    revisions: set[tuple[str, str]] = set()
    for path in files:
        revisions |= {
            (e.key, e.revision)
            for e in parse_feed(
                path.read_bytes(), {"content-type": "application/rss+xml"}, url
            ).entries
        }
    return revisions


# ---------------------------------------------------------------------------- must show 1


@pytest.mark.shared
@pytest.mark.parametrize("feed", SNAPSHOT_FEEDS)
def test_snapshot_captures_each_item_once(
    feed: str, loopback: LoopbackServer, make_poller: Any
) -> None:
    """Each capture of a real feed in turn behind one URL: every distinct item ends in
    docs or duplicates, items repeated unchanged across captures are not processed
    again, and an item whose text or headline changed is processed once per revision: an
    update of the version published before (or a duplicate, when the change is one the
    matching normalisation folds away or its first version was itself a duplicate)."""
    poller = make_poller()
    files = snapshot_files(feed)
    url = loopback.url(f"/{feed}.xml")
    spec = spec_for(url)
    new_total = 0
    for path in files:
        loopback.serve(f"/{feed}.xml", path.read_bytes())
        report = poller(spec)
        # A capture identical to the one before is a 304.
        assert report.outcome in ("polled", "not_modified"), report.summary()
        new_total += report.new
        assert report.published + report.exact + report.near + report.dead == report.new
    expected = distinct_keys(files, url)
    revisions = distinct_revisions(files, url)
    published = poller.stream("docs")
    docs = [f["input_ref"] for f in published]
    dups = [f["input_ref"] for f in poller.stream("duplicates")]
    dead = poller.stream("dead")
    assert not dead, [(d["input_ref"], d["reason"]) for d in dead]
    assert set(docs) | set(dups) == expected
    # One entry per revision, none processed twice.
    assert new_total == len(revisions) == len(docs) + len(dups)
    # A key published again is an update of its latest version, numbered in order.
    latest: dict[str, tuple[str, int]] = {}
    for fields in published:
        ref = fields["input_ref"]
        if ref in latest:
            assert (fields.get("update_of"), int(fields["version"])) == (
                latest[ref][0],
                latest[ref][1] + 1,
            ), fields
            assert json.loads(fields["reason"])["rule"] == "update"
        latest[ref] = (fields["id"], int(fields.get("version", 1)))


@pytest.mark.shared
def test_poll_command_over_five_captures(loopback: LoopbackServer, tmp_path: Path) -> None:
    """Must show 1 through the CLI on the embedded default: `newsdedup poll URL
    --fetch-article never` after each capture, with real Celery worker processes."""
    files = snapshot_files("aljazeera")
    url = loopback.url("/feed.xml")
    env = cli_env(
        data_dir=tmp_path / "data",
        NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
        NEWSDEDUP_FEEDS__HOST_DELAY="0",
    )
    reports = []
    for path in files:
        loopback.serve("/feed.xml", path.read_bytes())
        done = run_cli(["poll", url, "--fetch-article", "never", "--json"], env, timeout=180)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    expected = distinct_keys(files, url)
    # One input per revision: an entry edited between captures comes again (an update).
    revisions = distinct_revisions(files, url)
    assert sum(r["new"] for r in reports) == len(revisions) > len(expected)
    assert reports[0]["new"] == reports[0]["entries"]
    assert all(r["new"] < r["entries"] for r in reports[1:])  # overlap is skipped
    seen: dict[str, list[str]] = {}
    updates = 0
    for stream in ("docs", "duplicates", "dead"):
        out = run_cli(["tail", "--stream", stream, "--from-start", "--json"], env)
        assert out.returncode == 0, out.stderr
        for line in out.stdout.splitlines():
            entry = json.loads(line)
            seen.setdefault(entry["input_ref"], []).append(stream)
            updates += "update_of" in entry
    assert set(seen) == expected
    assert all("dead" not in places for places in seen.values()), seen
    assert sum(len(places) for places in seen.values()) == len(revisions)
    assert updates == len(revisions) - len(expected)

    # Must show 2 through the CLI: the same capture again is a 304 and publishes nothing.
    again = run_cli(["poll", url, "--fetch-article", "never", "--json"], env, timeout=180)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "not_modified" and report["http_status"] == 304
    assert loopback.requests("/feed.xml")[-1].headers.get("if-none-match")

    status = run_cli(["feeds", "--json"], env)
    assert status.returncode == 0, status.stderr
    [row] = [s for s in json.loads(status.stdout) if s["url"] == url]
    assert row["polls"] == len(files) + 1
    assert row["published"] + row["exact"] + row["near"] == len(revisions)
    assert row["last_outcome"] == "not_modified"


# ---------------------------------------------------------------------------- must show 2


def test_unchanged_feed_gets_304_and_publishes_nothing(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    loopback.serve(
        "/f.xml",
        rss(
            [{"guid": "a", "title": "A", "description": "Alpha beta gamma delta epsilon zeta eta."}]
        ),
    )
    spec = spec_for(loopback.url("/f.xml"))
    first = poller(spec)
    assert (first.outcome, first.published) == ("polled", 1)
    second = poller(spec)
    assert (second.outcome, second.http_status, second.new) == ("not_modified", 304, 0)
    request = loopback.requests("/f.xml")[-1]
    assert request.headers.get("if-none-match") and request.headers.get("if-modified-since")
    assert len(poller.stream("docs")) == 1


def test_a_json_feed_is_polled_like_rss(loopback: LoopbackServer, make_poller: Any) -> None:
    """A JSON Feed over HTTP: its items are published once, an unchanged feed publishes
    nothing, and an item whose text changed is an update of its first version."""
    poller = make_poller()

    def serve(second_text: str) -> None:
        items = [
            {
                "id": "a1",
                "url": loopback.url("/a1"),
                "title": "Council approves budget",
                "content_html": f"<p>{ARTICLE_PARAGRAPHS[0]}</p><p>{ARTICLE_PARAGRAPHS[1]}</p>",
                "date_published": "2026-12-01T10:00:00Z",
            },
            {"id": "a2", "title": "Storm", "content_text": second_text},
        ]
        feed = {"version": "https://jsonfeed.org/version/1.1", "title": "JSON", "items": items}
        loopback.serve(
            "/feed.json", json.dumps(feed).encode(), content_type="application/feed+json"
        )

    serve(ARTICLE_PARAGRAPHS[2])
    spec = spec_for(loopback.url("/feed.json"))
    first = poller(spec)
    assert (first.outcome, first.published, first.new) == ("polled", 2, 2)
    assert "application/feed+json" in loopback.requests("/feed.json")[-1].headers["accept"]
    assert poller(spec).new == 0
    serve(ARTICLE_PARAGRAPHS[2] + "\n" + ARTICLE_PARAGRAPHS[3])
    edited = poller(spec)
    assert (edited.new, edited.published) == (1, 1)
    docs = poller.stream("docs")
    assert len(docs) == 3 and docs[2].get("update_of") == docs[1]["id"]
    assert docs[0]["text"] == ARTICLE_PARAGRAPHS[0] + "\n" + ARTICLE_PARAGRAPHS[1]


def test_server_without_validators_costs_no_parsing_when_unchanged(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    body = rss(
        [{"guid": "a", "title": "A", "description": "Alpha beta gamma delta epsilon zeta eta."}]
    )
    loopback.serve("/f.xml", body, etag=False, last_modified=False)
    spec = spec_for(loopback.url("/f.xml"))
    assert poller(spec).published == 1
    second = poller(spec)
    assert (second.outcome, second.http_status) == ("unchanged", 200)
    loopback.serve(
        "/f.xml",
        rss(
            [
                {
                    "guid": "b",
                    "title": "B",
                    "description": "Another story entirely about something else now.",
                }
            ]
        ),
        etag=False,
        last_modified=False,
    )
    third = poller(spec)
    assert (third.outcome, third.new, third.published) == ("polled", 1, 1)


# ---------------------------------------------------------------------------- must show 3


def test_summary_only_entry_gets_its_article_page(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    loopback.serve(
        "/article/1", article_page(ARTICLE_PARAGRAPHS), content_type="text/html; charset=utf-8"
    )
    summary = "افتتاح مستشفى جديد في الرياض"
    loopback.serve(
        "/f.xml",
        rss(
            [
                {
                    "guid": "1",
                    "title": "مستشفى جديد",
                    "link": loopback.url("/article/1"),
                    "description": summary,
                }
            ]
        ),
    )
    report = poller(spec_for(loopback.url("/f.xml"), fetch_article="auto"))
    assert (report.published, report.articles, report.article_errors) == (1, 1, 0)
    [doc] = poller.stream("docs")
    for paragraph in ARTICLE_PARAGRAPHS:
        assert paragraph[:40] in doc["text"]
    assert "سياسة الخصوصية" not in doc["text"] and "الرئيسية" not in doc["text"]
    assert doc["text"].strip() != summary
    assert doc["url"] == loopback.url("/article/1")
    assert doc["title"] == "مستشفى جديد"


# Article pages in legacy encodings: one names it only in its HTTP Content-Type, one
# nowhere. Read as trafilatura guesses, they came out as "¶λλα" and "Rz¹d og³osi³".
LEGACY_ARTICLES = {
    "/greek": (
        "text/html; charset=ISO-8859-7",
        "iso8859_7",
        [
            "Η κυβέρνηση ανακοίνωσε σήμερα νέα μέτρα για την οικονομία της χώρας.",
            "Άλλα μέτρα θα ακολουθήσουν τον Ιανουάριο, σύμφωνα με τον υπουργό Οικονομικών.",
        ],
    ),
    "/polish": (
        "text/html",
        "cp1250",
        [
            "Rząd ogłosił w środę nowe środki wsparcia gospodarki w całym kraju.",
            "Według ministra finansów program będzie kosztował około dwóch miliardów złotych.",
        ],
    ),
}


def test_article_pages_in_legacy_encodings_are_read_in_them(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    items = []
    for path, (content_type, codec, paragraphs) in LEGACY_ARTICLES.items():
        body = "".join(f"<p>{p}</p>" for p in paragraphs)
        page = f"<html><head><title>t</title></head><body><article>{body}</article></body></html>"
        loopback.serve(path, page.encode(codec), content_type=content_type)
        items.append({"guid": path, "title": path, "link": loopback.url(path), "description": "x"})
    loopback.serve("/f.xml", rss(items))
    report = poller(spec_for(loopback.url("/f.xml"), fetch_article="auto"))
    assert (report.published, report.articles, report.article_errors) == (2, 2, 0)
    texts = {doc["url"]: doc["text"] for doc in poller.stream("docs")}
    for path, (_, _, paragraphs) in LEGACY_ARTICLES.items():
        assert texts[loopback.url(path)] == "\n".join(paragraphs)


def test_full_content_entries_are_not_fetched(loopback: LoopbackServer, make_poller: Any) -> None:
    poller = make_poller()
    content = "".join(f"<p>{p}</p>" for p in ARTICLE_PARAGRAPHS)
    loopback.serve(
        "/f.xml",
        rss(
            [
                {
                    "guid": "1",
                    "title": "t",
                    "link": loopback.url("/article/1"),
                    "description": "short",
                    "content": content,
                }
            ]
        ),
    )
    report = poller(spec_for(loopback.url("/f.xml"), fetch_article="auto"))
    assert (report.published, report.articles) == (1, 0)
    assert loopback.hits("/article/1") == 0
    [doc] = poller.stream("docs")
    assert len(doc["text"].splitlines()) == len(ARTICLE_PARAGRAPHS)


def test_fetch_article_never_and_always(loopback: LoopbackServer, make_poller: Any) -> None:
    poller = make_poller()
    loopback.serve("/article/1", article_page(ARTICLE_PARAGRAPHS), content_type="text/html")
    long_summary = " ".join(ARTICLE_PARAGRAPHS[:1]) * 8  # long enough to pass for full text
    body = rss(
        [
            {
                "guid": "1",
                "title": "t",
                "link": loopback.url("/article/1"),
                "description": long_summary,
            }
        ]
    )
    loopback.serve("/never.xml", body)
    never = poller(spec_for(loopback.url("/never.xml"), fetch_article="never"))
    assert (never.articles, loopback.hits("/article/1")) == (0, 0)
    loopback.serve("/auto.xml", body.replace(b">1</guid>", b">2</guid>"))
    auto = poller(spec_for(loopback.url("/auto.xml"), fetch_article="auto"))
    assert auto.articles == 0  # a long description is taken as the full text
    loopback.serve("/always.xml", body.replace(b">1</guid>", b">3</guid>"))
    always = poller(spec_for(loopback.url("/always.xml"), fetch_article="always"))
    assert (always.articles, loopback.hits("/article/1")) == (1, 1)


def test_article_failures_retry_then_fall_back_or_die(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    loopback.script("/down", [Scripted(503)])
    loopback.script("/gone", [Scripted(404)])
    loopback.script("/gone2", [Scripted(404)])
    items = [
        {
            "guid": "summary-and-down",
            "title": "a",
            "link": loopback.url("/down"),
            "description": "A short summary of the story here.",
        },
        {"guid": "title-only-gone", "title": "b", "link": loopback.url("/gone2")},
        {"guid": "bare-gone", "link": loopback.url("/gone")},
        {
            "guid": "summary-and-gone",
            "title": "c",
            "link": loopback.url("/gone"),
            "description": "Another summary of a different story.",
        },
    ]
    loopback.serve("/f.xml", rss(items))
    spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
    first = poller(spec)
    # 404 is final: the summary goes out, the title-only entry is dead; 503 waits.
    # The headline-only entry goes out as a headline; the bare one has nothing to publish.
    assert (first.published, first.dead, first.deferred) == (2, 1, 1), first.summary()
    [dead] = poller.stream("dead")
    assert (dead["input_ref"], dead["reason"]) == ("guid:bare-gone", "article_http_status")
    for attempt in range(2, ARTICLE_ATTEMPTS + 1):
        report = poller(spec)
        assert report.outcome == "polled"  # not a 304: entries were left for this poll
        if attempt < ARTICLE_ATTEMPTS:
            assert (report.new, report.deferred, report.published) == (1, 1, 0)
    assert (report.deferred, report.published) == (0, 1)  # gave up: the summary went out
    refs = sorted(d["input_ref"] for d in poller.stream("docs"))
    assert refs == ["guid:summary-and-down", "guid:summary-and-gone", "guid:title-only-gone"]
    final = poller(spec)
    assert final.outcome == "not_modified"


def serve_articles(loopback: LoopbackServer, count: int) -> None:
    """Article pages /a/0 .. /a/<count - 1>, each a distinct story."""
    for i in range(count):
        loopback.serve(
            f"/a/{i}",
            article_page([f"{p} رقم {i}" for p in ARTICLE_PARAGRAPHS], title=f"خبر {i}"),
            content_type="text/html",
        )


def test_article_budget_defers_the_rest(loopback: LoopbackServer, make_poller: Any) -> None:
    poller = make_poller(max_articles_per_poll=2)
    serve_articles(loopback, 5)
    loopback.serve(
        "/f.xml",
        rss(
            [{"guid": str(i), "title": f"t{i}", "link": loopback.url(f"/a/{i}")} for i in range(5)]
        ),
    )
    spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
    counts = []
    for _ in range(3):
        report = poller(spec)
        counts.append((report.new, report.articles, report.deferred))
    assert counts == [(5, 2, 3), (3, 2, 1), (1, 1, 0)]
    assert len(poller.stream("docs")) + len(poller.stream("duplicates")) == 5


def test_slow_article_pages_leave_the_rest_for_the_next_poll(
    loopback: LoopbackServer, make_poller: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Article fetches start only while one more (request deadline + extraction timeout)
    fits in half the soft time limit: here 4 s, 2 s each, every page dripping for its
    whole 1 s deadline. The poll stops fetching in time instead of hitting the limit and
    losing its work; the entries left wait for the next poll, which fetches the first."""
    monkeypatch.setenv("NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT", "8")
    monkeypatch.setenv("NEWSDEDUP_HTML__EXTRACT_TIMEOUT", "1")
    poller = make_poller(request_deadline=1.0)
    page = article_page(ARTICLE_PARAGRAPHS)
    for i in range(6):
        loopback.script(f"/a/{i}", [Scripted(200, page, drip=0.2, drip_headers=False)])
    items = [{"guid": str(i), "link": loopback.url(f"/a/{i}")} for i in range(6)]
    loopback.serve("/f.xml", rss(items))
    spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
    report = poller(spec)
    # Those fetched timed out (tried again later), the others were not started: all wait.
    assert 2 <= report.articles <= 3 and report.deferred == 6, report
    assert report.article_failures == {"article_timeout": report.articles}
    assert report.seconds < 5, report
    again = poller(spec)
    assert again.new == 6 and again.articles >= 2  # tried again, first ones first
    assert loopback.hits("/a/0") == 2 and loopback.hits("/a/5") == 0


def hold_host(client: redis.Redis, keys: Keys, server: LoopbackServer) -> RedisLock:
    """The server's host gate, taken as another worker's long request would hold it."""
    gate = RedisLock(client, keys.host_gate(gate_host(server.url("/"))))
    assert gate.acquire(120_000)
    return gate


def test_a_poll_steps_aside_for_a_busy_feed_host(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """Another request holds the feed's host: a poll that may step aside waits for it no
    longer than the politeness delay and a quick request, then raises HostBusy having
    asked nothing and recorded nothing. The last try (no stepping aside) waits until the
    request deadline and fails as `host_busy`, as any failed poll is recorded."""
    poller = make_poller(host_delay=0.5, request_deadline=4.0)
    loopback.serve("/f.xml", rss([{"guid": "1", "title": "t", "description": "نص الخبر"}]))
    spec = spec_for(loopback.url("/f.xml"))
    gate = hold_host(poller.runtime.client, poller.runtime.keys, loopback)
    started = time.monotonic()
    with pytest.raises(HostBusy, match="busy"):
        poller(spec, step_aside=True)
    waited = time.monotonic() - started
    assert host_patience(poller.runtime.settings) == 2.5
    assert 2.4 < waited < 3.5, waited
    key = feed_key(spec.url)
    client, keys = poller.runtime.client, poller.runtime.keys
    assert loopback.hits("/f.xml") == 0
    assert client.exists(keys.feed(key), keys.feed_lock(key)) == 0
    assert poller.stream("dead") == []

    started = time.monotonic()
    report = poller(spec)
    assert report.outcome == "failed" and "busy" in report.error, report
    assert 3.9 < time.monotonic() - started < 6
    assert [d["reason"] for d in poller.stream("dead")] == ["feed_host_busy"]
    gate.release()
    assert poller(spec, step_aside=True).published == 1


def test_article_pages_of_a_busy_host_wait_untried_for_the_next_poll(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """The article pages are on another host, busy with another request: the first page
    waits for it as long as a poll's request may, then it and every other page of that
    host are left for the next poll, with no try counted against them (none was asked
    for), and the feed's own host goes on. Once the host is free, all are fetched."""
    poller = make_poller(host_delay=0)
    articles = LoopbackServer()
    try:
        serve_articles(articles, 3)
        items = [{"guid": str(i), "link": articles.url(f"/a/{i}")} for i in range(3)]
        items.append({"guid": "3", "title": "t", "description": "نص كامل " * 200})
        loopback.serve("/f.xml", rss(items))
        spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
        gate = hold_host(poller.runtime.client, poller.runtime.keys, articles)
        report = poller(spec, step_aside=True)
        assert (report.new, report.published, report.articles, report.deferred) == (4, 1, 1, 3)
        assert report.article_failures == {"article_host_busy": 1}, report
        assert report.seconds < 4, report
        assert articles.hits("/a/0") == 0
        tries = poller.runtime.keys.feed_tries(feed_key(spec.url))
        assert poller.runtime.client.exists(tries) == 0
        gate.release()
        again = poller(spec, step_aside=True)
        assert (again.new, again.articles, again.article_errors, again.deferred) == (3, 3, 0, 0)
        assert again.published + again.exact + again.near == 3, again
        assert [articles.hits(f"/a/{i}") for i in range(3)] == [1, 1, 1]
    finally:
        articles.close()


def test_a_host_busy_for_longer_than_the_feeds_interval_fails_the_poll(
    loopback: LoopbackServer, redis_target: RedisTarget, prefix: str, tmp_path: Path
) -> None:
    """Through a real worker: while its host stays busy, a poll steps aside and tries again
    after growing pauses (the worker process free meanwhile), for up to half the feed's
    interval; its last try waits for the host until the request deadline, then the poll
    fails as `host_busy`. Once the host is free, the next poll goes through."""
    loopback.serve("/f.xml", rss([{"guid": "1", "title": "t", "description": "نص الخبر"}]))
    env = cli_env(
        redis_url=redis_target.url,
        prefix=prefix,
        NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
        NEWSDEDUP_FEEDS__HOST_DELAY="0",
        NEWSDEDUP_FEEDS__REQUEST_DEADLINE="4",
        NEWSDEDUP_FEEDS__DEFAULT_INTERVAL="20",
    )
    gate = hold_host(redis_target.client, Keys(prefix), loopback)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "busy", log, "INFO")
    try:
        started = time.monotonic()
        result = run_cli(["poll", "--wait", "--json", loopback.url("/f.xml")], env, timeout=120)
        took = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["outcome"] == "failed" and "busy" in report["error"], report
        # Stepping aside for 10 s, then the last try's 4 s wait (and the worker's start).
        assert 14 < took < 45, took
        tries = re.findall(r"busy for 2 s .*; trying again in (\d+) s", log.read_text())
        assert 2 <= len(tries) <= 5, log.read_text()
        assert loopback.hits("/f.xml") == 0
        gate.release()
        again = run_cli(["poll", "--wait", "--json", loopback.url("/f.xml")], env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["published"] == 1
    finally:
        stop_workers([worker])
    assert "Traceback" not in log.read_text()


# ---------------------------------------------------------------------------- bad feeds


def test_bozo_feed_with_entries_is_processed_and_counted(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    broken = rss(
        [
            {
                "guid": "x",
                "title": "Fish &amp; chips",
                "description": "Cod and chips with salt &amp; vinegar today.",
            }
        ]
    )
    broken = broken.replace(b"</channel></rss>", b"<unclosed></channel>")  # not well-formed
    loopback.serve("/f.xml", broken)
    report = poller(spec_for(loopback.url("/f.xml")))
    assert report.outcome == "polled" and report.bozo
    assert report.published == 1


@pytest.mark.shared
def test_illformed_samples_never_crash_a_poll(loopback: LoopbackServer, make_poller: Any) -> None:
    poller = make_poller()
    folder = shared_path("feeds", "feedparser-samples", "illformed")
    for i, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        loopback.serve(f"/ill/{i}", path.read_bytes(), content_type="application/xml")
        report = poller(spec_for(loopback.url(f"/ill/{i}")))
        assert report.outcome in ("polled", "failed"), report.summary()
        assert report.published + report.exact + report.near + report.dead == report.new + (
            1 if report.outcome == "failed" else 0
        )


def test_unusable_feed_is_dead_once(loopback: LoopbackServer, make_poller: Any) -> None:
    poller = make_poller()
    loopback.serve(
        "/f.xml",
        b"<html><body><p>Not a feed at all</p></body></html>",
        content_type="text/html",
        etag=False,
        last_modified=False,
    )
    spec = spec_for(loopback.url("/f.xml"))
    first = poller(spec)
    assert first.outcome == "failed" and "not a usable feed" in first.error
    [dead] = poller.stream("dead")
    assert dead["reason"] == "feed_unparseable" and dead["id"] == spec.url
    poller(spec)  # the same broken document again: counted as a failure, not dead again
    assert len(poller.stream("dead")) == 1


def test_credentials_in_feed_and_article_urls_are_redacted(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A feed URL with a password (from the user's config) and an article link with one:
    the password reaches no dead entry, report or feed status."""
    poller = make_poller()

    def with_secret(path: str, userinfo: str) -> str:
        return loopback.url(path).replace("http://", f"http://{userinfo}@", 1)

    loopback.script("/missing.xml", [Scripted(404)])
    broken = spec_for(with_secret("/missing.xml", "alice:s3cretpw"))
    report = poller(broken)
    assert report.outcome == "failed"
    loopback.script("/gone", [Scripted(404)])
    loopback.serve("/f.xml", rss([{"link": with_secret("/gone", "dave:0thersecret")}]))
    feed = spec_for(with_secret("/f.xml", "t0kensecret"), fetch_article="auto")
    assert poller(feed).dead == 1
    dead = poller.stream("dead")
    assert [d["reason"] for d in dead] == ["feed_http_status", "article_http_status"]
    statuses = feed_statuses(poller.runtime.client, poller.runtime.keys, [broken, feed])
    shown = json.dumps([dead, report.to_json(), report.summary(), [s.url for s in statuses]])
    for secret in ("s3cretpw", "0thersecret", "t0kensecret"):
        assert secret not in shown, shown
    assert dead[0]["id"] == broken.url.replace("s3cretpw", "***")
    assert dead[1]["id"] == with_secret("/gone", "dave:***")
    assert statuses[1].url == with_secret("/f.xml", "***")


def test_slow_feed_times_out_is_retried_then_dead(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller(read_timeout=0.3, retries=2)
    loopback.script("/slow.xml", [Scripted(200, b"<rss/>", delay=2.0)])
    spec = spec_for(loopback.url("/slow.xml"))
    report = poller(spec)
    assert report.outcome == "failed" and "timed out" in report.error
    assert loopback.hits("/slow.xml") == 3  # 1 + retries
    [dead] = poller.stream("dead")
    assert dead["reason"] == "feed_timeout"
    poller(spec)
    assert len(poller.stream("dead")) == 1  # one dead entry per failure streak
    [status] = feed_statuses(poller.runtime.client, poller.runtime.keys, [spec])
    assert (status.failures, status.failures_in_row) == (2, 2)
    loopback.script(
        "/slow.xml",
        [
            Scripted(
                200,
                rss(
                    [
                        {
                            "guid": "1",
                            "title": "t",
                            "description": "Back again with a real story to tell.",
                        }
                    ]
                ),
            )
        ],
    )
    assert poller(spec).published == 1
    [status] = feed_statuses(poller.runtime.client, poller.runtime.keys, [spec])
    assert (status.failures, status.failures_in_row, status.last_outcome) == (2, 0, "polled")


def test_500_then_200_is_retried_within_one_poll(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    body = rss(
        [{"guid": "1", "title": "t", "description": "Recovered after one server error today."}]
    )
    loopback.script("/f.xml", [Scripted(500), Scripted(200, body)])
    report = poller(spec_for(loopback.url("/f.xml")))
    assert (report.outcome, report.published, loopback.hits("/f.xml")) == ("polled", 1, 2)


THREE_STORIES = [
    "The city council approved next year's budget after a six-hour session on Tuesday.\n"
    "Spending on roads and bridges rises by a fifth, while two libraries will close.",
    "A winter storm closed schools across the northern districts for a second day.\n"
    "Forecasters expect another thirty centimetres of snow before the weekend.",
    "The national museum reopened its ancient coins gallery after a long renovation.\n"
    "Visitors can now handle replicas and follow the minting process step by step.",
]


def _three_stories() -> tuple[list[dict[str, str]], bytes]:
    items = [
        {"guid": f"story-{n}", "title": f"Story {n}", "description": text}
        for n, text in enumerate(THREE_STORIES, 1)
    ]
    return items, gzip.compress(rss(items))


def _cut_in_half(whole: bytes) -> bytes:
    """The first half of a gzip stream: no end of stream, no CRC trailer. Its XML, read
    as it was, is an ill-formed feed whose entries are the stories cut short."""
    cut = whole[: len(whole) // 2]
    partial = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    assert parse_feed(partial, {"content-type": "application/rss+xml"}, "").entries
    return cut


def test_a_cut_gzip_body_then_a_whole_one_publishes_each_entry_once_whole(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """The stream is cut off on the first request (Content-Length matching what was
    sent) and whole on the next: the poll retries and publishes the whole stories, and
    the next poll has no update to publish (the cut text was never taken for a version)."""
    poller = make_poller()
    items, whole = _three_stories()
    gzipped = {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
    loopback.script(
        "/f.xml", [Scripted(200, _cut_in_half(whole), gzipped), Scripted(200, whole, gzipped)]
    )
    spec = spec_for(loopback.url("/f.xml"))
    first = poller(spec)
    assert (first.outcome, first.published, first.bozo) == ("polled", 3, ""), first.summary()
    assert loopback.hits("/f.xml") == 2
    second = poller(spec)  # the whole body again
    assert (second.outcome, second.new, second.published) == ("unchanged", 0, 0)
    docs = poller.stream("docs")
    assert [d["title"] for d in docs] == ["Story 1", "Story 2", "Story 3"]
    assert [d["text"] for d in docs] == [item["description"] for item in items]
    assert not [d for d in docs if d.get("update_of")]
    assert poller.stream("dead") == []


def test_a_gzip_body_cut_off_every_time_fails_the_poll_and_publishes_nothing(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    items, whole = _three_stories()
    gzipped = {"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
    loopback.script("/f.xml", [Scripted(200, _cut_in_half(whole), gzipped)])
    spec = spec_for(loopback.url("/f.xml"))
    report = poller(spec)
    assert report.outcome == "failed" and report.published == 0
    assert "body cut off" in report.error and "\n" not in report.error
    assert loopback.hits("/f.xml") == 2  # 1 + retries
    [dead] = poller.stream("dead")
    assert (dead["reason"], dead["id"]) == ("feed_truncated", spec.url)
    assert poller.stream("docs") == []
    loopback.script("/f.xml", [Scripted(200, whole, gzipped)])
    assert poller(spec).published == 3
    docs = poller.stream("docs")
    assert [d["text"] for d in docs] == [item["description"] for item in items]
    assert not [d for d in docs if d.get("update_of")]


def test_an_article_page_cut_off_is_a_transient_article_failure(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    page = gzip.compress(article_page(ARTICLE_PARAGRAPHS))
    html = {"Content-Encoding": "gzip", "Content-Type": "text/html; charset=utf-8"}
    loopback.script("/article/1", [Scripted(200, page[: len(page) // 2], html)])
    item = {
        "guid": "1",
        "title": "مستشفى جديد",
        "link": loopback.url("/article/1"),
        "description": "افتتاح مستشفى جديد في الرياض",
    }
    loopback.serve("/f.xml", rss([item]))
    spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
    first = poller(spec)
    assert first.article_failures == {"article_truncated": 1}, first.summary()
    assert (first.published, first.deferred) == (0, 1)  # tried again next poll
    loopback.script("/article/1", [Scripted(200, page, html)])
    second = poller(spec)
    assert (second.published, second.article_errors) == (1, 0)
    [doc] = poller.stream("docs")
    assert all(paragraph[:40] in doc["text"] for paragraph in ARTICLE_PARAGRAPHS)


def test_private_addresses_are_refused_unless_allowed(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller(allow_private=False)
    loopback.serve(
        "/f.xml",
        rss([{"guid": "1", "title": "t", "description": "Should never be fetched from here."}]),
    )
    report = poller(spec_for(loopback.url("/f.xml")))
    assert report.outcome == "failed", report.summary()
    assert loopback.hits("/f.xml") == 0
    [dead] = poller.stream("dead")
    assert dead["reason"] == "feed_blocked_address"


# ---------------------------------------------------------------------------- exactly once


def test_redelivered_poll_publishes_nothing_twice(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A poll whose worker died after publishing (before recording the feed's status) is
    redelivered with the same task id: it takes its own lock back and re-publishes nothing."""
    poller = make_poller()
    items = [
        {
            "guid": str(i),
            "title": f"t{i}",
            "description": f"Story number {i} about distinct things {i * 7}.",
        }
        for i in range(4)
    ]
    loopback.serve("/f.xml", rss(items))
    spec = spec_for(loopback.url("/f.xml"))
    client, keys = poller.runtime.client, poller.runtime.keys
    key = feed_key(spec.url)
    client.set(keys.feed_lock(key), "crashed-task", px=600_000)  # the dead worker's lock
    assert poller(spec, task_id="other-task").outcome == "locked"
    first = poller(spec, task_id="crashed-task")  # redelivery: same id, takes the lock back
    assert first.published == 4
    assert client.get(keys.feed_lock(key)) is None  # released
    client.delete(keys.feed(key))  # as if it crashed before recording the status
    again = poller(spec, task_id="crashed-task")
    assert (again.outcome, again.new, again.published) == ("polled", 0, 0)
    assert len(poller.stream("docs")) == 4
    assert client.zcard(keys.job_done(feed_job(key))) == 4


def test_entries_seen_are_forgotten_after_seen_days(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller(seen_days=1)
    loopback.serve(
        "/f.xml",
        rss(
            [
                {
                    "guid": "1",
                    "title": "t",
                    "description": "Something happened somewhere today again.",
                }
            ]
        ),
    )
    spec = spec_for(loopback.url("/f.xml"))
    poller(spec)
    client, keys = poller.runtime.client, poller.runtime.keys
    done = keys.job_done(feed_job(feed_key(spec.url)))
    [first_key] = client.zrange(done, 0, -1)
    client.zadd(done, {"guid:ancient": time.time() - 3 * 86400})
    loopback.serve(
        "/f.xml",
        rss(
            [{"guid": "2", "title": "u", "description": "Something else happened elsewhere today."}]
        ),
    )
    poller(spec)
    assert client.zscore(done, "guid:ancient") is None
    assert client.zscore(done, first_key) is not None
    assert client.zcard(done) == 2


# ---------------------------------------------------------------------------- config and beat


def test_per_feed_boilerplate_rules_apply_to_its_source(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEWSDEDUP_CONFIG", raising=False)
    feeds_toml = """
[[feed]]
name = "desk"
url = "http://127.0.0.1:9/feed.xml"
source = "desk"
[feed.boilerplate]
boilerplate_lines = ["Subscribe to the Desk daily briefing"]
"""
    settings = load_settings(write_config(tmp_path, prefix, feeds_toml))
    feeds, rules = load_feeds_and_rules(settings)
    assert [f.name for f in feeds] == ["desk"]
    assert rules.for_source("desk").pinned
    assert not rules.for_source("other").pinned
    bad = write_config(tmp_path, prefix, feeds_toml.replace("boilerplate_lines", "bogus_key"))
    with pytest.raises(ConfigError, match=r"feeds\.toml"):
        load_feeds_and_rules(load_settings(bad))


def test_schedule_entries_from_feeds() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    a = spec_for("http://a.example/feed", interval=600)
    b = FeedSpec.from_json(
        {**spec_for("http://b.example/feed").to_json(), "name": "b", "interval": 120}
    )
    off = FeedSpec.from_json(
        {**spec_for("http://c.example/feed").to_json(), "name": "off", "enabled": False}
    )
    polled = {feed_key(b.url): (now - timedelta(seconds=30)).timestamp()}
    entries = schedule_entries((a, b, off), polled, now)
    assert set(entries) == {"poll test", "poll b"}
    assert entries["poll test"]["last_run_at"] == now - timedelta(seconds=600)  # due at once
    assert entries["poll b"]["last_run_at"] == now - timedelta(seconds=30)
    assert entries["poll b"]["options"] == {"queue": "fetch", "expires": 120}
    assert entries["poll b"]["args"][0]["url"] == "http://b.example/feed"


@pytest.mark.slow
def test_run_keeps_polling_and_feeds_shows_status(loopback: LoopbackServer, tmp_path: Path) -> None:
    """Must show 4: `newsdedup run` (worker + beat) polls the configured feeds until
    stopped; `newsdedup feeds` shows their status; a second beat refuses to start."""
    loopback.serve(
        "/one.xml",
        rss(
            [
                {
                    "guid": "1",
                    "title": "t",
                    "description": "The first feed's first story is here today.",
                }
            ]
        ),
    )
    loopback.serve(
        "/two.xml",
        rss(
            [
                {
                    "guid": "1",
                    "title": "t",
                    "description": "The second feed's own first story is here.",
                }
            ]
        ),
    )
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(
        f"""
[[feed]]
name = "one"
url = "{loopback.url("/one.xml")}"
interval = 10
fetch_article = "never"

[[feed]]
name = "two"
url = "{loopback.url("/two.xml")}"
interval = 10
fetch_article = "never"
""",
        encoding="utf-8",
    )
    env = cli_env(
        data_dir=tmp_path / "data",
        NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
        NEWSDEDUP_FEEDS__HOST_DELAY="0",
        NEWSDEDUP_FEEDS__CONFIG=str(feeds_file),
    )
    args = ["run", "--concurrency", "2", "--loglevel", "INFO"]
    proc = start_cli(args, env, tmp_path / "run.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if loopback.hits("/one.xml") >= 3 and loopback.hits("/two.xml") >= 3:
                break
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            if loopback.hits("/one.xml") == 1:
                loopback.serve(
                    "/one.xml",
                    rss(
                        [
                            {
                                "guid": "2",
                                "title": "u",
                                "description": "A second story arrives in feed one later.",
                            }
                        ]
                    ),
                )
            time.sleep(0.5)
        assert loopback.hits("/one.xml") >= 3 and loopback.hits("/two.xml") >= 3, (
            tmp_path / "run.log"
        ).read_text()
        status = run_cli(["feeds", "--json"], env)
        assert status.returncode == 0, status.stderr
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == {"one", "two"}
        assert all(row["polls"] >= 2 and row["next_poll"] for row in rows.values())
        assert rows["one"]["published"] == 2 and rows["two"]["published"] == 1
        table = run_cli(["feeds"], {**env, "COLUMNS": "200"})
        assert table.returncode == 0 and "one" in table.stdout and "last poll" in table.stdout
        second = run_cli(["beat"], env, timeout=60)
        assert second.returncode != 0
        assert "another beat is running" in (second.stderr + second.stdout)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # The embedded server stops with the command (nothing is left running in the data dir).
    data_dir = str((tmp_path / "data").resolve())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _servers_in(data_dir):
        time.sleep(0.5)
    assert not _servers_in(data_dir)


def _servers_in(data_dir: str) -> list[int]:
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            if SERVER_PROGRAM in (proc_dir / "cmdline").read_text(errors="replace") and (
                str(Path(proc_dir / "cwd").resolve()) == data_dir
            ):
                pids.append(int(proc_dir.name))
        except OSError:
            continue
    return pids


@pytest.mark.shared
def test_real_saved_feeds_poll_without_loss(loopback: LoopbackServer, make_poller: Any) -> None:
    """Every real saved feed served over HTTP: each new entry is accounted for once
    (docs, duplicates or dead), and a second poll is a 304."""
    poller = make_poller()
    folder = shared_path("feeds", "real-samples")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "LICENSE")
    assert len(files) > 30
    accounted = 0
    for i, path in enumerate(files):
        loopback.serve(f"/real/{i}", path.read_bytes(), content_type="application/xml")
        spec = spec_for(loopback.url(f"/real/{i}"))
        report = poller(spec)
        assert report.outcome in ("polled", "failed"), (path.name, report.summary())
        if report.outcome == "polled":
            assert report.published + report.exact + report.near + report.dead == report.new
            accounted += report.new
            assert poller(spec).outcome == "not_modified", path.name
        else:
            assert report.dead == 1  # the unusable document itself, once
            accounted += 1
    counted = sum(len(poller.stream(name)) for name in ("docs", "duplicates", "dead"))
    assert counted == accounted > 100


def test_encoding_from_http_header_reaches_the_published_text(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """An Arabic feed in windows-1256 that declares its charset only in Content-Type."""
    poller = make_poller()
    title = "وزير الخارجية يلتقي نظيره"
    text = "التقى وزير الخارجية اليوم نظيره في العاصمة لبحث العلاقات الثنائية بين البلدين."
    feed = (
        "<rss version='2.0'><channel><title>قناة</title><link>http://example.org/</link>"
        f"<description>d</description><item><guid isPermaLink='false'>1</guid>"
        f"<title>{title}</title><description>{text}</description></item></channel></rss>"
    ).encode("windows-1256")
    loopback.serve("/f.xml", feed, content_type="application/rss+xml; charset=windows-1256")
    report = poller(spec_for(loopback.url("/f.xml")))
    assert report.published == 1, report.summary()
    [doc] = poller.stream("docs")
    assert (doc["title"], doc["text"]) == (title, text)


@pytest.mark.shared
def test_an_entry_changed_between_captures_is_an_update(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """Real captures of Al Jazeera's feed: between two captures some headlines were
    edited. Polled in turn, each edited entry comes out as an update of the version
    published before (`update_of`, `version` 2, then 3 for an entry edited twice), and the
    entries that did not change are nothing new."""
    poller = make_poller()
    url = loopback.url("/aljazeera.xml")
    spec = spec_for(url)
    files = snapshot_files("aljazeera")
    seen: dict[str, str] = {}  # key -> revision as last polled
    updates_expected = 0
    for path in files:
        entries = parse_feed(path.read_bytes(), {"content-type": "application/rss+xml"}, url)
        changed = [e for e in entries.entries if e.key in seen and seen[e.key] != e.revision]
        fresh = [e for e in entries.entries if e.key not in seen]
        loopback.serve("/aljazeera.xml", path.read_bytes())
        report = poller(spec)
        # What did not change is not processed again.
        assert report.new == len(changed) + len(fresh), report.summary()
        updates_expected += len(changed)
        seen.update({e.key: e.revision for e in entries.entries})
    updates = [f for f in poller.stream("docs") if f.get("update_of")]
    assert updates_expected >= 1 and len(updates) == updates_expected
    versions: dict[str, int] = {}
    for fields in updates:  # each edit of an entry replaces the one before
        version = versions[fields["input_ref"]] = versions.get(fields["input_ref"], 1) + 1
        own = fields["input_id"]
        assert (fields["version"], fields["id"]) == (str(version), f"{own}~{version}")
        assert fields["update_of"] == (own if version == 2 else f"{own}~{version - 1}")


# ------------------------------------------------------------------ entry identity

# Three unrelated short stories: no two are near duplicates of each other.
STORIES = [
    "أعلنت وزارة الصحة افتتاح مستشفى جديد في مدينة الرياض بسعة خمسمئة سرير ضمن خطة "
    "لتوسيع الخدمات الطبية في المنطقة الوسطى.\nوقال المتحدث إن المستشفى يضم مركزا للطوارئ.",
    "فاز المنتخب الوطني لكرة القدم على نظيره في المباراة الودية التي أقيمت مساء أمس على "
    "ملعب المدينة الرياضية.\nوسجل المهاجم هدفين في الشوط الثاني أمام جمهور غفير.",
    "ارتفعت أسعار النفط في تعاملات الأسبوع الماضي بعد قرار المنتجين خفض الإنتاج لدعم "
    "السوق.\nوتوقع محللون استمرار الصعود مع زيادة الطلب في فصل الشتاء.",
]
EDITED = STORIES[0] + "\nوأضاف أن التشغيل يبدأ مطلع العام المقبل بعد اكتمال التجهيزات الطبية."


def _published(poller: Any) -> list[dict[str, str]]:
    return poller.stream("docs")


def test_unrelated_entries_sharing_a_guid_in_two_feeds_are_both_published(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A guid that is no URL ("1") is unique within its feed only: two outlets' entries
    "1" are two articles, even where the second outlet keeps first versions only."""
    poller = make_poller()
    for name, story in (("x", STORIES[0]), ("y", STORIES[1])):
        loopback.serve(f"/{name}.xml", rss([{"guid": "1", "title": name, "description": story}]))
    poller(spec_for(loopback.url("/x.xml"), name="fx", source="outletx"))
    poller(spec_for(loopback.url("/y.xml"), name="fy", source="outlety", dedup={"updates": False}))
    docs = _published(poller)
    assert sorted(d["title"] for d in docs) == ["x", "y"]
    assert not [d for d in docs if d.get("update_of")]
    assert poller.stream("duplicates") == []


def test_entries_sharing_one_link_are_distinct_articles(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A live blog's or a section page's entries: their own guids, one link."""
    poller = make_poller()
    link = "https://news.example.com/live"
    items = [
        {"guid": f"live-{n}", "title": f"t{n}", "link": link, "description": story}
        for n, story in enumerate(STORIES)
    ]
    loopback.serve("/f.xml", rss(items))
    poller(spec_for(loopback.url("/f.xml")))
    docs = _published(poller)
    assert sorted(d["title"] for d in docs) == ["t0", "t1", "t2"]
    assert not [d for d in docs if d.get("update_of")]


def test_an_edit_under_a_renamed_link_is_an_update(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """The guid names the article; its link may be renamed with the edit."""
    poller = make_poller()
    spec = spec_for(loopback.url("/f.xml"))
    first = {"guid": "k1", "title": "first", "link": "https://news.example.com/s/one"}
    loopback.serve("/f.xml", rss([{**first, "description": STORIES[0]}]))
    poller(spec)
    renamed = {"guid": "k1", "title": "second", "link": "https://news.example.com/s/one-renamed"}
    loopback.serve("/f.xml", rss([{**renamed, "description": EDITED}]))
    poller(spec)
    docs = _published(poller)
    assert [(d["title"], d.get("update_of"), d.get("version")) for d in docs] == [
        ("first", None, None),
        ("second", docs[0]["id"], "2"),
    ]


def test_an_earlier_version_again_is_no_update(loopback: LoopbackServer, make_poller: Any) -> None:
    """Feed A publishes a story and then its edit; feed B, polled after, still carries the
    first version, then catches up. Both of B's are exact duplicates: two versions
    published in all, the newest last."""
    poller = make_poller()
    link = "https://news.example.com/story"
    versions = [
        [{"title": "story", "link": link, "description": STORIES[0]}],
        [{"title": "story", "link": link, "description": EDITED}],
    ]
    a, b = spec_for(loopback.url("/a.xml"), name="a"), spec_for(loopback.url("/b.xml"), name="b")
    for spec, path, items in ((a, "/a.xml", versions[0]), (a, "/a.xml", versions[1])):
        loopback.serve(path, rss(items))
        poller(spec)
    for items in versions:
        loopback.serve("/b.xml", rss(items))
        poller(b)
    docs = _published(poller)
    assert [d.get("version") for d in docs] == [None, "2"]
    assert [(d["kind"], d["match"]) for d in poller.stream("duplicates")] == [
        ("exact", "content"),
        ("exact", "url"),
    ]


def test_a_permalink_guid_with_changing_tracking_parameters_is_one_entry(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    poller = make_poller()
    spec = spec_for(loopback.url("/f.xml"))
    news = []
    for campaign in ("a", "b", "c"):
        guid = f"https://news.example.com/p/1?utm_campaign={campaign}&id=7"
        loopback.serve("/f.xml", rss([{"guid": guid, "title": "t", "description": STORIES[2]}]))
        news.append(poller(spec).new)
    assert news == [1, 0, 0]
    assert len(_published(poller)) == 1


def test_a_guid_given_to_entries_of_two_links_names_neither(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """One document gives the guid "dup" to two different articles: both are published,
    each known by its link."""
    poller = make_poller()
    items = [
        {"guid": "dup", "title": f"t{n}", "link": f"https://news.example.com/{n}", "description": s}
        for n, s in enumerate(STORIES[:2])
    ]
    loopback.serve("/f.xml", rss(items))
    report = poller(spec_for(loopback.url("/f.xml")))
    assert report.new == 2
    assert sorted(d["title"] for d in _published(poller)) == ["t0", "t1"]


def test_entries_left_for_the_next_poll_are_not_lost_when_the_feed_moves_on(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """Five summary-only entries, article pages for two per poll; before the next poll the
    feed lists only a newer entry. The three left over are still taken, first, with the
    newer one after them: every entry accounted for once."""
    poller = make_poller(max_articles_per_poll=2)
    serve_articles(loopback, 6)
    first = [{"guid": str(i), "title": f"t{i}", "link": loopback.url(f"/a/{i}")} for i in range(5)]
    loopback.serve("/f.xml", rss(first))
    spec = spec_for(loopback.url("/f.xml"), fetch_article="auto")
    report = poller(spec)
    assert (report.new, report.articles, report.deferred) == (5, 2, 3)
    loopback.serve("/f.xml", rss([{"guid": "5", "title": "t5", "link": loopback.url("/a/5")}]))
    counts = []
    for _ in range(3):
        report = poller(spec)
        counts.append((report.new, report.articles, report.deferred))
    assert counts == [(4, 2, 2), (2, 2, 0), (0, 0, 0)]
    accounted = [f["input_ref"] for f in poller.stream("docs") + poller.stream("duplicates")]
    assert sorted(accounted) == [f"guid:{i}" for i in range(6)]


def test_empty_items_are_said_not_silently_dropped(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """An <item> with no guid, no link and no text has nothing to process or to name it
    by; the poll says how many it skipped."""
    poller = make_poller()
    body = rss([{"guid": "1", "title": "t", "description": STORIES[0]}])
    body = body.replace(b"</channel>", b"<item></item><item><title></title></item></channel>")
    loopback.serve("/f.xml", body)
    report = poller(spec_for(loopback.url("/f.xml")))
    assert (report.entries, report.published, report.empty) == (1, 1, 2)
    assert report.summary().endswith(
        "1 published, 0 exact duplicates, 0 near duplicates, 0 dead, 2 empty items skipped"
    )


def test_an_item_listed_again_under_the_same_guid_is_said(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A feed that lists one guid twice, the second time with another text: the first is
    the entry, and the poll says how many items it did not process."""
    poller = make_poller()
    items = [
        {"guid": "1", "title": "t", "description": STORIES[0]},
        {"guid": "1", "title": "t", "description": STORIES[1]},
    ]
    loopback.serve("/f.xml", rss(items))
    report = poller(spec_for(loopback.url("/f.xml")))
    assert (report.entries, report.published, report.repeated) == (1, 1, 1)
    assert report.summary().endswith(
        "0 dead, 1 item listed again under an earlier item's guid or link (the first kept)"
    )


def test_an_unreadable_deferred_entry_does_not_stop_the_feed(
    loopback: LoopbackServer, make_poller: Any
) -> None:
    """A deferred entry stored by another version (other fields) or damaged: the poll
    drops it, says so in the log, and goes on with the feed."""
    poller = make_poller()
    spec = spec_for(loopback.url("/f.xml"))
    deferred = poller.runtime.keys.feed_deferred(feed_key(spec.url))
    poller.runtime.client.hset(
        deferred, mapping={"guid:old": '{"key": "guid:old", "colour": "red"}', "guid:bad": "{"}
    )
    loopback.serve("/f.xml", rss([{"guid": "1", "title": "t", "description": STORIES[1]}]))
    report = poller(spec)
    assert (report.outcome, report.published) == ("polled", 1)
    assert poller.runtime.client.hlen(deferred) == 0
