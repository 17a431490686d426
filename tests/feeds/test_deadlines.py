"""Issue 15, items 7 and 9, from the outside: the real CLI on the embedded Redis, real
Celery worker processes, a real HTTP server on loopback and real files.

7. A feed or article server that sends one byte a second is stopped by the request
   deadline: the poll ends in seconds, as `feed_timeout` / `article_timeout`, and the
   feed's status counts the failure.
9. A page that would hold trafilatura for minutes (a million sibling paragraphs; one
   element with 40,000 attributes) goes to `dead` with its reason while the rest of its
   batch is published, in seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import cli_env, run_cli
from support.loopback import LoopbackServer, Scripted
from support.pages import ARTICLE_PAGE, ARTICLE_PARAGRAPHS, ATTRIBUTES, SIBLINGS, article_page, rss


def _lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _stream(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    done = run_cli(["tail", "--stream", name, "--from-start", "--json"], env)
    assert done.returncode == 0, done.stderr
    return _lines(done.stdout)


def _feed_status(env: dict[str, str], url: str) -> dict[str, Any]:
    done = run_cli(["feeds", "--json"], env)
    assert done.returncode == 0, done.stderr
    [row] = [s for s in json.loads(done.stdout) if s["url"] == url]
    return dict(row)


def _poll_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(
        data_dir=tmp_path / "data",
        NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
        NEWSDEDUP_FEEDS__HOST_DELAY="0",
        **extra,
    )


def _poll(env: dict[str, str], url: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    done = run_cli(["poll", url, "--json"], env, timeout=180)
    seconds = time.monotonic() - started
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return done.returncode, report, seconds


# ---------------------------------------------------------------------------- item 7


def test_dripping_feed_fails_the_poll_at_the_deadline(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    body = rss([{"guid": "1", "title": "t", "description": "A story that never arrives."}])
    loopback.script("/tarpit.xml", [Scripted(200, body, drip=1.0)])  # 1 byte a second
    url = loopback.url("/tarpit.xml")
    env = _poll_env(tmp_path, NEWSDEDUP_FEEDS__REQUEST_DEADLINE="3")

    code, report, seconds = _poll(env, url)
    assert code == 1
    assert report["outcome"] == "failed" and "3 s request deadline" in report["error"]
    # The poll itself took the deadline, not the 540 s soft time limit; the command adds
    # its own start-up (the embedded server and a worker).
    assert report["seconds"] < 5, report
    assert seconds < 60
    assert loopback.hits("/tarpit.xml") == 1  # no retry could have been in time
    status = _feed_status(env, url)
    assert (status["last_outcome"], status["failures"], status["failures_in_row"]) == (
        "failed",
        1,
        1,
    )
    assert "deadline" in status["last_error"]
    [dead] = _stream(env, "dead")
    assert (dead["reason"], dead["input_ref"]) == ("feed_timeout", dead["input_ref"])
    assert "deadline" in dead["error"]

    # Still dripping: counted again, not dead-lettered again (one per failure streak).
    code, report, _ = _poll(env, url)
    assert code == 1 and report["outcome"] == "failed"
    status = _feed_status(env, url)
    assert (status["failures"], status["failures_in_row"]) == (2, 2)
    assert len(_stream(env, "dead")) == 1


def test_dripping_article_pages_time_out_then_fall_back_or_die(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    """A timed-out article page is retried at the next two polls like any timeout; then
    the entry goes out with its summary, or to `dead` as `article_timeout` without one.
    Every poll's report names the reason."""
    page = article_page(ARTICLE_PARAGRAPHS)
    loopback.script("/a/1", [Scripted(200, page, {"Content-Type": "text/html"}, drip=1.0)])
    loopback.script("/a/2", [Scripted(200, page, {"Content-Type": "text/html"}, drip=1.0)])
    items = [
        {"guid": "bare", "link": loopback.url("/a/1")},
        {
            "guid": "with-summary",
            "title": "Summary only",
            "link": loopback.url("/a/2"),
            "description": "A short summary of the story, all the feed carries.",
        },
    ]
    loopback.serve("/f.xml", rss(items))
    url = loopback.url("/f.xml")
    env = _poll_env(tmp_path, NEWSDEDUP_FEEDS__REQUEST_DEADLINE="2")

    reports = []
    for _ in range(3):
        code, report, _seconds = _poll(env, url)
        assert code == 0, report
        reports.append(report)
    for report in reports:
        assert report["articles"] == 2 and report["article_failures"] == {"article_timeout": 2}
        assert report["seconds"] < 8, report  # two pages of 2 s, not two of minutes
    assert [r["deferred"] for r in reports] == [2, 2, 0]
    assert loopback.hits("/a/1") == 3 and loopback.hits("/a/2") == 3
    [dead] = _stream(env, "dead")
    assert (dead["input_ref"], dead["reason"]) == ("guid:bare", "article_timeout")
    assert "deadline" in dead["error"]
    [doc] = _stream(env, "docs")
    assert doc["input_ref"] == "guid:with-summary" and "short summary" in doc["text"]
    status = _feed_status(env, url)
    assert status["last_outcome"] == "polled" and status["failures"] == 0


# ---------------------------------------------------------------------------- item 9


def test_backfill_with_hostile_html_finishes_in_seconds(tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    (folder / "siblings.html").write_text(SIBLINGS, encoding="utf-8")  # 8 MB, 1M elements
    (folder / "attributes.html").write_text(ATTRIBUTES, encoding="utf-8")  # ~45 s to parse
    (folder / "normal0.html").write_bytes(article_page(ARTICLE_PARAGRAPHS))
    (folder / "normal1.html").write_text(ARTICLE_PAGE, encoding="utf-8")  # another story
    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_HTML__EXTRACT_TIMEOUT="3")

    started = time.monotonic()
    done = run_cli(["backfill", str(folder)], env, timeout=300)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert "2 published" in summary and "2 dead" in summary, summary
    print(f"backfill of 4 pages, 2 hostile: {seconds:.1f} s")
    # One batch, no hard kill, no careful rerun: the command's own start-up plus a few
    # seconds, where the unbounded pages would have taken minutes each.
    assert seconds < 45, seconds

    dead = {d["input_ref"]: d for d in _stream(env, "dead")}
    assert dead["siblings.html"]["reason"] == "html_too_complex"
    assert "html.max_elements" in dead["siblings.html"]["error"]
    assert dead["attributes.html"]["reason"] == "extract_timeout"
    assert "html.extract_timeout" in dead["attributes.html"]["error"]
    docs = _stream(env, "docs")
    assert sorted(d["input_ref"] for d in docs) == ["normal0.html", "normal1.html"]
    assert ARTICLE_PARAGRAPHS[0] in docs[0]["text"] + docs[1]["text"]


def test_poll_reads_article_pages_through_the_bounded_extraction(
    loopback: LoopbackServer, tmp_path: Path
) -> None:
    html = {"Content-Type": "text/html"}
    loopback.script("/a/siblings", [Scripted(200, SIBLINGS.encode(), html)])
    loopback.script("/a/attributes", [Scripted(200, ATTRIBUTES.encode(), html)])
    loopback.serve("/a/good", article_page(ARTICLE_PARAGRAPHS), content_type="text/html")
    items = [
        {"guid": "siblings", "link": loopback.url("/a/siblings")},
        {"guid": "attributes", "link": loopback.url("/a/attributes")},
        {"guid": "good", "link": loopback.url("/a/good")},
    ]
    loopback.serve("/f.xml", rss(items))
    env = _poll_env(tmp_path, NEWSDEDUP_HTML__EXTRACT_TIMEOUT="3")

    code, report, _seconds = _poll(env, loopback.url("/f.xml"))
    assert code == 0, report
    assert (report["published"], report["dead"], report["deferred"]) == (1, 2, 0), report
    assert report["article_failures"] == {
        "article_html_too_complex": 1,
        "article_extract_timeout": 1,
    }
    assert report["seconds"] < 15, report
    dead = {d["input_ref"]: d["reason"] for d in _stream(env, "dead")}
    assert dead == {
        "guid:siblings": "article_html_too_complex",
        "guid:attributes": "article_extract_timeout",
    }
    [doc] = _stream(env, "docs")
    assert doc["input_ref"] == "guid:good" and ARTICLE_PARAGRAPHS[0] in doc["text"]
