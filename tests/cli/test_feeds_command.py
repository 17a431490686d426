"""`newsdedup poll` and `newsdedup feeds` as a user runs them: the real CLI on the embedded
Redis, real Celery workers, feeds served over HTTP on loopback.

The `feeds` table must stay readable in an 80-column terminal and on a narrow one: no line
wider than the terminal, each feed on the lines of its name, its URL cut rather than
wrapped through the numbers, and the last error in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, run_cli
from support.articles import article
from support.loopback import LoopbackServer, Scripted
from support.pages import rss

# Long enough that no 80-column table can show it whole next to the numbers.
LONG_NAME = "national_daily_latest_headlines_in_english"


def items(feed: int, count: int) -> bytes:
    """An RSS document of `count` distinct stories (none a duplicate of another feed's)."""
    stories = [
        {"guid": f"{feed}-{i}", "title": f"Story {feed}-{i}", "description": article(feed * 10 + i)}
        for i in range(count)
    ]
    return rss(stories)


@dataclass(frozen=True)
class Polled:
    env: dict[str, str]
    rows: dict[str, dict[str, Any]]  # `feeds --json`, by feed name
    missing_url: str  # the feed whose server answers 404


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Polled]:
    """Four configured feeds (one long-named, one answering 404, one disabled and never
    polled) and one polled by hand, each polled once through `newsdedup poll`."""
    folder = tmp_path_factory.mktemp("feeds")
    server = LoopbackServer()
    try:
        server.serve("/short.xml", items(1, 2))
        long_path = "/api/v1/collections/latest-headlines/feed.xml?format=rss&limit=50"
        server.serve(long_path.split("?")[0], items(2, 3))
        server.serve("/by-hand.xml", items(3, 1))
        feeds = folder / "feeds.toml"
        feeds.write_text(
            '[defaults]\ninterval = 600\nfetch_article = "never"\n'
            f'[[feed]]\nname = "short"\nurl = "{server.url("/short.xml")}"\n'
            f'[[feed]]\nname = "{LONG_NAME}"\nurl = "{server.url(long_path)}"\n'
            f'[[feed]]\nname = "missing"\nurl = "{server.url("/gone.xml")}"\n'
            f'[[feed]]\nname = "off"\nurl = "{server.url("/off.xml")}"\nenabled = false\n',
            encoding="utf-8",
        )
        env = cli_env(
            data_dir=folder / "data",
            NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
            NEWSDEDUP_FEEDS__HOST_DELAY="0",
            NEWSDEDUP_FEEDS__RETRIES="0",
            NEWSDEDUP_FEEDS__CONFIG=str(feeds),
        )
        targets = ["short", LONG_NAME, "missing", server.url("/by-hand.xml")]
        result = run_cli(["poll", *targets], env, timeout=240)
        assert result.returncode == 1, result.stderr  # the 404 is a failed poll
        status = run_cli(["feeds", "--json"], env)
        assert status.returncode == 0, status.stderr
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        yield Polled(env, rows, server.url("/gone.xml"))
    finally:
        server.close()


def _feeds(polled: Polled, columns: int, *args: str) -> list[str]:
    result = run_cli(["feeds", *args], {**polled.env, "COLUMNS": str(columns)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def _fits(lines: list[str], columns: int) -> None:
    wide = [line for line in lines if len(line) > columns]
    assert not wide, f"wider than {columns} columns:\n" + "\n".join(wide)


def _shown(full: str, cell: str) -> bool:
    """Whether a cell shows `full`, whole or cut with "…" (at least 8 characters of it)."""
    cell = cell.strip()
    if cell == full:
        return True
    return cell.endswith("…") and len(cell) > 8 and full.startswith(cell[:-1])


def _last_errors(lines: list[str]) -> str:
    start = lines.index("last errors:")
    return " ".join(" ".join(lines[start + 1 :]).split())


def test_poll_recorded_what_the_table_shows(polled: Polled) -> None:
    rows = polled.rows
    assert set(rows) == {"short", LONG_NAME, "missing", "off", "127.0.0.1/by-hand.xml"}
    assert rows["short"]["published"] == 2 and rows[LONG_NAME]["published"] == 3
    assert rows["missing"]["last_outcome"] == "failed" and "404" in rows["missing"]["last_error"]
    assert rows["off"]["last_polled"] is None


def test_table_fits_80_columns_one_feed_to_two_lines(polled: Polled) -> None:
    lines = _feeds(polled, 80)
    _fits(lines, 80)
    header = next(line for line in lines if line.startswith("feed "))
    for name in ("last poll", "dups", "dead", "errors"):
        assert name in header
    rows = polled.rows
    for name, row in rows.items():
        # The name's line carries the feed's numbers; the next line its URL, no scheme.
        [at] = [i for i, line in enumerate(lines) if _shown(name, line.split("  ")[0])]
        cells = lines[at].split()
        url = row["url"].removeprefix("http://")
        assert _shown(url, lines[at + 1].split("  ")[0]), (url, lines[at + 1])
        if row["last_polled"] is not None:
            assert str(row["published"]) in cells and str(row["dead"]) in cells, lines[at]
            assert str(row["exact"] + row["near"]) in cells, lines[at]
    long_line = next(line for line in lines if line.startswith(LONG_NAME[:12]))
    assert "…" in long_line and f"{rows[LONG_NAME]['last_status']}, 3 new" in long_line
    assert "disabled" in next(line for line in lines if line.startswith("off "))
    assert "by hand" in next(line for line in lines if line.startswith("127.0.0.1/by-hand"))
    # The error is not squeezed into a cell: it is printed whole under the table.
    assert f"missing: {rows['missing']['last_error']}" in _last_errors(lines)


def test_narrow_terminal_gets_one_block_per_feed(polled: Polled) -> None:
    lines = _feeds(polled, 40)
    _fits(lines, 40)
    rows = polled.rows
    for name in ("short", "missing", "off"):
        at = lines.index(name)
        assert lines[at + 1].startswith(rows[name]["url"].removeprefix("http://")[:20])
        block = "\n".join(lines[at + 2 : at + 7])
        row = rows[name]
        assert f"published {row['published']}, dups {row['exact'] + row['near']}" in block
    assert "  last poll: failed" in lines[lines.index("missing") + 2]
    assert "  next poll: disabled" in lines[lines.index("off") + 2 : lines.index("off") + 7]
    assert f"missing: {rows['missing']['last_error']}" in _last_errors(lines)


def test_verbose_shows_every_column_and_whole_urls(polled: Polled) -> None:
    lines = _feeds(polled, 250, "--verbose")
    _fits(lines, 250)
    text = "\n".join(lines)
    for column in ("entries", "last/all", "source", "every", "polls"):
        assert column in text
    assert polled.missing_url in text and LONG_NAME in text
    assert re.search(r"\b600s\b", text)


def test_blocked_address_names_the_setting_and_its_variable(tmp_path: Path) -> None:
    """A feed on loopback without allow_private_networks: the failure says how to allow
    it, both ways; doing what it says lets the poll through."""
    server = LoopbackServer()
    try:
        server.serve("/feed.xml", items(4, 1))
        env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_FEEDS__HOST_DELAY="0")
        refused = run_cli(["poll", server.url("/feed.xml")], env, timeout=240)
        assert refused.returncode == 1, refused.stderr
        assert "allow_private_networks" in refused.stdout
        assert "NEWSDEDUP_ALLOW_PRIVATE_NETWORKS=1" in refused.stdout
        assert server.hits("/feed.xml") == 0
        allowed_env = {**env, "NEWSDEDUP_ALLOW_PRIVATE_NETWORKS": "1"}
        allowed = run_cli(["poll", server.url("/feed.xml"), "--json"], allowed_env, timeout=240)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["published"] == 1
    finally:
        server.close()


def test_verbose_on_an_80_column_terminal_keeps_every_feed_named(polled: Polled) -> None:
    """The verbose table needs a wide terminal: on 80 columns (or piped) each feed gets
    its block, with its name, whole URL and the verbose lines, instead of a table that
    squeezes the feed column out."""
    lines = _feeds(polled, 80, "--verbose")
    _fits(lines, 80)
    text = "\n".join(lines)
    for name, row in polled.rows.items():
        assert name in lines, name
        assert row["url"][:60] in text.replace("\n", "")
    assert "  source " in text and ", every 600s" in text


def test_a_stalled_feed_does_not_hold_up_the_feeds_of_other_hosts(tmp_path: Path) -> None:
    """One host's feed is stalled (a byte a second until the request deadline) while three
    more of that host's feeds and one of another host are polled, one worker process per
    poll but one short. The polls waiting for the stalled host give their processes back,
    so the other host's feed is fetched within seconds, not after the stall; once the
    stall ends, the stalled host's other feeds are polled too."""
    stalled, other = LoopbackServer(), LoopbackServer()
    try:
        stalled.script("/stalled.xml", [Scripted(200, items(5, 1), drip=1.0)])
        for i in range(3):
            stalled.serve(f"/a{i}.xml", items(6 + i, 1))
        other.serve("/b.xml", items(9, 1))
        env = cli_env(
            data_dir=tmp_path / "data",
            NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
            NEWSDEDUP_FEEDS__HOST_DELAY="0",
            NEWSDEDUP_FEEDS__RETRIES="0",
            NEWSDEDUP_FEEDS__REQUEST_DEADLINE="20",
        )
        targets = [stalled.url("/stalled.xml"), *(stalled.url(f"/a{i}.xml") for i in range(3))]
        result = run_cli(["poll", "--json", *targets, other.url("/b.xml")], env, timeout=240)
        reports = {json.loads(line)["url"]: json.loads(line) for line in result.stdout.splitlines()}
        stall_began = stalled.requests("/stalled.xml")[0].received
        waited = other.requests("/b.xml")[0].received - stall_began
        assert waited < 8, f"the other host's feed waited {waited:.1f} s behind the stall"
        assert result.returncode == 1, result.stderr  # the stalled feed's poll failed
        assert reports[stalled.url("/stalled.xml")]["outcome"] == "failed"
        assert "request deadline" in reports[stalled.url("/stalled.xml")]["error"]
        for url in [*targets[1:], other.url("/b.xml")]:
            assert reports[url]["outcome"] == "polled" and reports[url]["published"] == 1, reports
    finally:
        stalled.close()
        other.close()
