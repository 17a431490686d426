"""Separately started `newsdedup worker` processes against a Redis URL (not embedded).

Uses REDIS_URL when set (e.g. redis://127.0.0.1:6379/15), else the test session's own
Redis server; either way under a private key prefix that is deleted afterwards.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from conftest import RedisTarget, cli_env, run_cli, start_worker, stop_workers
from support.edit_copies import make_corpus


def counts(stats: dict[str, int]) -> tuple[int, ...]:
    return tuple(stats[k] for k in ("seen", "published", "exact", "near", "dead"))


def test_two_separate_workers_match_embedded_run(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    corpus = make_corpus(tmp_path / "corpus")

    embedded = cli_env(data_dir=tmp_path / "embedded")
    result = run_cli(["backfill", str(corpus)], embedded)
    assert result.returncode == 0, result.stderr
    expected = counts(json.loads(run_cli(["stats", "--json"], embedded).stdout))
    # 5 originals published; 5 exact copies; each edited copy is a near (or exact) duplicate.
    seen, published, exact, near, dead = expected
    assert (seen, published, exact + near, dead) == (15, 5, 10, 0), expected
    assert exact >= 5

    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    workers = [start_worker(env, f"w{i}", tmp_path / f"w{i}.log") for i in range(2)]
    try:
        enqueued = run_cli(["backfill", str(corpus)], env)
        assert enqueued.returncode == 0, enqueued.stderr
        assert "enqueued 15 inputs" in enqueued.stdout
        waited = run_cli(["job", "--wait"], env, timeout=180)
        assert waited.returncode == 0, waited.stderr + "".join(
            (tmp_path / f"w{i}.log").read_text() for i in range(2)
        )
        stats = json.loads(run_cli(["stats", "--json"], env).stdout)
        assert counts(stats) == expected
        # Both workers really took part.
        inspect_deadline = time.monotonic() + 5
        while time.monotonic() < inspect_deadline and any(w.poll() is not None for w in workers):
            time.sleep(0.1)
        assert all(w.poll() is None for w in workers), "a worker exited early"
    finally:
        stop_workers(workers)


def test_backfill_wait_against_redis_url(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    worker = start_worker(env, "solo", tmp_path / "w.log")
    try:
        result = run_cli(["backfill", "--wait", "seeds/"], env, timeout=180)
        assert result.returncode == 0, result.stderr
        assert "5 inputs, 5 published" in result.stdout
    finally:
        stop_workers([worker])
    # Everything we wrote is under the private prefix (the fixture deletes it).
    assert redis_target.client.exists(f"{prefix}docs")


@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux process semantics")
def test_enqueue_without_workers_returns_job_id(redis_target: RedisTarget, prefix: str) -> None:
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    result = run_cli(["backfill", "seeds/"], env)
    assert result.returncode == 0, result.stderr
    assert "enqueued 5 inputs in 1 task;" in result.stdout
    progress = json.loads(run_cli(["job", "--json"], env).stdout)
    assert progress["total"] == 5 and progress["processed"] == 0
