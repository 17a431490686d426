"""Faults: Redis restarting under running workers, and Redis unreachable when a command starts.

The restart tests run their own redis-server (never the machine's) on a free port, with
the persistence settings docs/operations.md asks for: `appendonly yes` with `appendfsync
everysec`, no RDB snapshots, `maxmemory-policy noeviction`. Two workers process a
backfill; once a tenth of it is done Redis is stopped and started again on the same port
and folder, and it must come back with everything it acknowledged: Celery's queues and
unacked hash, the job counters and done sets, the index and the streams.

- SIGTERM (a clean shutdown, which fsyncs the AOF) and SIGKILL (a crash: no shutdown; the
  AOF as the process left it, every acknowledged write already written to the file, so
  `everysec` loses nothing here; only a host crash could lose its last second);
- down 4 s (inside redis-py's retry window: running tasks wait inside their Redis calls)
  and 15 s (past it: the tasks fail and retry through Celery).

Afterwards every input is in exactly one of docs, duplicates and dead, none twice, no
dead letter comes from the outage, the job's counters agree, every message is
acknowledged (nothing waits for the visibility timeout) and both workers still run.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from conftest import cli_env, run_cli
from support.faults import (
    JobLogs,
    PrivateRedis,
    check_accounting,
    enqueue,
    job_settled,
    needs_redis_server,
    processed_at_least,
    running_workers,
    wait_until,
    write_inputs,
)

from workers.index.keys import Keys
from workers.ops.connection import RedisUnavailable, ping, redis_from_url
from workers.worker.jobs import read_progress


@dataclass(frozen=True)
class Outage:
    processed: int  # inputs processed when Redis was stopped
    stopped_after: float  # seconds from the enqueue to the stop


def outage(
    server: PrivateRedis,
    client: redis.Redis,
    keys: Keys,
    job_id: str,
    total: int,
    seconds: float,
    how: signal.Signals,
    logs: Callable[[], str],
) -> Outage:
    """Once a tenth of the job is processed and both workers hold a task, stop Redis with
    `how` (SIGTERM: a clean shutdown; SIGKILL: a crash), wait `seconds`, start it again on
    the same port and folder.

    Progress is counted as tasks end, so a tenth done alone would stop Redis just after
    a task ended, when the workers may be between tasks with nothing to hold through the
    outage. Two messages in the unacked hash (acks are late, one task per worker) mean
    both are running one."""
    started = time.monotonic()

    def some_done_and_both_busy() -> bool:
        if not processed_at_least(client, keys, job_id, total // 10):
            return False
        try:
            return int(client.hlen(f"{keys.prefix}unacked")) >= 2
        except redis.ConnectionError:
            return False

    wait_until(some_done_and_both_busy, 120, "a tenth of the job processed, both busy", logs)
    progress = read_progress(client, keys, job_id)
    assert progress.processed < total, "the job finished before Redis could be stopped"
    stopped_after = time.monotonic() - started
    server.stop(how)
    time.sleep(seconds)
    server.start()
    return Outage(progress.processed, stopped_after)


# ------------------------------------------------------------------------------ tests


def run_outage(
    tmp_path: Path,
    server: PrivateRedis,
    count: int,
    down_seconds: float,
    how: signal.Signals = signal.SIGTERM,
    loglevel: str = "WARNING",
    batch_size: int = 50,
) -> str:
    """Two workers, a backfill of `count` generated inputs in batches of `batch_size`,
    Redis stopped for `down_seconds` once a tenth is processed; every input checked
    afterwards. Returns the workers' logs."""
    prefix = "faults:"
    keys = Keys(prefix)
    # Small tasks: several running and many queued when Redis goes away.
    # A batch whose message the outage lost (Redis killed after its pop of a message
    # reached the AOF, before the reply left) is sent again by the workers' sweep
    # (workers/worker/lost.py) once the job has stalled this long.
    env = cli_env(
        redis_url=server.url,
        prefix=prefix,
        NEWSDEDUP_INGEST__BATCH_SIZE=str(batch_size),
        NEWSDEDUP_WORKER__LOST_BATCH_AFTER="30",
    )
    client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
    logs = JobLogs(client, keys, tmp_path)

    def settled() -> bool:
        return job_settled(client, keys, logs.job_id)

    try:
        with running_workers(env, tmp_path, 2, loglevel) as workers:
            inputs = write_inputs(tmp_path / "in", count, seed=1)  # while the workers start
            job_id = logs.job_id = enqueue(inputs, env)
            gap = outage(server, client, keys, job_id, count, down_seconds, how, logs)
            # Acknowledged in the end, on the workers' new connections: no message is left
            # in the unacked hash to come back after the visibility timeout (an hour).
            took = wait_until(settled, 300, f"job {job_id} finished and acknowledged", logs)
            assert all(w.poll() is None for w in workers), "a worker exited" + logs()
            check_accounting(client, keys, job_id, inputs, env)
            resent = read_progress(client, keys, job_id).resent_tasks
        print(
            f"Redis stopped ({how.name}) {gap.stopped_after:.1f}s after the enqueue, at "
            f"{gap.processed}/{count} inputs, for {down_seconds:g}s; "
            f"job finished {took:.1f}s after Redis was back; {resent} batches sent again"
        )
        return logs()
    finally:
        client.close()


@needs_redis_server
@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGTERM, id="shutdown"),
        # A crash: no shutdown save, the restarted server replays the AOF as the killed one
        # left it. Every write it acknowledged was already written to the AOF file (the OS
        # keeps it when the process dies; only a host crash can lose the last second).
        pytest.param(signal.SIGKILL, id="crash"),
    ],
)
def test_redis_restart_mid_stream(
    tmp_path: Path, private_redis: PrivateRedis, how: signal.Signals
) -> None:
    """Down for 4 s, inside redis-py's retry window (about 9 s): running tasks wait inside
    their Redis calls, and the Celery consumers reconnect to the broker."""
    logs = run_outage(tmp_path, private_redis, 3000, 4, how)
    assert "Connection to broker lost" in logs  # the restart really hit the workers


@needs_redis_server
def test_redis_down_longer_than_client_retries(tmp_path: Path, private_redis: PrivateRedis) -> None:
    """Down for 15 s, past a command's default wait (10 s): the running tasks hold their
    batches and wait inside their Redis calls (up to 0.8 x the soft time limit), then go
    on where they were; no batch is retried, handed back or dropped."""
    # Batches long enough (about half a second) that the stop is most unlikely to find
    # both workers past their last Redis call: this test is about tasks that wait.
    logs = run_outage(tmp_path, private_redis, 3000, 15, loglevel="INFO", batch_size=200)
    assert "Connection to broker lost" in logs
    assert re.search(r"Redis is unreachable: .*: waiting \(\d+ s so far\)", logs), logs
    assert "reject requeue=False" not in logs
    assert "handing the message back" not in logs


# ------------------------------------------------------------------------------ unreachable

# Redis refuses connections on port 1; the password must never be printed.
DOWN_URL = "redis://:s3cret@127.0.0.1:1/0"


@pytest.mark.parametrize(
    "args",
    [
        ["backfill", "seeds/"],
        ["stats"],
        ["job"],
        ["job", "--wait"],
        ["worker", "--concurrency", "1"],
        ["beat"],
        ["run", "--concurrency", "1"],
        ["metrics", "--port", "0"],
        ["poll", "https://example.com/feed.xml"],
        ["feeds"],
        ["tail", "--follow"],
        ["index", "stats"],
    ],
    ids=" ".join,
)
def test_unreachable_redis_at_start_is_one_line(tmp_path: Path, args: list[str]) -> None:
    env = cli_env(data_dir=tmp_path, redis_url=DOWN_URL)
    result = run_cli(args, env, timeout=60)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(
        "newsdedup: error: cannot reach Redis at redis://:***@127.0.0.1:1/0: "
    ), result.stderr
    assert "s3cret" not in result.stderr


def test_start_check_does_not_wait_out_the_retry_window() -> None:
    """A command started while Redis is down fails within about a second, not after the
    client's retries for running processes (about 9 s)."""
    client = redis_from_url(DOWN_URL)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        ping(client, DOWN_URL)
    assert time.monotonic() - started < 3
    client.close()
