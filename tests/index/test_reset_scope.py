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
from conftest import RedisTarget, cli_env, fresh_prefix, run_cli, start_worker, stop_workers

from workers.index.keys import Keys, glob_escape


@pytest.fixture
def base(redis_target: RedisTarget) -> Iterator[str]:
    with fresh_prefix(redis_target.client, "ndreset") as value:
        yield value


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
