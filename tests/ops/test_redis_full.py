"""A full Redis (maxmemory, noeviction) under a running backfill loses nothing.

A private redis-server gets a maxmemory a few MB above what it holds when the backfill
starts, so it fills up part way. The workers must hold their batches (never acknowledge
and drop one), `backfill --wait` and `stats` must say that Redis is full, and once
maxmemory is raised the job must finish with every input in exactly one stream, once.

Two lengths of the outage: within a task's hold (the workers wait inside their Redis
calls and go on), and longer than it (each batch is handed back unacknowledged and comes
back after the visibility timeout, the broker's records of it refused by the full Redis
and kept).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis
from conftest import cli_env, run_cli, start_cli
from support import faults

from workers.index.keys import Keys

PREFIX = "full:"
HEADROOM = 2_500_000  # bytes of maxmemory above what Redis holds before the backfill


def _blocked_stats(env: dict[str, str]) -> str:
    result = run_cli(["stats"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    return " ".join(line for line in result.stdout.splitlines() if "blocked" in line)


def _full_redis_backfill(
    tmp_path: Path, server: faults.PrivateRedis, full_for: float, worker_env: dict[str, str]
) -> str:
    keys = Keys(PREFIX)
    env = cli_env(redis_url=server.url, prefix=PREFIX, NEWSDEDUP_INGEST__BATCH_SIZE="50")
    client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
    inputs = faults.write_inputs(tmp_path / "in", 2000, seed=5)
    try:
        with faults.running_workers({**env, **worker_env}, tmp_path, 1, "WARNING"):
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used + HEADROOM)
            args = ["backfill", "--wait", str(inputs.folder)]
            backfill = start_cli(args, env, tmp_path / "backfill.log")

            def logs() -> str:
                return faults.worker_logs(tmp_path) + "\n----- backfill\n" + read_log()

            def read_log() -> str:
                return (tmp_path / "backfill.log").read_text("utf-8", "replace")

            faults.wait_until(lambda: "blocked: Redis is full" in read_log(), 120, "blocked", logs)
            job_id = client.zrange(keys.jobs, -1, -1)[0].decode()
            stalled = faults.progress_or_none(client, keys, job_id)
            assert stalled is not None and stalled.processed < len(inputs.refs), stalled
            # Stats says so in one line, and nothing is lost meanwhile: the job's batches
            # are queued or held unacknowledged.
            line = _blocked_stats(env)
            assert re.search(r"blocked: Redis is full \(.* used of maxmemory .*noeviction", line)
            assert client.llen(f"{PREFIX}ingest") + client.hlen(f"{PREFIX}unacked") > 0
            time.sleep(full_for)
            progress = faults.progress_or_none(client, keys, job_id)
            assert progress is not None and progress.processed < len(inputs.refs)
            client.config_set("maxmemory", 0)
            backfill.wait(timeout=300)
            assert backfill.returncode == 0, logs()
            assert "Redis takes writes again" in read_log(), read_log()
            assert not _blocked_stats(env)
            faults.check_accounting(client, keys, job_id, inputs, env)
            return logs()
    finally:
        client.close()


@faults.needs_redis_server
def test_full_redis_is_waited_out_inside_the_tasks(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    logs = _full_redis_backfill(tmp_path, private_redis, 8, {})
    assert "Redis is full" in logs
    assert "handing the message back" not in logs


@faults.needs_redis_server
@pytest.mark.slow
def test_full_redis_longer_than_a_task_hands_batches_back(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    # A task holds for 0.8 x the soft limit (8 s), then hands its batch back; the full Redis
    # refuses the requeue, so the batch waits in the unacked hash for the visibility
    # timeout (25 s) and comes back once Redis takes writes again.
    logs = _full_redis_backfill(tmp_path, private_redis, 30, faults.SHORT_HOLD)
    assert "handing the message back" in logs
    assert "comes back after the visibility timeout" in logs
    assert "Unrecoverable error" not in logs
