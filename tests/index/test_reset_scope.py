"""`newsdedup reset` (and `index reset`) delete exactly their own deployment's keys.

A real backfill through a separately started worker fills a prefix; its keys are copied
under the prefixes of neighbouring deployments that a glob would also hit: one that starts
with ours (`nd:` and `nd:b:`), and, for a prefix with glob characters (`g*[x]:`), one its
pattern matches (`gzzx:`). After the CLI's reset of our prefix nothing of ours is left
and every neighbour's key is there, unchanged.

Uses the test session's Redis (REDIS_URL when set, e.g. redis://127.0.0.1:6379/14), under
a private base prefix deleted afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import RedisTarget, cli_env, run_cli, start_worker, stop_workers

from workers.index.keys import Keys, glob_escape


@pytest.fixture
def base(redis_target: RedisTarget) -> Iterator[str]:
    value = f"ndreset{secrets.token_hex(4)}:"
    yield value
    client = redis_target.client
    keys = list(client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        client.unlink(*keys)


def keys_under(client: redis.Redis, prefix: str) -> dict[bytes, bytes]:
    """Every key starting with `prefix`, with its DUMP (type and value)."""
    found: dict[bytes, bytes] = {}
    for key in client.scan_iter(match=glob_escape(prefix) + "*", count=1000):
        dumped = client.dump(key)
        assert isinstance(dumped, bytes)
        found[key] = dumped
    return found


def backfill_through_worker(target: RedisTarget, prefix: str, tmp_path: Path) -> dict[str, str]:
    env = cli_env(data_dir=tmp_path / "data", redis_url=target.url, prefix=prefix)
    log = tmp_path / f"worker-{secrets.token_hex(2)}.log"
    worker = start_worker(env, f"reset{secrets.token_hex(2)}", log)
    try:
        result = run_cli(["backfill", "--wait", "--timeout", "120", "seeds/"], env, timeout=180)
        assert result.returncode == 0, result.stderr + log.read_text(errors="replace")
        assert "5 inputs, 5 published" in result.stdout, result.stdout
    finally:
        stop_workers([worker])
    return env


def copy_keys(client: redis.Redis, source: str, target: str) -> dict[bytes, bytes]:
    """Another deployment's keys: ours, renamed from prefix `source` to `target`."""
    copied = {}
    for key, dumped in keys_under(client, source).items():
        name = target.encode() + key[len(source.encode()) :]
        client.restore(name, 0, dumped, replace=True)
        copied[name] = dumped
    return copied


def own_keys(client: redis.Redis, prefix: str, *others: str) -> set[bytes]:
    return {
        key
        for key in keys_under(client, prefix)
        if not any(key.startswith(other.encode()) for other in others)
    }


@pytest.mark.parametrize(
    "ours, neighbours", [("nd:", ["nd:b:"]), ("g*[x]:", ["gzzx:", "g*[x]:b:"])]
)
def test_reset_deletes_exactly_its_own_keys(
    redis_target: RedisTarget, base: str, tmp_path: Path, ours: str, neighbours: list[str]
) -> None:
    client = redis_target.client
    prefix = base + ours
    env = backfill_through_worker(redis_target, prefix, tmp_path)
    theirs: dict[bytes, bytes] = {}
    for neighbour in neighbours:
        theirs.update(copy_keys(client, prefix, base + neighbour))
    others = [base + n for n in neighbours]
    mine = own_keys(client, prefix, *others)
    assert mine and all(Keys(prefix).owns(key) for key in mine)
    assert any(b":src:" in key for key in mine) and any(b":ix:" in key for key in mine)

    index_reset = run_cli(["index", "reset", "--yes"], env)
    assert index_reset.returncode == 0, index_reset.stderr
    left = own_keys(client, prefix, *others)
    assert not any(key.startswith(f"{prefix}ix:".encode()) for key in left)
    assert left == {key for key in mine if not key.startswith(f"{prefix}ix:".encode())}

    result = run_cli(["reset", "--yes"], env)
    assert result.returncode == 0, result.stderr
    assert f"deleted {len(left)} keys" in result.stdout, result.stdout
    assert own_keys(client, prefix, *others) == set()
    after = {
        key: dumped for n in neighbours for key, dumped in keys_under(client, base + n).items()
    }
    assert after == theirs  # every neighbour's key, unchanged


def test_owns_every_key_newsdedup_names_and_no_neighbours() -> None:
    import uuid

    from workers.feeds.poll import feed_job, feed_key
    from workers.worker.app import FETCH_QUEUE, INGEST_QUEUE
    from workers.worker.jobs import new_job_id

    keys = Keys("nd:")
    feed = feed_key("https://example.org/feed")
    names = [
        *(keys.stream(name) for name in ("docs", "duplicates", "dead")),
        keys.stats, keys.dead_reasons, keys.sources, keys.stats_minute(29000000),
        keys.index_meta, keys.index_count, keys.learner_sources, keys.jobs, keys.feeds,
        keys.beat_lock, keys.host_gate("example.org:443"), keys.poll(str(uuid.uuid4())),
        keys.feed(feed), keys.feed_lock(feed), keys.feed_tries(feed),
        *(f(job) for job in (new_job_id(), feed_job(feed)) for f in (
            keys.job, keys.job_done, keys.job_tasks, keys.job_attempts, keys.job_cursor
        )),
        *(key for name in ("sources", "x:c", "*", "\n") for key in (
            keys.source_stats(name), *keys.learner_keys(name)
        )),
        f"nd:{INGEST_QUEUE}", f"nd:{FETCH_QUEUE}\x06\x163", "nd:_kombu.binding.ingest",
        "nd:unacked", "nd:ix:l:4095", "nd:ix:df:3", "nd:stats:source:old", "nd:bp:old:c",
    ]  # fmt: skip
    assert [name for name in names if not keys.owns(name)] == []
    for name in names:
        assert not Keys("nd:b:").owns(name) and not Keys("n").owns(name)
    assert not keys.owns("nd:b:docs") and not keys.owns("nd:ix:docs")
    assert not keys.owns("nd:job:feed-x") and not keys.owns("nd:src:names:docs")


def test_source_names_never_reach_another_key() -> None:
    keys = Keys("nd:")
    names = ["sources", "names", "x", "x:c", "a:b", "a:b:l", "*", "..", "", "\u200b", "a\nb"]
    per_source = [(keys.source_stats(n), *keys.learner_keys(n)) for n in names]
    flat = [key for group in per_source for key in group]
    fixed = {keys.sources, keys.learner_sources, keys.stats, keys.dead_reasons}
    assert len(set(flat)) == len(flat) and not fixed & set(flat)
    # Fixed length, whatever the name's.
    assert {len(group[0]) for group in per_source} == {len("nd:src::stats") + 32}
