"""The main job as a user runs it: the CLI with its embedded Redis and a real Celery worker.

These run `python -m workers.cli` in a subprocess with a fresh NEWSDEDUP_DATA_DIR and no
REDIS_URL, exactly the README's main command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SEEDS, cli_env, run_cli

from workers.clean.normalise import normalise_for_publishing
from workers.ops.embedded import SERVER_PROGRAM

BOILERPLATE = (
    "أخبار ليبيا24",
    "أخبار ليبيا 24",
    "12",
    "متابعة",
    "المزيد من الأخبار",
    "Hot Topics",
    "Related Articles",
    "التعليقات مغلقة، ولكن تركبكس وبينغبكس مفتوحة.",
)


def _json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    result = run_cli(["backfill", "seeds/"], cli_env(data_dir=data_dir))
    assert result.returncode == 0, result.stderr
    assert "5 published" in result.stdout
    return data_dir


def test_backfill_counts_and_stats(seeded: Path) -> None:
    result = run_cli(["stats", "--json"], cli_env(data_dir=seeded))
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["seen"] == 5
    assert stats["published"] == 5
    assert stats["streams"] == {"docs": 5, "duplicates": 0, "dead": 0}


def test_published_text_is_clean_and_complete(seeded: Path) -> None:
    result = run_cli(
        ["tail", "--stream", "docs", "--from-start", "--json"], cli_env(data_dir=seeded)
    )
    assert result.returncode == 0, result.stderr
    docs = {str(d["id"]): d for d in _json_lines(result.stdout)}
    assert sorted(docs) == sorted(p.name for p in SEEDS.glob("*.txt"))
    for path in sorted(SEEDS.glob("*.txt")):
        doc = docs[path.name]
        lines = [normalise_for_publishing(line) for line in path.read_text("utf-8").splitlines()]
        lines = [line for line in lines if line]
        title, body = lines[0], lines[1:]
        assert doc["title"] == title
        published = str(doc["text"]).split("\n")
        for line in published:
            assert line not in BOILERPLATE, (path.name, line)
        assert title not in published, f"{path.name}: title repeated in body"
        expected = [line for line in body if line not in BOILERPLATE and line != title]
        assert [line for line in published if line] == expected, path.name
        for field in ("source", "ingested_at", "content_hash", "stripped_lines", "published_at"):
            assert field in doc


def test_second_backfill_publishes_nothing(seeded: Path) -> None:
    env = cli_env(data_dir=seeded)
    result = run_cli(["backfill", "seeds/"], env)
    assert result.returncode == 0, result.stderr
    assert "0 published, 5 exact duplicates" in result.stdout
    dups = _json_lines(
        run_cli(["tail", "--stream", "duplicates", "--from-start", "--json"], env).stdout
    )
    assert len(dups) == 5
    for dup in dups:
        assert dup["kind"] == "exact"
        assert dup["duplicate_of"] == dup["id"]  # the same file: its first copy's id
    stats = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert (stats["seen"], stats["published"], stats["exact"]) == (10, 5, 5)


def test_consumer_group_reads_and_acknowledges(seeded: Path) -> None:
    env = cli_env(data_dir=seeded)
    args = [
        "tail",
        "--stream",
        "docs",
        "--from-start",
        "--json",
        "--group",
        "g1",
        "--consumer",
        "c1",
    ]
    first = _json_lines(run_cli([*args, "--count", "3"], env).stdout)
    rest = _json_lines(run_cli(args, env).stdout)
    assert len(first) == 3 and len(rest) == 2
    assert {d["id"] for d in first}.isdisjoint({d["id"] for d in rest})
    assert _json_lines(run_cli(args, env).stdout) == []  # all acknowledged


def test_a_new_group_reads_the_stream_from_the_start(seeded: Path) -> None:
    """The README's consumer command, as it stands: no --from-start needed."""
    env = cli_env(data_dir=seeded)
    args = ["tail", "--group", "fresh", "--consumer", "c1", "--json"]
    first = run_cli(args, env)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert len(_json_lines(first.stdout)) == 5
    again = run_cli(args, env)
    assert _json_lines(again.stdout) == [] and again.stderr == ""
    # A flag that cannot apply to an existing group says so (and still reads).
    late = run_cli([*args, "--from-start"], env)
    assert late.returncode == 0 and _json_lines(late.stdout) == []
    assert late.stderr == (
        "group fresh exists: it goes on where it left off (--from-start applies only to a "
        "new group)\n"
    )


def test_a_new_only_group_skips_what_is_there(seeded: Path) -> None:
    env = cli_env(data_dir=seeded)
    args = ["tail", "--group", "later", "--consumer", "c1", "--json", "--new-only"]
    result = run_cli(args, env)
    assert result.returncode == 0 and _json_lines(result.stdout) == [], result.stderr
    refused = run_cli(["tail", "--new-only"], env)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--group" in refused.stderr


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli(["backfill", str(tmp_path / "nope")], cli_env(data_dir=tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "nope" in result.stderr


def test_unreachable_redis_is_one_line_error(tmp_path: Path) -> None:
    env = cli_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    for args in (["stats"], ["backfill", "seeds/"], ["tail"]):
        result = run_cli(args, env, timeout=60)
        assert result.returncode == 1, args
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith(
            "newsdedup: error: cannot reach Redis at redis://127.0.0.1:1/0"
        )


def test_reset_requires_confirmation_then_clears(tmp_path: Path) -> None:
    env = cli_env(data_dir=tmp_path)
    assert run_cli(["backfill", "seeds/"], env).returncode == 0
    refused = run_cli(["reset"], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert run_cli(["reset", "--yes"], env).returncode == 0
    stats = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert stats["seen"] == 0 and stats["streams"]["docs"] == 0


def test_embedded_server_does_not_outlive_the_command(tmp_path: Path) -> None:
    import psutil

    def servers_in(folder: Path) -> list[int]:
        found = []
        for proc in psutil.process_iter(["name"]):
            try:
                if SERVER_PROGRAM in (proc.info["name"] or "") and proc.cwd() == str(folder):
                    found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    data_dir = tmp_path / "data"
    assert run_cli(["backfill", "seeds/"], cli_env(data_dir=data_dir)).returncode == 0
    assert servers_in(data_dir.resolve()) == []
    # ...and its data is still there for the next command.
    stats = json.loads(run_cli(["stats", "--json"], cli_env(data_dir=data_dir)).stdout)
    assert stats["published"] == 5
    assert servers_in(data_dir.resolve()) == []
