"""Source names that look like key names or terminal escapes, through the real CLI.

A source name comes from the input (a JSONL record's `source`). Names such as `sources`,
`x:c` or `*` once reached other keys (`bp:sources` is the learner's set of sources:
WRONGTYPE, valid articles in `dead`, `boilerplate show sources` crashing), and control
characters in a name reached the operator's terminal raw. Here every such name is
backfilled with the embedded Redis and a real worker; every valid article must be
published, every name counted and learned on its own, shown escaped in `stats`, `tail`
and `boilerplate show`, and given back as it is by `--json`.
"""

from __future__ import annotations

import json
import random
import string

import pytest
from conftest import cli_env, run_cli

from workers.messages import printable

NAMES = [
    "sources",  # the learner's and the stats' sets of sources
    "names",
    "stats",
    "x",
    "x:c",  # once the counts hash of source "x"
    "a:b",
    "a:b:l",  # once the learned lines of source "a:b"
    "*",
    "..",
    "[bold]m[/]",  # rich markup
    "\u200b",  # looks empty: a zero-width space
    "first\nsecond\rthird\x1b[31mred\x1b[0m",  # newline, carriage return, colour escapes
]
DOCS_PER_NAME = 6
FOOTER = "Follow our outlet on every social network for the latest news and reports"
WORDS = [
    "".join(random.Random(n).choice(string.ascii_lowercase) for _ in range(3 + n % 7))
    for n in range(4000)
]


def article(rng: random.Random) -> str:
    """Four paragraphs of random words (letters only: digits are normalised away)."""
    paragraphs = [
        " ".join(rng.choice(WORDS) for _ in range(40)).capitalize() + "." for _ in range(4)
    ]
    return "\n\n".join([*paragraphs, FOOTER])


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("input")
    rng = random.Random(15)
    records = [
        {"id": f"n{i}-{k}", "source": name, "title": f"Story {i} {k}", "text": article(rng)}
        for i, name in enumerate(NAMES)
        for k in range(DOCS_PER_NAME)
    ]
    # One invalid input per name: dead, and counted under its own source.
    records += [
        {"id": f"n{i}-dead", "source": name, "title": "nothing", "text": ""}
        for i, name in enumerate(NAMES)
    ]
    rng.shuffle(records)
    path = folder / "hostile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    env = cli_env(data_dir=tmp_path_factory.mktemp("data"), COLUMNS="300")
    result = run_cli(["backfill", str(folder)], env)
    assert result.returncode == 0, result.stderr
    total, valid = len(records), len(NAMES) * DOCS_PER_NAME
    assert f"{total} inputs, {valid} published, 0 exact duplicates, 0 near duplicates" in (
        result.stdout
    ), result.stdout
    assert f"{len(NAMES)} dead ({len(NAMES)} missing_text)" in result.stdout, result.stdout
    return env


def test_stats_json_lists_every_source_by_its_real_name(backfilled: dict[str, str]) -> None:
    result = run_cli(["stats", "--json"], backfilled)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert set(stats["sources"]) == set(NAMES)
    for name in NAMES:
        counts = stats["sources"][name]
        seen_published_dead = (counts["seen"], counts["published"], counts["dead"])
        assert seen_published_dead == (DOCS_PER_NAME + 1, DOCS_PER_NAME, 1), (name, counts)


def test_stats_table_shows_names_escaped(backfilled: dict[str, str]) -> None:
    result = run_cli(["stats"], backfilled)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out and "\r" not in out and "\u200b" not in out
    for name in NAMES:
        assert f" {printable(name)} " in out, (name, out)
    assert "first\\nsecond\\rthird\\x1b[31mred\\x1b[0m" in out
    assert "[bold]m[/]" in out  # shown as written, not taken as markup


def test_boilerplate_show_works_for_every_name(backfilled: dict[str, str]) -> None:
    listing = run_cli(["boilerplate", "show", "--json"], backfilled)
    assert listing.returncode == 0, listing.stderr
    counted = {row["source"]: row for row in json.loads(listing.stdout)}
    assert set(counted) == set(NAMES)
    for name in NAMES:
        # Each source learned its own footer: no source's counts landed in another's keys.
        assert counted[name]["documents"] == DOCS_PER_NAME, counted[name]
        human = run_cli(["boilerplate", "show", name], backfilled)
        assert human.returncode == 0, human.stderr
        lines = human.stdout.splitlines()
        assert lines[0].startswith(f"{printable(name)}: {DOCS_PER_NAME} documents counted")
        assert len(lines) == 2 and lines[1].endswith(FOOTER), human.stdout
    for name in ("sources", NAMES[-1]):
        shown = run_cli(["boilerplate", "show", name, "--json"], backfilled)
        assert shown.returncode == 0, shown.stderr
        payload = json.loads(shown.stdout)
        assert payload["source"] == name
        assert [line["text"] for line in payload["lines"]] == [FOOTER], (name, payload)
    human_listing = run_cli(["boilerplate", "show"], backfilled)
    assert human_listing.returncode == 0, human_listing.stderr
    assert len(human_listing.stdout.splitlines()) == len(NAMES)  # one line per source
    assert "\x1b" not in human_listing.stdout


def test_tail_shows_one_escaped_line_per_entry(backfilled: dict[str, str]) -> None:
    for stream, expected in (("docs", len(NAMES) * DOCS_PER_NAME), ("dead", len(NAMES))):
        human = run_cli(["tail", "--stream", stream, "--from-start"], backfilled)
        assert human.returncode == 0, human.stderr
        assert len(human.stdout.splitlines()) == expected, human.stdout
        assert "\x1b" not in human.stdout and "\r" not in human.stdout
        records = [
            json.loads(line)
            for line in run_cli(
                ["tail", "--stream", stream, "--from-start", "--json"], backfilled
            ).stdout.splitlines()
        ]
        assert {r["source"] for r in records} == set(NAMES)  # --json: the real names
    docs = run_cli(["tail", "--from-start"], backfilled).stdout
    assert "[first\\nsecond\\rthird\\x1b[31mred\\x1b[0m]" in docs
