"""`celery -A workers ...` finds Redis the way the `newsdedup` commands do: REDIS_URL, else
the embedded server running in the data dir, else one line and a non-zero exit. It never
falls back to a server nobody named (redis://127.0.0.1:6379/0 was that silent default)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from conftest import cli_env, start_worker, stop_workers

MACHINE_REDIS = "redis://127.0.0.1:6379"


def _celery(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _default_prefixed_keys() -> set[bytes] | None:
    """Keys under the default prefix in every database of the machine's Redis, if one runs."""
    try:
        found: set[bytes] = set()
        for db in range(16):
            client = redis.Redis.from_url(f"{MACHINE_REDIS}/{db}", socket_connect_timeout=2)
            found |= {bytes(key) for key in client.scan_iter(match="newsdedup:*", count=1000)}
            client.close()
    except redis.ConnectionError:
        return None
    return found


def test_no_redis_url_and_no_server_refuses_in_one_line(tmp_path: Path) -> None:
    before = _default_prefixed_keys()
    result = _celery(["inspect", "ping", "--timeout", "3"], cli_env(), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"newsdedup: error: REDIS_URL is not set and no embedded Redis runs in "
        f"{tmp_path / '.newsdedup'}: set REDIS_URL, or start a newsdedup command there "
        "first (e.g. `newsdedup worker`)\n"
    )
    assert not (tmp_path / ".newsdedup").exists()  # nothing created for nothing
    assert _default_prefixed_keys() == before  # no key in a Redis nobody named


def test_no_redis_url_reaches_the_running_embedded_server(tmp_path: Path) -> None:
    env = cli_env(data_dir=tmp_path / "data")
    worker = start_worker(env, "located", tmp_path / "worker.log", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            result = _celery(["inspect", "ping", "--timeout", "3"], env, cwd=tmp_path)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "located@" in result.stdout and "pong" in result.stdout
    finally:
        stop_workers([worker])
    # The worker was the server's last user: it stops, and celery refuses again.
    deadline = time.monotonic() + 30
    while (tmp_path / "data" / "redis.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    again = _celery(["inspect", "ping", "--timeout", "3"], env, cwd=tmp_path)
    assert again.returncode == 1 and "no embedded Redis runs in" in again.stderr


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0"])
def test_redis_url_wins(tmp_path: Path, url: str) -> None:
    """With REDIS_URL set, that server is used (here one that does not answer: the
    inspect fails on it rather than looking anywhere else)."""
    result = _celery(["inspect", "ping", "--timeout", "2"], cli_env(redis_url=url), cwd=tmp_path)
    assert result.returncode != 0
    assert "127.0.0.1:1" in result.stdout + result.stderr
    assert "no embedded Redis" not in result.stderr
