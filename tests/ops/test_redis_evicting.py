"""A Redis that deletes keys when it is full (an evicting maxmemory-policy) gets no writes.

Under `allkeys-*` Redis may delete any key to make room, under `volatile-*` the keys with a
time to live (the jobs' state, the locks): the index, queued batches, jobs and published
documents would vanish without a word, and a backfill would report a job of nonsense with
exit status 0. So the commands that process or queue work refuse such a server in one
line, and a running worker that finds it so set holds its batches, as when Redis is full,
until the policy is `noeviction` again. Commands that only read (stats, job, explain, tail)
still work, and `stats` says why nothing moves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import cli_env, run_cli
from support import faults

from workers.api import RedisUnavailable, open_index
from workers.index.keys import Keys
from workers.ops.connection import eviction_risk

PREFIX = "evict:"
REFUSED = re.compile(
    r"^newsdedup: error: Redis at redis://127\.0\.0\.1:\d+/0 deletes keys when it is full "
    r"\(maxmemory 1\.00G, maxmemory-policy (allkeys-lru|volatile-ttl)\), .*set "
    r"maxmemory-policy noeviction"
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("memory", "risk"),
    [
        ({"maxmemory": 0, "maxmemory_policy": "noeviction"}, None),
        # No maxmemory: Redis never needs room, whatever the policy says.
        ({"maxmemory": 0, "maxmemory_policy": "allkeys-lru"}, None),
        ({"maxmemory": 1 << 30, "maxmemory_policy": "noeviction"}, None),
        (
            {"maxmemory": 1 << 30, "maxmemory_human": "1.00G", "maxmemory_policy": "allkeys-lru"},
            "maxmemory 1.00G, maxmemory-policy allkeys-lru",
        ),
        (
            {"maxmemory": 5, "maxmemory_human": "5B", "maxmemory_policy": b"volatile-lfu"},
            "maxmemory 5B, maxmemory-policy volatile-lfu",
        ),
        ({"maxmemory": 7, "maxmemory_policy": "allkeys-random"}, "maxmemory 7, ..."),
        ({}, None),  # a server that says nothing of it: nothing to go by
    ],
)
def test_which_settings_delete_keys(memory: dict[str, Any], risk: str | None) -> None:
    found = eviction_risk(memory)
    if risk is not None and risk.endswith("..."):
        assert found is not None and found.startswith(risk[:-3])
    else:
        assert found == risk


@faults.needs_redis_server
def test_commands_that_write_refuse_a_server_that_evicts(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    env = cli_env(redis_url=private_redis.url, prefix=PREFIX)
    inputs = faults.write_inputs(tmp_path / "in", 40, seed=3)
    try:
        client.config_set("maxmemory", 1 << 30)
        for policy in ("allkeys-lru", "volatile-ttl"):
            client.config_set("maxmemory-policy", policy)
            for args in (
                ["worker", "--concurrency", "1"],
                ["backfill", str(inputs.folder)],
                ["poll", "--no-wait", "http://127.0.0.1:9/feed.xml"],
                ["index", "rebuild", "--yes"],
            ):
                result = run_cli(args, env, timeout=60)
                assert result.returncode == 1, (args, result.stdout, result.stderr)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and REFUSED.match(lines[0]), (args, result.stderr)
                assert policy in lines[0]
            with pytest.raises(RedisUnavailable, match="deletes keys when it is full"):
                open_index(redis_url=private_redis.url, overrides={"prefix": PREFIX})
        # Nothing was written by the refused commands: no job, no queued batch.
        assert client.zcard(Keys(PREFIX).jobs) == 0
        assert not client.llen(f"{PREFIX}ingest")
        # Reading still works, and stats says why the workers would wait.
        stats = run_cli(["stats"], env, timeout=60)
        assert stats.returncode == 0, stats.stderr
        flat = " ".join(stats.stdout.split())
        assert "blocked: Redis is deleting keys when full (maxmemory 1.00G, " in flat, flat
        assert "set maxmemory-policy noeviction" in flat
        # The same server without a maxmemory never deletes a key: accepted.
        client.config_set("maxmemory", 0)
        result = run_cli(["backfill", str(inputs.folder)], env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert client.zcard(Keys(PREFIX).jobs) == 1
    finally:
        client.close()


@faults.needs_redis_server
def test_a_separate_redis_broker_that_evicts_is_refused(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    broker = faults.PrivateRedis(tmp_path / "broker")
    broker.start()
    try:
        broker_client = redis.Redis.from_url(broker.url)
        broker_client.config_set("maxmemory", 1 << 30)
        broker_client.config_set("maxmemory-policy", "allkeys-lru")
        broker_client.close()
        env = cli_env(redis_url=private_redis.url, prefix=PREFIX, BROKER_URL=broker.url)
        inputs = faults.write_inputs(tmp_path / "in", 10, seed=4)
        result = run_cli(["backfill", str(inputs.folder)], env, timeout=60)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith(f"newsdedup: error: Redis at {broker.url} deletes keys")
    finally:
        broker.stop()


@faults.needs_redis_server
def test_a_running_worker_holds_its_batches_while_the_server_evicts(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    """The policy set to allkeys-lru under a running backfill: the workers stop writing,
    `backfill --wait` says why, and once it is noeviction again the job ends with every
    input accounted for once."""
    keys = Keys(PREFIX)
    env = cli_env(redis_url=private_redis.url, prefix=PREFIX, NEWSDEDUP_INGEST__BATCH_SIZE="20")
    client = redis.Redis.from_url(private_redis.url, socket_connect_timeout=1)
    inputs = faults.write_inputs(tmp_path / "in", 1500, seed=6)

    def evict() -> None:
        client.config_set("maxmemory", 1 << 30)
        client.config_set("maxmemory-policy", "allkeys-lru")

    try:
        faults.held_mid_job(
            client,
            keys,
            tmp_path,
            env,
            inputs,
            fault=evict,
            repair=lambda: client.config_set("maxmemory-policy", "noeviction"),
            worker_says="Redis is deleting keys when full (maxmemory 1.00G, maxmemory-policy "
            "allkeys-lru): set maxmemory-policy noeviction: waiting",
            backfill_says="blocked: Redis is deleting keys when full",
        )
        assert int(client.info("stats")["evicted_keys"]) == 0
    finally:
        client.close()
