"""The CLI's options say one thing one way, and its counts read as English.

- one name per meaning across commands: `--concurrency` (backfill, worker, run), `--count`
  (tail, boilerplate show); the old names `backfill --workers` and `boilerplate show
  --limit` still work for scripts, hidden from --help;
- `--json` on the commands that report a result, `backfill --json` and `job --json`
  being one object with the fields docs/operations.md lists;
- "1 input", "1 task", "1 exact duplicate": singular for one, everywhere.

Everything runs the real CLI in a subprocess, on the embedded Redis or on the test Redis
under a private prefix.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import SEEDS, RedisTarget, cli_env, run_cli
from support.articles import article

from workers.index.keys import Keys
from workers.messages import counted, plural

ONE_SEED = sorted(SEEDS.glob("*.txt"))[0]
# The fields of `backfill --json` and `job --json` (docs/operations.md).
JOB_FIELDS = {
    "job_id", "outcome", "total", "processed", "finished", "published", "exact", "near",
    "dead", "dead_reasons", "skipped", "tasks_total", "tasks_done", "abandoned_tasks",
    "resent_tasks", "sent_tasks", "sending_stopped", "seconds",
}  # fmt: skip


def _help(*command: str) -> str:
    result = run_cli([*command, "--help"], cli_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


def _one_json(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.mark.unit
def test_counted_is_singular_for_one_only() -> None:
    assert counted(1, "input") == "1 input"
    assert counted(0, "input") == "0 inputs"
    assert counted(2, "task") == "2 tasks"
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(12, "entry", "entries") == "12 entries"
    assert counted(1.0, "day") == "1 day" and counted(2.5, "day") == "2.5 days"
    assert plural(1, "key") == "key" and plural(3, "key") == "keys"


def test_one_name_per_meaning_in_help() -> None:
    for command in (["backfill"], ["worker"], ["run"]):
        options = _options(_help(*command))
        assert "--concurrency" in options and "--workers" not in options, command
    for command in (["tail"], ["boilerplate", "show"]):
        options = _options(_help(*command))
        assert "--count" in options and "--limit" not in options, command
    for command in (["backfill"], ["poll"], ["job"]):
        assert {"--timeout", "--json"} <= _options(_help(*command)), command
    for command in (["feeds"], ["stats"], ["tail"], ["index", "stats"], ["boilerplate", "show"]):
        assert "--json" in _options(_help(*command)), command


def test_backfill_json_then_job_json_and_singulars(tmp_path: Path) -> None:
    """One input: the JSON object of a finished job, `job --json` agreeing with it, and
    the text summary in the singular; run again, one exact duplicate."""
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(ONE_SEED, folder / ONE_SEED.name)
    env = cli_env(data_dir=tmp_path / "data")

    done = run_cli(["backfill", "--json", str(folder)], env)
    assert done.returncode == 0, done.stderr
    report = _one_json(done.stdout)
    assert set(report) == JOB_FIELDS
    assert report["outcome"] == "finished" and report["finished"] is True
    assert (report["total"], report["processed"], report["published"]) == (1, 1, 1)
    assert (report["exact"], report["near"], report["dead"]) == (0, 0, 0)
    assert (report["tasks_total"], report["tasks_done"], report["abandoned_tasks"]) == (1, 1, 0)
    assert report["skipped"] == {} and report["dead_reasons"] == {}
    assert isinstance(report["seconds"], float) and report["seconds"] > 0

    job = run_cli(["job", report["job_id"], "--json"], env)
    assert job.returncode == 0, job.stderr
    again = _one_json(job.stdout)
    assert set(again) == JOB_FIELDS and again["seconds"] is None
    assert {k: v for k, v in again.items() if k != "seconds"} == {
        k: v for k, v in report.items() if k != "seconds"
    }

    text = run_cli(["backfill", str(folder)], env)
    assert text.returncode == 0, text.stderr
    assert re.search(
        r"^job \S+: 1 input, 0 published, 1 exact duplicate, 0 near duplicates, 0 dead in ",
        text.stdout,
    ), text.stdout
    latest = run_cli(["job"], env)
    assert "1 input, 0 published, 1 exact duplicate," in latest.stdout, latest.stdout


def test_old_option_names_still_work(tmp_path: Path) -> None:
    outlet = tmp_path / "outlet"  # the source of its files, which share two footer lines
    outlet.mkdir()
    footer = ["تابعونا على منصات التواصل الاجتماعي", "جميع الحقوق محفوظة لموقع المنفذ"]
    for n in range(12):
        lines = [f"عنوان الخبر رقم {n}", article(100 + n), *footer]
        (outlet / f"{n:02}.txt").write_text("\n\n".join(lines), encoding="utf-8")
    env = cli_env(data_dir=tmp_path / "data")
    old = run_cli(["backfill", "--workers", "1", str(outlet)], env)
    assert old.returncode == 0, old.stderr
    assert "12 inputs, 12 published" in old.stdout

    both = run_cli(["backfill", "--workers", "1", "--concurrency", "2", str(outlet)], env)
    assert both.returncode == 2
    assert both.stderr.strip() == (
        "newsdedup: error: --workers is the old name of --concurrency: give one of them"
    )

    shown = {}
    for option in ("--count", "--limit"):
        result = run_cli(["boilerplate", "show", "outlet", option, "1", "--json"], env)
        assert result.returncode == 0, result.stderr
        shown[option] = json.loads(result.stdout)
    assert shown["--count"] == shown["--limit"]
    assert shown["--count"]["learned"] >= 2 and len(shown["--count"]["lines"]) == 1
    text = run_cli(["boilerplate", "show", "outlet", "--count", "1"], env)
    more = shown["--count"]["learned"] - 1
    assert text.stdout.splitlines()[-1] == f"... {more} more (--count)", text.stdout


def test_enqueued_backfill_json_and_job_timeout(redis_target: RedisTarget, prefix: str) -> None:
    """Against a Redis URL without a worker: `backfill --json` reports the job enqueued,
    `job --json` running, and `job --wait --timeout` gives up in one line."""
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    enqueued = run_cli(["backfill", "--json", str(SEEDS)], env)
    assert enqueued.returncode == 0, enqueued.stderr
    report = _one_json(enqueued.stdout)
    assert set(report) == JOB_FIELDS
    assert report["outcome"] == "enqueued" and report["finished"] is False
    assert (report["total"], report["processed"], report["tasks_total"]) == (5, 0, 1)
    assert report["seconds"] is None

    running = _one_json(run_cli(["job", "--json"], env).stdout)
    assert running["job_id"] == report["job_id"] and running["outcome"] == "running"

    gave_up = run_cli(["job", "--wait", "--timeout", "1"], env, timeout=60)
    assert gave_up.returncode == 1
    errors = [line for line in gave_up.stderr.splitlines() if "error" in line]
    assert errors == [
        f"newsdedup: error: job {report['job_id']} not finished after 1s (0/5 inputs)"
    ], gave_up.stderr

    text = run_cli(["backfill", str(ONE_SEED)], env)
    assert text.returncode == 0, text.stderr
    assert re.search(r"enqueued 1 input in 1 task; follow with `newsdedup job \S+`", text.stdout)


def test_poll_json_when_only_enqueued(redis_target: RedisTarget, prefix: str) -> None:
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    url = "https://feeds.example/rss.xml"  # never fetched: nothing runs the poll
    result = run_cli(["poll", "--json", url], env)
    assert result.returncode == 0, result.stderr
    line = _one_json(result.stdout)
    assert line["outcome"] == "enqueued" and line["url"] == url
    assert line["feed"] == "feeds.example/rss.xml" and re.fullmatch(
        r"[0-9a-f-]{36}", line["task_id"]
    )


def test_job_wait_rates_only_what_it_saw_processed(redis_target: RedisTarget, prefix: str) -> None:
    """Following a job that is half done and stalled: 0 docs/s, not the earlier work over
    the seconds followed (it said 123276.6 docs/s)."""
    keys = Keys(prefix)
    job_id = "20261207T000000-rate00"
    redis_target.client.hset(
        keys.job(job_id),
        mapping={"kind": "backfill", "total": 100_000, "published": 50_000, "tasks_total": 500},
    )
    redis_target.client.zadd(keys.jobs, {job_id: 1})
    env = cli_env(redis_url=redis_target.url, prefix=prefix, COLUMNS="200")
    waited = run_cli(["job", job_id, "--wait", "--timeout", "1"], env, timeout=60)
    assert waited.returncode == 1
    assert re.search(r"50000/100000\s+0\.0 docs/s", waited.stderr), waited.stderr
