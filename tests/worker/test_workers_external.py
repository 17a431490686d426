"""Separately started `newsdedup worker` processes against a Redis URL (not embedded).

Uses REDIS_URL when set (e.g. redis://127.0.0.1:6379/15), else the test session's own
Redis server; either way under a private key prefix that is deleted afterwards.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from conftest import ROOT, RedisTarget, cli_env, run_cli, start_worker, stop_workers
from support.edit_copies import make_corpus

from workers.index.keys import Keys
from workers.worker.presence import (
    HEARTBEAT_TTL,
    announce,
    consumers,
    live_workers,
    worker_info,
    worker_tag,
)


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


def _read_lines(stream: IO[str], into: queue.Queue[tuple[float, str]]) -> None:
    for line in stream:
        into.put((time.monotonic(), line.rstrip()))


def _wait_for_line(lines: queue.Queue[tuple[float, str]], text: str, timeout: float) -> float:
    """When a line holding `text` came (time.monotonic()); fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            at, line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return at
    raise AssertionError(f"no line with {text!r} within {timeout:.0f}s: {seen}")


def test_backfill_wait_says_no_worker_consumes_the_queue_then_that_one_does(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    """Issue 18 item 4: `backfill --wait` on a Redis of one's own with no worker says so,
    on one line, within seconds, keeps waiting, and says so again when a worker starts."""
    env = cli_env(redis_url=redis_target.url, prefix=prefix)
    started = time.monotonic()
    command = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "backfill", "--wait", "seeds/", "--timeout", "240"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    assert command.stderr is not None
    threading.Thread(target=_read_lines, args=(command.stderr, lines), daemon=True).start()
    worker = None
    try:
        said = _wait_for_line(lines, "no worker is consuming the ingest queue", 30)
        # The command's own start-up (imports, a loaded machine) plus the 2 s grace.
        assert said - started < 15, f"said after {said - started:.1f}s"
        assert command.poll() is None, "it must keep waiting"
        worker = start_worker(env, "late", tmp_path / "late.log")
        _wait_for_line(lines, "worker late@", 120)
        stdout, _ = command.communicate(timeout=180)
        assert command.returncode == 0, (tmp_path / "late.log").read_text()
        assert "5 inputs, 5 published" in stdout
        client = redis_target.client
        assert [w.name for w in live_workers(client, Keys(prefix))] == [
            f"late@{socket.gethostname()}"
        ]
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        if worker is not None:
            stop_workers([worker])
    # A worker that stops withdraws its heartbeat at once.
    assert live_workers(redis_target.client, Keys(prefix)) == []
    assert not redis_target.client.exists(f"{prefix}workers")


def test_heartbeats_expire_and_are_forgotten(redis_target: RedisTarget, prefix: str) -> None:
    client, keys = redis_target.client, Keys(prefix)
    alive = worker_info("alive@host", ["ingest", "fetch"])
    announce(client, keys, alive)
    announce(client, keys, worker_info("gone@host", ["fetch"]))
    client.delete(keys.worker(worker_tag("gone@host")))  # as its key expiring would
    assert live_workers(client, keys) == [alive]
    assert [w.name for w in consumers(live_workers(client, keys), "fetch")] == ["alive@host"]
    # The expired one's tag is dropped from the set.
    assert client.smembers(keys.workers) == {worker_tag("alive@host").encode()}
    ttl = client.ttl(keys.worker(worker_tag("alive@host")))
    assert 0 < ttl <= HEARTBEAT_TTL
