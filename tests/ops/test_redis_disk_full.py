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
from collections.abc import Callable
from pathlib import Path

import redis
from conftest import cli_env
from support import faults

from workers.index.keys import Keys

PREFIX = "diskfull:"
FULL_FOR = 75.0  # seconds the disk stays full after the worker was seen waiting 6 s
# What the worker says of the full disk: a task waiting inside its Redis calls
# (WORKER_SAYS), or, when the disk filled between tasks, its consumer taking no message.
MET_THE_FULL_DISK = "Redis is refusing writes: it cannot write its AOF: No space left on device"
WORKER_SAYS = MET_THE_FULL_DISK + " (MISCONF): waiting"


def _backfill_while_the_disk_fills(
    tmp_path: Path,
    seed: int,
    after_full: Callable[[redis.Redis], None] | None = None,
    worker_says: str = WORKER_SAYS,
) -> str:
    """A backfill on a private redis-server whose AOF disk fills once it is under way
    (then `after_full(client)`, once the worker waits) and is freed FULL_FOR seconds
    later: it must end with every input accounted for once. The worker's log."""
    with faults.small_file_system(tmp_path / "disk", "64m") as disk:
        server = faults.PrivateRedis(disk / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        filler = disk / "filler"

        def fill() -> None:
            faults.fill(filler)
            if after_full is not None:
                faults.wait_until(
                    lambda: worker_says in faults.worker_logs(tmp_path),
                    60,
                    "the worker's wait",
                    lambda: faults.worker_logs(tmp_path),
                )
                after_full(client)

        def free_space_later() -> None:
            time.sleep(FULL_FOR)
            filler.unlink()

        env = cli_env(
            redis_url=server.url,
            prefix=PREFIX,
            NEWSDEDUP_INGEST__BATCH_SIZE="20",
            **faults.SHORT_HOLD,
        )
        inputs = faults.write_inputs(tmp_path / "in", 1500, seed=seed)
        try:
            faults.held_mid_job(
                client,
                Keys(PREFIX),
                tmp_path,
                env,
                inputs,
                fault=fill,
                repair=free_space_later,
                worker_says=worker_says,
                backfill_says="blocked: Redis is refusing writes: it cannot write its AOF",
            )
            logs = faults.worker_logs(tmp_path)
            assert "Unrecoverable error" not in logs, logs
            return logs
        finally:
            client.close()
            server.stop()
            filler.unlink(missing_ok=True)


@faults.needs_redis_server
def test_a_full_disk_under_redis_is_waited_out(tmp_path: Path) -> None:
    logs = _backfill_while_the_disk_fills(tmp_path, seed=8)
    assert "reject requeue=False" not in logs, logs
    # The refusals this test is about did happen (the full disk reached them).
    assert "taking no message until it takes writes" in logs, logs


@faults.needs_redis_server
def test_connections_dropped_while_the_disk_is_full_are_waited_out(tmp_path: Path) -> None:
    """A double fault: while the disk is full, the network drops every connection of the
    worker (the broker's BRPOP and fanout subscription, the index's). Reconnecting meets a
    server that refuses PING; the worker must reconnect once it takes writes, not exit
    (nor lose a pool process to a soft time limit that comes after its task ended)."""

    def drop_connections(client: redis.Redis) -> None:
        client.client_kill_filter(_type="pubsub")
        client.client_kill_filter(_type="normal", skipme=True)

    # Whichever part of the worker met the full disk first: the connections are dropped
    # then (waiting for a task's own wait failed the test when the disk filled between
    # tasks, the consumer holding every message).
    _backfill_while_the_disk_fills(
        tmp_path, seed=9, after_full=drop_connections, worker_says=MET_THE_FULL_DISK
    )
