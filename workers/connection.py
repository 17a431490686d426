"""Connections: Redis clients from URLs, the embedded server, and readable failures."""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# Redis gone for a while (restart, failover, network): wait and retry, never a verdict.
REDIS_OUTAGE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

# What `celery -A workers worker` and the workers use when nothing is configured.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

_PASSWORD_IN_URL = re.compile(r"(?<=://)([^:/@]*):([^@]*)@")

T = TypeVar("T")


def as_text(value: Any) -> str:
    """A Redis reply value (bytes from redis-py unless decode_responses) as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisUnavailable(Exception):
    """Redis cannot be reached; the message is one line with the (redacted) URL."""


def redact(url: str) -> str:
    """The URL with any password replaced, safe for logs and error messages."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m.group(1)}:***@", url)


def _transient(error: Exception) -> bool:
    """Refused credentials and an untrusted TLS certificate stay so: no point retrying."""
    if isinstance(error, redis.AuthenticationError):
        return False
    # redis-py raises ConnectionError from within its handler of the ssl error.
    return not isinstance(error.__context__, ssl.SSLCertVerificationError)


class _Retry(Retry):
    """redis-py's Retry, giving up at once on errors that retrying cannot fix."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[[Exception], Any] | Callable[[Exception, int], Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            return _transient(error) and (is_retryable is None or is_retryable(error))

        return super().call_with_retry(do, fail, retryable, with_failure_count)


def redis_from_url(url: str) -> redis.Redis:
    # Retries with backoff ride out a Redis restart or a failover of a few seconds.
    retry = _Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=8)
    options: dict[str, Any] = {}
    if not url.startswith("unix://"):
        options = {"socket_connect_timeout": 5, "socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=list(REDIS_OUTAGE),
        health_check_interval=30,
        **options,
    )


def pack_command(
    args: Sequence[bytes | str | int | float], packed_tail: bytes = b"", tail_args: int = 0
) -> bytes:
    """One command in the Redis protocol: `args`, then `tail_args` more arguments already
    packed in `packed_tail` (each as `$<length>` CRLF `<bytes>` CRLF). hiredis packs in C;
    redis-py's own packing costs about half a microsecond per argument in Python, which the
    index's hundreds of arguments per document notice."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    if not packed_tail:
        return packed
    body = packed[packed.index(b"\r\n") + 2 :]
    return b"*%d\r\n%b%b" % (len(args) + tail_args, body, packed_tail)


def run_packed(client: redis.Redis, commands: Sequence[bytes]) -> list[Any]:
    """Send packed commands as one pipeline; each reply, or the ResponseError it was.

    Like redis-py's pipelines, a connection error sends the whole batch again on a new
    connection, within the client's retry policy (the scripts' redelivery guard makes a
    repeated input a no-op).
    """
    pool = client.connection_pool
    connection: Any = pool.get_connection()  # redis-py's Connection methods are untyped

    def execute() -> list[Any]:
        connection.send_packed_command(list(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)
        return replies

    try:
        result: list[Any] = connection.retry.call_with_retry(
            execute, lambda _error: connection.disconnect()
        )
        return result
    finally:
        pool.release(connection)


def ping(client: redis.Redis, url: str) -> None:
    """Check that Redis answers, as a command starting does: quickly. The client's own
    retries (about 9 s) are for a running process riding out a restart; a command started
    while Redis is down says so within a second instead."""
    pool = client.connection_pool
    quick = _Retry(ExponentialBackoff(cap=0.5, base=0.1), retries=1)
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **{**pool.connection_kwargs, "retry": quick}
        )
    )
    try:
        probe.ping()
    except redis.AuthenticationError as exc:  # a ConnectionError: catch it first
        raise RedisUnavailable(f"Redis at {redact(url)} refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
    finally:
        probe.close()
        probe.connection_pool.disconnect()


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the data Redis and the Celery broker are, and whether they are embedded."""

    redis_url: str
    broker_url: str
    embedded: bool
    # Embedded: descriptors that a process started to use this server must inherit
    # (`pass_fds`), so that the server runs as long as it does (see workers.embedded).
    inherit_fds: tuple[int, ...] = ()


def broker_for(redis_url: str) -> str:
    """Celery/kombu spell a Unix-socket Redis broker differently from redis-py."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
    "CERT_NONE": ssl.CERT_NONE,
    "CERT_OPTIONAL": ssl.CERT_OPTIONAL,
    "CERT_REQUIRED": ssl.CERT_REQUIRED,
}


def broker_ssl_options(broker_url: str) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for a rediss:// broker URL: its ssl_* query parameters
    (ssl_cert_reqs, ssl_ca_certs, ssl_certfile, ssl_keyfile, ...) with ssl_cert_reqs
    `required` unless given, as redis-py does for REDIS_URL. Without this, kombu would
    connect to a rediss:// URL naming no ssl_cert_reqs without checking the certificate."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss":
        return None
    options: dict[str, Any] = {
        name: value for name, value in parse_qsl(parts.query) if name.startswith("ssl_")
    }
    reqs = options.get("ssl_cert_reqs", "required")
    options["ssl_cert_reqs"] = _CERT_REQS.get(reqs, reqs)  # redis-py rejects a bad value
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].lower() != "false"
    return options


@contextlib.contextmanager
def endpoints(redis_url: str | None, broker_url: str | None, data_dir: Path) -> Iterator[Endpoints]:
    """The Redis/broker URLs to use: the configured ones, else the embedded server in
    `data_dir`, started or attached to for the time of the block."""
    if redis_url:
        yield Endpoints(redis_url, broker_url or broker_for(redis_url), embedded=False)
        return
    from workers.embedded import EmbeddedRedis

    server = EmbeddedRedis(data_dir)
    try:
        yield Endpoints(
            server.url,
            broker_url or broker_for(server.url),
            embedded=True,
            inherit_fds=(server.users_fd,),
        )
    finally:
        server.close()


def child_environment(ends: Endpoints) -> dict[str, str]:
    """Environment for worker processes we start, pointing them at the same Redis."""
    env = dict(os.environ)
    env["REDIS_URL"] = ends.redis_url
    env["BROKER_URL"] = ends.broker_url
    return env
