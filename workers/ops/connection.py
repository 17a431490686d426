"""Connections: Redis clients from URLs, the embedded server, and readable failures."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    BusyLoadingError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.retry import Retry

from workers.config import Settings, exported_settings

# Redis refusing work for a while: unreachable or restarting (connection errors, timeouts,
# LOADING), full under `noeviction` (OOM), a read-only replica after a failover (READONLY),
# a failover in progress (MASTERDOWN, TRYAGAIN), an ACL that denies newsdedup's user a
# command or key (NOPERM: commands refuse it at start; a worker waits for the fix). None
# of these is an input's fault: wait and try again, never a verdict. `outage_reason` also
# knows the refusals redis-py has no class for (MISCONF, BUSY, NOREPLICAS).
REDIS_OUTAGE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    MasterDownError,
    NoPermissionError,
)
_OUTAGE_CODES = {
    "OOM": "full: used memory is over maxmemory (OOM)",
    "READONLY": "read-only: a replica, not the primary (READONLY)",
    "LOADING": "loading its data into memory (LOADING)",
    "MASTERDOWN": "failing over (MASTERDOWN)",
    "TRYAGAIN": "failing over (TRYAGAIN)",
    "MISCONF": "refusing writes: it cannot save its data to disk (MISCONF)",
    "BUSY": "busy running a script (BUSY)",
    "NOREPLICAS": "refusing writes: not enough replicas (NOREPLICAS)",
    # An ACL that does not let newsdedup's user run a command or touch a key: nothing an
    # input did, and fixed on the server (the message names the command or key).
    "NOPERM": "refusing this user a command or key (NOPERM)",
}
DENIED = _OUTAGE_CODES["NOPERM"]  # how `outage_reason` starts for an ACL's refusal
# Redis before 7 wraps the error a script's command met: "Error running script (call to
# f_...): @user_script:2: @user_script: 2: -OOM command not allowed ...".
_SCRIPT_ERROR_CODE = re.compile(r"-(" + "|".join(_OUTAGE_CODES) + r") ")

# MISCONF for a failed AOF write says why ("MISCONF Errors writing to the AOF file: No
# space left on device", in a script's error followed by " script: ..."); for a failed RDB
# snapshot it says only to read the server's log.
_AOF_WRITE_ERROR = re.compile(r"Errors writing to the AOF file: (.+?)(?: script:|\.?$)")

# redis-py puts the command before the server's reply when a pipeline's command fails
# ("Command # 1 (SADD key 32) of pipeline caused error: MISCONF ..."); the code follows.
_PIPELINE_ERROR = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.DOTALL)

# A URL's userinfo: from "://" to the LAST "@" of the netloc (which ends at the first "/",
# "?" or "#", or at whitespace in a message). A password may hold a raw "@", and urllib and
# redis-py read it whole that way, so everything up to the last one is secret.
_USERINFO = re.compile(r"(?<=://)([^/?#\s]*)@")

T = TypeVar("T")

log = logging.getLogger(__name__)


def as_text(value: Any) -> str:
    """A Redis reply value (bytes from redis-py unless decode_responses) as str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisUnavailable(Exception):
    """Redis cannot be reached; the message is one line with the (redacted) URL."""


class ServerEvicts(RedisUnavailable):
    """Redis deletes keys of its own accord when it is full (an evicting maxmemory-policy
    under a maxmemory): newsdedup writes nothing to it. `risk` says which setting."""

    def __init__(self, risk: str, url: str | None = None) -> None:
        self.risk = risk
        self.reason = evicting_reason(risk)  # what `outage_reason` says of it
        where = f"Redis at {redact(url)}" if url else "Redis"
        super().__init__(
            f"{where} deletes keys when it is full ({risk}), which would lose the index, "
            "jobs, queued batches and published documents without a word: set "
            "maxmemory-policy noeviction (then newsdedup waits while Redis is full)"
        )


def evicting_reason(risk: str) -> str:
    """Why the workers wait on a server that would evict keys (`eviction_risk`'s words)."""
    return f"deleting keys when full ({risk}): set maxmemory-policy noeviction"


# Seconds between looks while a worker waits for a server that evicts keys to stop.
EVICTION_LOOK_EVERY = 5.0


def eviction_risk(memory: Mapping[str, Any]) -> str | None:
    """The settings under which Redis may delete keys to make room (from INFO memory), in a
    few words; None when it never does: policy `noeviction`, or no maxmemory at all.
    Every other policy can take newsdedup's keys: `allkeys-*` any key, `volatile-*` the
    keys with a time to live, which include the jobs' state and the locks."""
    policy = as_text(memory.get("maxmemory_policy", "noeviction"))
    limit = int(memory.get("maxmemory", 0) or 0)
    if policy == "noeviction" or limit == 0:
        return None
    shown = as_text(memory.get("maxmemory_human", limit))
    return f"maxmemory {shown}, maxmemory-policy {policy}"


def server_eviction_risk(client: redis.Redis) -> str | None:
    """`eviction_risk` of the server `client` talks to; None too when INFO is not allowed
    (an ACL): then there is nothing to go by."""
    try:
        memory: Any = client.info("memory")
    except redis.ResponseError:
        return None
    return eviction_risk(memory)


def wait_while_evicting(
    client: redis.Redis, until: float, on_wait: Callable[[str, float], None] | None = None
) -> None:
    """Return once the server would not evict keys (`server_eviction_risk`), checking every
    few seconds until `until` (time.monotonic()); past it, raise `ServerEvicts`, an outage
    (`outage_reason`). What a worker does before it writes a batch: a server that took the
    setting mid-run must not delete what the batch is about to write."""
    first = time.monotonic()
    while (risk := server_eviction_risk(client)) is not None:
        error = ServerEvicts(risk)
        now = time.monotonic()
        if now >= until:
            raise error
        if on_wait is not None:
            on_wait(error.reason, now - first)
        time.sleep(min(EVICTION_LOOK_EVERY, until - now))


def redact(text: str) -> str:
    """`text`, a URL or a message naming URLs, safe for logs and error messages: each URL's
    password replaced (`user:***@host`), or its whole userinfo when it has no password
    (`***@host`: a lone token may be the secret)."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match.group(1).partition(":")
        return f"{user}:***@" if colon else "***@"

    return _USERINFO.sub(hide, text)


def _transient(error: BaseException) -> bool:
    """Refused credentials and an untrusted TLS certificate stay so: no point retrying."""
    if isinstance(error, redis.AuthenticationError):
        return False
    # redis-py raises ConnectionError from within its handler of the ssl error.
    return not isinstance(error.__context__, ssl.SSLCertVerificationError)


# redis-py turns these replies into classes and drops the code from the message.
_ERROR_CLASS_CODES: dict[type[Exception], str] = {
    OutOfMemoryError: "OOM",
    ReadOnlyError: "READONLY",
    BusyLoadingError: "LOADING",
    MasterDownError: "MASTERDOWN",
    TryAgainError: "TRYAGAIN",
    NoPermissionError: "NOPERM",
}


def outage_reason(error: BaseException | None) -> str | None:
    """Why Redis refuses work for now, in a few words; None when `error` (or what it wraps:
    kombu re-raises Redis errors as its own) is no outage but a real failure."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ServerEvicts):
            return error.reason
        if isinstance(error, redis.AuthenticationError) or not _transient(error):
            return None  # a ConnectionError that waiting cannot fix
        if isinstance(error, redis.ConnectionError | redis.TimeoutError) and not isinstance(
            error, BusyLoadingError
        ):
            return f"unreachable: {redact(str(error)) or type(error).__name__}"
        if isinstance(error, redis.RedisError):
            text = str(error)
            if pipeline := _PIPELINE_ERROR.match(text):
                text = text[pipeline.end() :]
            code = _ERROR_CLASS_CODES.get(type(error)) or text.split(" ", 1)[0]
            if code not in _OUTAGE_CODES and (found := _SCRIPT_ERROR_CODE.search(text)):
                code = found.group(1)
            if code == "NOPERM":
                detail = text.removeprefix("NOPERM ")
                return f"{_OUTAGE_CODES[code]}: {detail}; grant it in the server's ACL"
            if code == "MISCONF" and (aof := _AOF_WRITE_ERROR.search(text)):
                return f"refusing writes: it cannot write its AOF: {aof.group(1)} (MISCONF)"
            if code in _OUTAGE_CODES:
                return _OUTAGE_CODES[code]
            return None
        error = error.__cause__ or error.__context__
    return None


def is_outage(error: BaseException) -> bool:
    return outage_reason(error) is not None


# While Redis refuses a long-running command's work, it says so this often (seconds).
OUTAGE_SAY_EVERY = 30.0


class OutageNotice:
    """What a long-running command says while Redis refuses its work: `refused(reason,
    seconds so far)` at once, then every `every` seconds while it lasts, and `back()` once
    Redis takes it again (the beat's log, a following `tail`'s stderr). The command calls
    `refused(reason)` on each refusal and `answered()` on each success."""

    def __init__(
        self,
        refused: Callable[[str, float], None],
        back: Callable[[], None],
        every: float = OUTAGE_SAY_EVERY,
    ) -> None:
        self._say_refused, self._say_back, self._every = refused, back, every
        self._since: float | None = None  # time.monotonic() of the first refusal
        self._said_at: float | None = None

    def refused(self, reason: str) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if self._said_at is None or now - self._said_at >= self._every:
            self._said_at = now
            self._say_refused(reason, now - self._since)

    def answered(self) -> None:
        if self._since is not None:
            self._since = self._said_at = None
            self._say_back()


def retry_while_outage(call: Callable[[], T], wait: Callable[[BaseException], None]) -> T:
    """`call()`, tried again after `wait(error)` returns whenever an outage refused it (for
    as long as `wait` returns rather than raises); any other error is raised."""
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_outage(exc):
                raise
            wait(exc)


class HoldingRetry(Retry):
    """redis-py's retry policy for every client newsdedup opens: an outage (`outage_reason`)
    is waited out with exponential backoff; anything else is raised at once.

    How long: `window` seconds from the first failure (a command riding out a restart or a
    failover), or until the deadline of `holding()` when that is later: a worker holds its
    batch, unacknowledged, while Redis is full or away, rather than give up on it.
    One object serves every connection of a client (redis-py deep-copies the policy into
    each connection), so a deadline set by a task reaches the connection its thread uses.
    """

    def __init__(
        self,
        window: float = 10.0,
        *,
        cap: float = 5.0,
        base: float = 0.1,
        on_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        super().__init__(ExponentialBackoff(cap=cap, base=base), retries=-1)
        self.update_supported_errors([Exception])  # sorted out by outage_reason
        self.window, self.cap, self.base = window, cap, base
        self.on_wait = on_wait  # called with (reason, seconds waited so far) while waiting
        self.hold_until: float | None = None  # time.monotonic() deadline of `holding`

    def __deepcopy__(self, memo: dict[int, Any]) -> HoldingRetry:
        return self

    @contextlib.contextmanager
    def holding(self, until: float) -> Iterator[None]:
        """Wait out outages until `until` (time.monotonic()) within the block."""
        previous, self.hold_until = self.hold_until, until
        try:
            yield
        finally:
            self.hold_until = previous

    def deadline(self, first_failure: float) -> float:
        if self.hold_until is not None:
            return self.hold_until
        return first_failure + self.window

    def pause(self, failures: int, deadline: float) -> float:
        """The wait before attempt `failures` + 1, never past `deadline`; 0 means give up."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2.0 ** min(failures, 30), remaining))

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[[Exception], Any] | Callable[[Exception, int], Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        failures, first, deadline = 0, 0.0, 0.0
        while True:
            try:
                return do()
            except Exception as error:
                reason = outage_reason(error)
                retryable = reason is not None and (is_retryable is None or is_retryable(error))
                if not retryable and not isinstance(error, redis.ConnectionError):
                    raise  # an error reply: the connection is fine as it is
                failures += 1
                # redis-py's handler: drop the connection (a new one is made for the retry).
                if with_failure_count:
                    fail(error, failures)  # type: ignore[call-arg]
                else:
                    fail(error)  # type: ignore[call-arg]
                if not retryable:
                    raise
                if failures == 1:
                    first = time.monotonic()
                    deadline = self.deadline(first)
                seconds = self.pause(failures, deadline)
                if seconds <= 0:
                    raise
                if self.on_wait is not None and reason is not None:
                    self.on_wait(reason, time.monotonic() - first)
                time.sleep(seconds)


def no_waiting(client: redis.Redis) -> contextlib.AbstractContextManager[None]:
    """Within the block, `client`'s commands do not wait out an outage: the answer (or
    the refusal) is wanted now."""
    retry = client.get_retry()
    if isinstance(retry, HoldingRetry):
        return retry.holding(until=0.0)
    return contextlib.nullcontext()


def redis_from_url(url: str, retry: HoldingRetry | None = None) -> redis.Redis:
    """A client whose commands wait out an outage (`HoldingRetry`, about 10 s by default:
    a Redis restart or a failover) and fail at once on anything else.

    Replies are awaited without a socket timeout: a blocking stream read (`tail --follow`
    waits 5 s at a time) or a long script is no outage. redis-py 8 otherwise gives up
    reading after 5 s; a dead peer is found by TCP keepalive and the health check."""
    options: dict[str, Any] = {}
    if not url.startswith("unix://"):
        options = {"socket_connect_timeout": 5, "socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        retry=retry or HoldingRetry(),
        retry_on_error=list(REDIS_OUTAGE),
        health_check_interval=30,
        socket_timeout=None,
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


# The oldest server newsdedup supports: what CI runs (the machine's Redis 7.0, and the
# embedded Valkey 9.1). Valkey reports the Redis version it is compatible with (7.2.4).
OLDEST_SERVER = (7, 0)


def too_old(server_info: dict[str, Any]) -> str | None:
    """The server's version when it is older than `OLDEST_SERVER` (from INFO server)."""
    version = str(server_info.get("redis_version", ""))
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return version if numbers and numbers < OLDEST_SERVER else None


# Seconds a starting command waits for Redis's first answer (`ping`).
PROBE_TIMEOUT = 10.0
# What Redis answers SELECT of a database it does not have.
NO_SUCH_DB = "DB index is out of range"


def ping(client: redis.Redis, url: str, *, writes: bool = False) -> None:
    """Check that Redis answers, and is a version we support, as a command starting does:
    quickly. The client's own retries (about 9 s) are for a running process riding out a
    restart; a command started while Redis is down says so within a second instead.
    With `writes` (a command that processes or queues work), a server that would evict
    keys is refused too (`ServerEvicts`); commands that only read or delete may use it."""
    pool = client.connection_pool
    quick = HoldingRetry(window=0.3)
    # A reply awaited for ever would hang the command without a word on a server that
    # takes connections but never answers (stopped with SIGSTOP, wedged, or something
    # that is not Redis and stays silent); INFO and PING answer at once on a live one.
    # Each read waits half of it: the quick retry may ask twice. No health check: its PING
    # on connecting would wait (and retry) again.
    probe_options = {
        **pool.connection_kwargs,
        "retry": quick,
        "socket_timeout": PROBE_TIMEOUT / 2,
        "health_check_interval": 0,
    }
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **probe_options
        )
    )
    try:
        try:
            old = too_old(probe.info("server"))
        except redis.ResponseError as exc:  # INFO not allowed to this user (ACL): answering will do
            if NO_SUCH_DB in str(exc):
                raise
            probe.ping()
            old = None
        risk = server_eviction_risk(probe) if writes and not old else None
    except redis.ResponseError as exc:
        if NO_SUCH_DB not in str(exc):
            raise
        raise RedisUnavailable(
            f"Redis at {redact(url)} has no database of the number its URL gives (the URL's "
            "path, /0 to /15 on a default server: the server's `databases` setting)"
        ) from None
    except redis.InvalidResponse as exc:
        raise RedisUnavailable(
            f"what answers at {redact(url)} does not speak Redis's protocol ({str(exc).strip()}): "
            "is it the address of a Redis server?"
        ) from None
    except redis.AuthenticationError as exc:  # a ConnectionError: catch it first
        raise RedisUnavailable(f"Redis at {redact(url)} refused the credentials: {exc}") from None
    except redis.TimeoutError:
        raise RedisUnavailable(
            f"Redis at {redact(url)} took the connection but did not answer within "
            f"{PROBE_TIMEOUT:g} s (a stopped or wedged server, or not Redis)"
        ) from None
    except (redis.ConnectionError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
    finally:
        probe.close()
        probe.connection_pool.disconnect()
    if old:
        oldest = ".".join(map(str, OLDEST_SERVER))
        raise RedisUnavailable(
            f"Redis at {redact(url)} is version {old}; newsdedup needs Redis {oldest} or newer "
            "(or Valkey)"
        )
    if risk:
        raise ServerEvicts(risk, url)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the data Redis and the Celery broker are, and whether they are embedded."""

    redis_url: str
    broker_url: str
    embedded: bool
    # Embedded: descriptors that a process started to use this server must inherit
    # (`pass_fds`), so that the server runs as long as it does (see workers.ops.embedded).
    inherit_fds: tuple[int, ...] = ()
    # Embedded: no other process used the server when this one attached, so no worker
    # holds a message its broker keeps unacknowledged: the worker that took it is gone.
    alone: bool = False


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
    from workers.ops.embedded import EmbeddedRedis

    server = EmbeddedRedis(data_dir)
    try:
        yield Endpoints(
            server.url,
            broker_url or broker_for(server.url),
            embedded=True,
            inherit_fds=(server.users_fd,),
            alone=server.alone and not broker_url,
        )
    except BaseException:
        # What ended the block is the error to report; a server left running because it
        # holds writes it could not save is told beside it, not instead of it.
        try:
            server.close()
        except RedisUnavailable as unsaved:
            log.error("newsdedup: error: %s", unsaved)
        raise
    server.close()


def located_settings(settings: Settings) -> Settings:
    """`settings` with the Redis a process not started by a `newsdedup` command uses
    (`celery -A workers ...`): REDIS_URL when set, else the embedded server of the data
    dir when it runs, attached to for the life of this process (so that it keeps running
    while this process needs it). Never a guess: with neither, `RedisUnavailable`."""
    if settings.redis_url:
        return settings
    from workers.ops.embedded import EmbeddedRedis, NotRunning

    try:
        # Deliberately never closed: the process holds its share of the server until it
        # ends, and its forked pool children with it.
        server = EmbeddedRedis(settings.data_dir, start=False)
    except NotRunning as exc:
        raise RedisUnavailable(
            f"REDIS_URL is not set and no embedded Redis runs in {exc}: set REDIS_URL, or "
            "start a newsdedup command there first (e.g. `newsdedup worker`)"
        ) from None
    broker = settings.broker_url or broker_for(server.url)
    return settings.model_copy(update={"redis_url": server.url, "broker_url": broker})


def connected_settings(settings: Settings, ends: Endpoints) -> Settings:
    """`settings` pointed at the Redis and broker of `ends`."""
    return settings.model_copy(update={"redis_url": ends.redis_url, "broker_url": ends.broker_url})


def child_environment(ends: Endpoints, settings: Settings) -> dict[str, str]:
    """Environment for worker processes we start: this command's settings (`--config`
    included), pointing them at the same Redis."""
    env = dict(os.environ)
    env["REDIS_URL"] = ends.redis_url
    env["BROKER_URL"] = ends.broker_url
    env.update(exported_settings(connected_settings(settings, ends)))
    return env
