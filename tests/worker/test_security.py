"""Security, with real processes: a private redis-server that requires a password (plain
TCP and TLS), `newsdedup worker` processes and the CLI as a user runs them.

- Celery accepts JSON only: a pickled task message is refused and never unpickled.
- No module under workers/ imports a pickle-like serializer.
- REDIS_URL with a password, and rediss:// with a CA, work end to end (the Celery broker
  included); a wrong password or CA fails with one line and a non-zero exit.
- The password never shows in the CLI's output, worker logs, stats, metrics or Redis.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ROOT, cli_env, free_port, run_cli, start_worker

PREFIX = "ndsec:"
SUMMARY = "5 inputs, 5 published"


# --------------------------------------------------------------------------- servers


def redis_server_binary() -> str:
    """$NEWSDEDUP_TEST_REDIS_SERVER, else redis-server on PATH (TLS builds are common),
    else the embedded valkey-server (the TLS tests skip if it was built without TLS)."""
    from workers.ops.embedded import redis_executable

    return (
        os.environ.get("NEWSDEDUP_TEST_REDIS_SERVER")
        or shutil.which("redis-server")
        or (redis_executable())
    )


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that did not sign the server's certificate


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a throwaway CA")
    folder = tmp_path_factory.mktemp("tls")
    for name in ("ca", "other_ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=newsdedup test {name}",
            cwd=folder,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip
    return Certs(
        folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "other_ca.crt"
    )


@dataclass(frozen=True)
class Server:
    port: int
    password: str
    url: str  # the REDIS_URL a user would set
    client: redis.Redis  # a direct client, for checks


@contextlib.contextmanager
def redis_server(
    folder: Path, args: list[str], *, tls: Certs | None = None, password: str = ""
) -> Iterator[Server]:
    """A private redis-server with `password` (default: a random one), nothing saved,
    killed at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_hex(16)
    port = free_port()
    listen = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    log = folder / "redis.log"
    output = folder / "redis.out"  # config errors go here, before the log file is open
    command = [
        redis_server_binary(),
        *listen,
        "--bind", "127.0.0.1",
        "--requirepass", password,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(folder),
        "--logfile", str(log),
        *args,
    ]  # fmt: skip
    with output.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    options: dict[str, Any] = {}
    if tls:
        options = {"ssl": True, "ssl_ca_certs": str(tls.ca), "ssl_cert_reqs": "required"}
    client = redis.Redis(host="localhost", port=port, password=password, **options)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                text = "".join(f.read_text(errors="replace") for f in (output, log) if f.exists())
                if tls and "tls" in text.lower() and re.search(r"Bad directive|support", text):
                    pytest.skip(f"{command[0]} was built without TLS support: {text.strip()}")
                raise RuntimeError(f"redis-server exited with {process.returncode}: {text}")
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        scheme = "rediss" if tls else "redis"
        url = f"{scheme}://:{password}@localhost:{port}/0"
        if tls:
            url += f"?ssl_cert_reqs=required&ssl_ca_certs={tls.ca}"
        yield Server(port, password, url, client)
    finally:
        client.close()
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def plain_redis(tmp_path: Path) -> Iterator[Server]:
    with redis_server(tmp_path / "redis", []) as server:
        yield server


@pytest.fixture
def tls_redis(tmp_path: Path, certs: Certs) -> Iterator[Server]:
    tls_args = [
        "--tls-cert-file", str(certs.cert),
        "--tls-key-file", str(certs.key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    with redis_server(tmp_path / "redis-tls", tls_args, tls=certs) as server:
        yield server


# --------------------------------------------------------------------------- processes


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(data_dir=tmp_path / "data", redis_url=url, prefix=PREFIX)


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_log(
    log: Path, pattern: str, process: subprocess.Popen[Any], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if re.search(pattern, text):
            return text
        if process.poll() is not None:
            break
        time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise AssertionError(f"{pattern!r} not in {log} (exit {process.poll()}):\n{text}")


def one_line_failure(result: subprocess.CompletedProcess[str], *secrets_: str) -> str:
    """The CLI failed with exactly one stderr line, no traceback and no secret."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("newsdedup: error: "), lines[0]
    for secret in secrets_:
        assert secret not in result.stderr + result.stdout
    return lines[0]


def scrape_metrics(env: dict[str, str], out: Path) -> str:
    """Start `newsdedup metrics` on a free port, fetch /metrics, stop it; its output + body."""
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "metrics", "--port", "0"],
            env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        text = wait_for_log(out, r"http://127\.0\.0\.1:\d+/metrics", process, timeout=30)
        match = re.search(r"http://127\.0\.0\.1:\d+/metrics", text)
        assert match
        with urllib.request.urlopen(match.group(0), timeout=10) as response:
            body: str = response.read().decode()
        assert "newsdedup_up 1" in body, body
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return out.read_text(errors="replace") + body


def redis_contents(client: redis.Redis) -> Iterator[bytes]:
    """Every key name and value in the server's database 0, as bytes."""
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = client.zrange(key, 0, -1)
        elif kind == "stream":
            entries: list[tuple[Any, dict[Any, Any]]] = client.xrange(key)  # type: ignore[assignment]
            values = [item for _, fields in entries for pair in fields.items() for item in pair]
        else:
            values = []
        for value in values:
            yield value if isinstance(value, bytes) else str(value).encode()


def assert_secret_nowhere(
    server: Server, env: dict[str, str], tmp_path: Path, texts: dict[str, str]
) -> None:
    """The password is in none of `texts`, `stats --json`, the metrics output, nor Redis."""
    stats = run_cli(["stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    assert '"published": 5' in stats.stdout, stats.stdout
    texts = {
        **texts,
        "stats --json": stats.stdout + stats.stderr,
        "metrics": scrape_metrics(env, tmp_path / "metrics.out"),
    }
    for where, text in texts.items():
        assert server.password not in text, f"the password appears in {where}"
    stored = list(redis_contents(server.client))
    assert any(PREFIX.encode() in item for item in stored)  # the scan saw our data
    leaks = [item[:80] for item in stored if server.password.encode() in item]
    assert not leaks, f"the password is stored in Redis: {leaks}"


def backfill_through_worker(server: Server, tmp_path: Path) -> None:
    """`backfill --wait seeds/` processed by a separate worker; then check for secrets."""
    env = env_for(server.url, tmp_path)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "sec", log, loglevel="INFO")
    try:
        wait_for_log(log, r"\bready\.", worker)
        result = run_cli(["backfill", "--wait", "--timeout", "120", "seeds/"], env, timeout=180)
        assert result.returncode == 0, result.stderr + log.read_text(errors="replace")
        assert SUMMARY in result.stdout, result.stdout
        assert worker.poll() is None, "the worker exited"
    finally:
        stop(worker)
    worker_log = log.read_text(errors="replace")
    # Celery's banner and its "Connected to" line both name the broker, password masked.
    assert re.search(r"transport:\s+redis", worker_log), worker_log
    assert "Connected to redis" in worker_log, worker_log
    assert "Traceback" not in worker_log, worker_log
    texts = {"backfill output": result.stdout + result.stderr, "worker log": worker_log}
    assert_secret_nowhere(server, env, tmp_path, texts)


# --------------------------------------------------------------------------- password


def test_password_url_backfill_through_worker(plain_redis: Server, tmp_path: Path) -> None:
    backfill_through_worker(plain_redis, tmp_path)


def test_wrong_password_fails_with_one_line(plain_redis: Server, tmp_path: Path) -> None:
    wrong = secrets.token_hex(16)
    url = f"redis://:{wrong}@localhost:{plain_redis.port}/0"
    started = time.monotonic()
    result = run_cli(["backfill", "seeds/"], env_for(url, tmp_path), timeout=120)
    line = one_line_failure(result, wrong, plain_redis.password)
    assert "***" in line, line  # the URL is named, redacted
    assert re.search(r"password|credentials|auth", line, re.I), line
    assert time.monotonic() - started < 60
    worker = run_cli(["worker"], env_for(url, tmp_path), timeout=120)
    one_line_failure(worker, wrong, plain_redis.password)
    # Right data Redis, wrong broker password: sending the tasks fails, also in one line.
    broker_env = {**env_for(plain_redis.url, tmp_path), "BROKER_URL": url}
    enqueue = run_cli(["backfill", "seeds/"], broker_env, timeout=120)
    line = one_line_failure(enqueue, wrong, plain_redis.password)
    assert "broker" in line, line


def test_password_with_raw_at_signs_is_never_printed(tmp_path: Path) -> None:
    """A password holding raw "@" (as users paste it) is read whole by redis-py; every
    place the CLI names the URL hides all of it, not just the part before the first "@"."""
    parts = [secrets.token_hex(6) for _ in range(3)]
    password = "@".join(parts)

    def assert_hidden(text: str, where: str) -> None:
        for part in parts:
            assert part not in text, f"part of the password appears in {where}: {text}"

    # The "cannot reach" error, for a server that is not there.
    unreachable = f"redis://:{password}@127.0.0.1:1/0"
    for command in (["stats"], ["metrics", "--port", "0"], ["worker"]):
        result = run_cli(command, env_for(unreachable, tmp_path), timeout=60)
        line = one_line_failure(result, *parts)
        assert "redis://:***@127.0.0.1:1/0" in line, line
    # A server that wants that password: the worker's start line and Celery's banner, and
    # the metrics server's start line.
    with redis_server(tmp_path / "redis", [], password=password) as server:
        env = env_for(f"redis://:{password}@localhost:{server.port}/0", tmp_path)
        log = tmp_path / "worker.log"
        worker = start_worker(env, "at", log, loglevel="INFO")
        try:
            text = wait_for_log(log, r"\bready\.", worker)
        finally:
            stop(worker)
        assert f"newsdedup worker: Redis redis://:***@localhost:{server.port}/0" in text, text
        assert_hidden(log.read_text(errors="replace"), "the worker log")
        assert_hidden(scrape_metrics(env, tmp_path / "metrics.out"), "metrics")


# --------------------------------------------------------------------------- TLS


def test_rediss_url_backfill_through_worker(tls_redis: Server, tmp_path: Path) -> None:
    backfill_through_worker(tls_redis, tmp_path)


def test_rediss_url_with_wrong_ca_fails_with_one_line(
    tls_redis: Server, certs: Certs, tmp_path: Path
) -> None:
    url = tls_redis.url.replace(str(certs.ca), str(certs.other_ca))
    result = run_cli(["backfill", "seeds/"], env_for(url, tmp_path), timeout=120)
    line = one_line_failure(result, tls_redis.password)
    assert re.search(r"certificate|ssl|tls", line, re.I), line


def test_rediss_broker_url_verifies_the_certificate(
    tls_redis: Server, certs: Certs, tmp_path: Path
) -> None:
    """A rediss:// BROKER_URL without ssl_ca_certs/ssl_cert_reqs still checks the server's
    certificate (against the system CAs, which do not know our test CA): enqueueing fails,
    where kombu on its own would fall back to an unverified connection."""
    env = env_for(tls_redis.url, tmp_path)
    env["BROKER_URL"] = tls_redis.url.split("?", 1)[0]
    result = run_cli(["backfill", "seeds/"], env, timeout=180)
    line = one_line_failure(result, tls_redis.password)
    assert re.search(r"broker|certificate|ssl", line, re.I), line
    assert tls_redis.client.llen(f"{PREFIX}ingest") == 0


# --------------------------------------------------------------------------- JSON only


class Exploit:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_pickled_task_message_is_refused(plain_redis: Server, tmp_path: Path) -> None:
    # The payload is real: unpickling it here does create a marker.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Exploit(control)))
    assert control.exists()

    marker = tmp_path / "marker"
    env = env_for(plain_redis.url, tmp_path)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "victim", log, loglevel="INFO")
    try:
        wait_for_log(log, r"\bready\.", worker)
        from celery import Celery

        attacker = Celery("attacker", broker=plain_redis.url)
        attacker.conf.update(
            task_serializer="pickle",
            accept_content=["pickle", "json"],
            broker_transport_options={"global_keyprefix": PREFIX},
        )
        try:
            attacker.send_task(
                "newsdedup.ingest_batch",
                args=(Exploit(marker),),
                queue="ingest",
                serializer="pickle",
            )
        finally:
            attacker.close()
        text = wait_for_log(log, r"ContentDisallowed", worker)
        assert "application/x-python-serialize" in text, text
        time.sleep(1.0)
        assert worker.poll() is None, "the worker exited"
    finally:
        stop(worker)
    assert not marker.exists(), "the worker unpickled the message"
    assert plain_redis.client.llen(f"{PREFIX}ingest") == 0  # refused, not left to loop
    assert plain_redis.password not in log.read_text(errors="replace")


def test_celery_app_accepts_json_only() -> None:
    code = (
        "from workers.worker.app import app; c = app.conf; "
        "print(c.accept_content, c.result_accept_content, c.task_serializer, "
        "c.result_serializer, c.event_serializer, c.beat_scheduler)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=cli_env(redis_url="redis://127.0.0.1:1/0"),  # named, never reached
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['json']",
        "None",  # falls back to accept_content
        "json",
        "json",
        "json",
        "workers.feeds.schedule:FeedScheduler",  # not Celery's shelve-backed scheduler
    ]
