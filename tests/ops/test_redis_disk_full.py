"""The disk under Redis's AOF fills up under a running backfill: nothing is lost.

A Redis that cannot write its AOF refuses every write and every PING (MISCONF) until it
can; unlike a full memory, acknowledgements and the broker's BRPOP are refused too. A
private redis-server keeps its AOF on a small file system of its own, which the test
fills once the backfill is under way and frees 80 s later or more: longer than a task
holds its batch (0.8 x a 10 s soft limit), and than the three health checks of the
broker's connection (every 25 s) after which kombu drops a connection that left two of
them unanswered, so each of those refusals happens. The worker must wait it out (no exit, no
batch dropped or retried through a Redis that refuses the retry), `backfill --wait` must
say why it is blocked, and the job must end with every input in exactly one stream, once.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from conftest import cli_env
from support import faults

from workers.index.keys import Keys

PREFIX = "diskfull:"
FULL_FOR = 75.0  # seconds the disk stays full after the worker was seen waiting 6 s


@faults.needs_redis_server
def test_a_full_disk_under_redis_is_waited_out(tmp_path: Path) -> None:
    with faults.small_file_system(tmp_path / "disk", "64m") as disk:
        server = faults.PrivateRedis(disk / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        filler = disk / "filler"

        def free_space_later() -> None:
            time.sleep(FULL_FOR)
            filler.unlink()

        env = cli_env(
            redis_url=server.url,
            prefix=PREFIX,
            NEWSDEDUP_INGEST__BATCH_SIZE="20",
            **faults.SHORT_HOLD,
        )
        inputs = faults.write_inputs(tmp_path / "in", 1500, seed=8)
        try:
            faults.held_mid_job(
                client,
                Keys(PREFIX),
                tmp_path,
                env,
                inputs,
                fault=lambda: faults.fill(filler),
                repair=free_space_later,
                worker_says="Redis is refusing writes: it cannot write its AOF: No space left "
                "on device (MISCONF): waiting",
                backfill_says="blocked: Redis is refusing writes: it cannot write its AOF",
            )
            logs = faults.worker_logs(tmp_path)
            assert "Unrecoverable error" not in logs, logs
            assert "reject requeue=False" not in logs, logs
            # The refusals this test is about did happen (the full disk reached them).
            assert "taking no message until it takes writes" in logs, logs
        finally:
            client.close()
            server.stop()
            filler.unlink(missing_ok=True)


@faults.needs_redis_server
def test_connections_dropped_while_the_disk_is_full_are_waited_out(tmp_path: Path) -> None:
    """A double fault: while the disk is full, the network drops every connection of the
    worker (the broker's BRPOP and fanout subscription, the index's). Reconnecting meets a
    server that refuses PING; the worker must reconnect once it takes writes, not exit."""
    with faults.small_file_system(tmp_path / "disk", "64m") as disk:
        server = faults.PrivateRedis(disk / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        filler = disk / "filler"

        def full_then_dropped() -> None:
            faults.fill(filler)
            faults.wait_until(
                lambda: (
                    "No space left on device (MISCONF): waiting" in faults.worker_logs(tmp_path)
                ),
                60,
                "the worker's wait",
                lambda: faults.worker_logs(tmp_path),
            )
            client.client_kill_filter(_type="pubsub")
            client.client_kill_filter(_type="normal", skipme=True)

        def free_space_later() -> None:
            time.sleep(FULL_FOR)
            filler.unlink()

        env = cli_env(
            redis_url=server.url,
            prefix=PREFIX,
            NEWSDEDUP_INGEST__BATCH_SIZE="20",
            **faults.SHORT_HOLD,
        )
        inputs = faults.write_inputs(tmp_path / "in", 1500, seed=9)
        try:
            faults.held_mid_job(
                client,
                Keys(PREFIX),
                tmp_path,
                env,
                inputs,
                fault=full_then_dropped,
                repair=free_space_later,
                worker_says="Redis is refusing writes: it cannot write its AOF: No space left "
                "on device (MISCONF): waiting",
            )
            logs = faults.worker_logs(tmp_path)
            assert "Unrecoverable error" not in logs, logs
        finally:
            client.close()
            server.stop()
            filler.unlink(missing_ok=True)
