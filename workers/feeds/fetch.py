"""HTTP for feeds and article pages: safe URLs, retries, redirects, size caps, politeness.

Every hop of a request is checked before it is made (policy.py: http/https only, no
private or loopback addresses unless allowed), redirects are followed here rather than by
httpx so that each hop is checked, bodies are capped after decompression, and one request
at a time goes to a host across all workers (gate.py).

Per-read timeouts do not bound a request: a server sending one byte a second never lets
a read time out. Each `get()` therefore has a total deadline (`HttpPolicy.deadline`)
covering the host gate, connecting, TLS, every redirect hop and retry, the headers and
the body: every socket operation waits at most what is left of it (`_DeadlineBackend`),
and a request over it ends as FetchError("timeout").
"""

from __future__ import annotations

import contextvars
import email.utils
import logging
import random as _random
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from workers.feeds.gate import HostGate, NoHostGate, gate_host
from workers.feeds.policy import FetchError, HttpPolicy, Resolver, check_url
from workers.ingest.spec import GZIP_MAGIC
from workers.ops.connection import redact

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # final URL after redirects
    status: int  # 2xx, or 304
    headers: Mapping[str, str]  # lower-case names, as received (content-encoding too)
    content: bytes  # decoded; b"" for 304
    attempts: int  # requests made for the last hop, retries included

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "")

    @property
    def last_modified(self) -> str:
        return self.headers.get("last-modified", "")


def _without_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(fragment=""))


# ---------------------------------------------------------------------------- bodies


# The request headers that make a 304 answer possible.
_CONDITIONAL = frozenset({"if-none-match", "if-modified-since"})


class _TooLarge(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


class _Truncated(Exception):
    """The body provably ended early: its compressed stream has no end, or fewer bytes
    came than its Content-Length announced. The message says which, in one line."""


class _Decoder:
    """Content-Encoding decoding that never produces more than `limit` bytes at a time.

    httpx's decoders inflate each network chunk whole: one 64 KiB chunk of a gzip bomb is
    ~64 MiB, and with stacked encodings ("gzip, gzip") the second layer multiplies that
    again before any size check could run. Here every layer is capped at the bytes still
    allowed (+1 to detect going over). Encodings other than gzip and deflate are passed
    through undecoded, as httpx does for those it lacks (we only ever ask for these two).
    """

    def __init__(self, content_encoding: str) -> None:
        self._header = content_encoding
        names = [name.strip().lower() for name in content_encoding.split(",")]
        # Applied in the order listed, so decoded in reverse.
        self._layers: list[Any] = []
        self._names: list[str] = []
        self._raw_fallback: list[bool] = []
        self._gzip: list[bool] = []
        for name in reversed(names):
            if name in ("gzip", "x-gzip"):
                self._layers.append(zlib.decompressobj(16 + zlib.MAX_WBITS))
                self._names.append(name)
                self._raw_fallback.append(False)
                self._gzip.append(True)
            elif name == "deflate":
                # "deflate" should be zlib-wrapped; some servers send it raw.
                self._layers.append(zlib.decompressobj(zlib.MAX_WBITS))
                self._names.append(name)
                self._raw_fallback.append(True)
                self._gzip.append(False)
        self._started = [False] * len(self._layers)
        self._identity = [False] * len(self._layers)  # a layer the body turned out not to have

    def decode(self, data: bytes, limit: int) -> bytes:
        for i, layer in enumerate(self._layers):
            if not data:
                return b""
            if not self._started[i] and self._gzip[i] and data[:2] != GZIP_MAGIC:
                # Labelled gzip, sent plain (a server compressing nothing but saying so): a
                # gzip stream always starts with its magic number, so nothing is guessed.
                self._identity[i] = True
            if self._identity[i]:
                self._started[i] = True
                continue
            try:
                out = layer.decompress(data, limit + 1)
            except zlib.error:
                if not (self._raw_fallback[i] and not self._started[i]):
                    raise
                self._layers[i] = layer = zlib.decompressobj(-zlib.MAX_WBITS)
                out = layer.decompress(data, limit + 1)
            self._started[i] = True
            if len(out) > limit:
                raise _TooLarge
            data = out
        return data

    def flush(self, limit: int) -> bytes:
        data = b""
        for i, layer in enumerate(self._layers):
            if self._identity[i]:
                continue
            if data:
                self._started[i] = True  # so its end is checked too
                data = layer.decompress(data, limit + 1)
                if len(data) > limit:
                    raise _TooLarge
            data += layer.flush()
            if len(data) > limit:
                raise _TooLarge
        self._check_ended()
        return data

    def _check_ended(self) -> None:
        """_Truncated unless every stream that began also ended. gzip and deflate mark
        their end (a final block, then gzip's CRC and length, zlib's checksum): a stream
        without it was cut off in transit, whatever Content-Length said, and what it
        decoded to is a prefix of the body. (A layer that got no byte at all is an empty
        body, not a cut one. Bodies over the cap never get here: _TooLarge stops them.)"""
        for i, layer in enumerate(self._layers):
            if self._started[i] and not self._identity[i] and not layer.eof:
                where = f" (in Content-Encoding {self._header!r})" if len(self._layers) > 1 else ""
                raise _Truncated(
                    f"body cut off: its {self._names[i]} stream{where} has no end"
                    " (no end-of-stream marker or trailer)"
                )


def _check_length(reply: httpx.Response, received: int) -> None:
    """_Truncated when the connection closed before the body's Content-Length was in.
    (httpx reports it as a protocol error like any other; this one is provably a cut
    body. Without a Content-Length, a close is how a body may end: nothing to prove.)"""
    length = reply.headers.get("content-length", "").strip()
    if length.isdigit() and received < int(length):
        raise _Truncated(
            f"body cut off: the connection closed after {received} of the {int(length)}"
            " bytes its Content-Length announced"
        )


# ---------------------------------------------------------------------------- deadline

# When the running request (in this thread) must be over, as time.monotonic(); None
# outside get(). Read by the network backend below on every socket operation.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "newsdedup_fetch_deadline", default=None
)


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """`timeout` cut to what is left of the request's deadline; `expired` once it passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the deadline allows.
    The deadline is read per operation, so a pooled connection serves any later request."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, with `_DeadlineStream`s. (Name resolution inside
    connect is not bounded: the resolver's own timeouts apply.)"""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport on a connection pool that uses `_DeadlineBackend`.

    httpx does not take a network backend yet (encode/httpx#3749 proposes it), so the
    pool it builds is replaced with an equal one that has ours. A transport passed to the
    client also means no proxy from the environment: requests go where check_url looked.
    """

    def __init__(self) -> None:
        super().__init__()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


# ---------------------------------------------------------------------------- fetching


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: str
    status: int


class _RedirectSeen(Exception):
    def __init__(self, location: str, status: int) -> None:
        super().__init__(location)
        self.location = location
        self.status = status


def _take_redirect(response: httpx.Response) -> None:
    """httpx event hook. Even when not following redirects, httpx parses Location (to
    offer next_request) and raises on a malformed one as if the connection had failed,
    which would be retried. Redirects are get()'s to judge: take them before httpx does."""
    location = response.headers.get("location", "").strip()
    if response.status_code in _REDIRECTS and location:
        raise _RedirectSeen(location, response.status_code)


class _Retryable(Exception):
    """One attempt failed in a way worth another attempt."""

    def __init__(self, reason: str, detail: str, status: int | None, retry_after: float | None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Fetcher:
    """GET with the policy's safety checks, retries and caps. Thread-safe (one pooled
    httpx.Client); close() it, or use it as a context manager."""

    def __init__(
        self,
        policy: HttpPolicy,
        gate: HostGate | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Resolver = socket.getaddrinfo,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.policy = policy
        self._gate: HostGate = gate if gate is not None else NoHostGate()
        self._sleep = sleep
        self._resolve = resolve
        self._random = random
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=policy.connect_timeout,
                read=policy.read_timeout,
                write=policy.read_timeout,
                pool=policy.connect_timeout,
            ),
            follow_redirects=False,  # followed in get(), so every hop is checked
            event_hooks={"response": [_take_redirect]},
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": "gzip, deflate"},
            transport=_DeadlineTransport(),
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(
        self,
        url: str,
        *,
        etag: str = "",
        last_modified: str = "",
        accept: str = "*/*",
        host_wait: float | None = None,
    ) -> Response:
        """The response to GET `url` (2xx, or 304 when the etag / last_modified validators
        still hold), following redirects, within the policy's deadline; FetchError
        otherwise. While another request holds a host's gate, each attempt waits for it
        up to `host_wait` seconds (None: as long as the deadline allows), then fails as
        `host_busy`."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + self.policy.deadline
        token = _deadline.set(deadline)
        try:
            return self._follow(url, headers, deadline, host_wait)
        finally:
            _deadline.reset(token)

    def _follow(
        self, url: str, headers: Mapping[str, str], deadline: float, host_wait: float | None
    ) -> Response:
        seen: set[str] = set()
        hop = url
        redirects = 0
        while True:
            try:
                check_url(
                    hop, allow_private=self.policy.allow_private_networks, resolve=self._resolve
                )
            except FetchError as exc:
                raise self._error(exc.reason, url, hop, exc.detail, attempts=0) from None
            seen.add(_without_fragment(hop))
            outcome, attempts = self._hop(url, hop, headers, deadline, host_wait)
            if isinstance(outcome, Response):
                return outcome
            try:
                target = urljoin(hop, outcome.location)
            except ValueError as exc:
                raise self._error(
                    "bad_url",
                    url,
                    hop,
                    f"redirect to an invalid URL {redact(outcome.location)!r}: {exc}",
                    attempts=attempts,
                ) from None
            if _without_fragment(target) in seen:
                raise self._error(
                    "redirect_loop",
                    url,
                    hop,
                    f"redirect loop: {redact(target)} again",
                    attempts=attempts,
                )
            if redirects >= self.policy.max_redirects:
                raise self._error(
                    "too_many_redirects",
                    url,
                    hop,
                    f"more than {self.policy.max_redirects} redirects",
                    attempts=attempts,
                )
            redirects += 1
            log.debug("%s redirects (%d) to %s", redact(hop), outcome.status, redact(target))
            hop = target

    # ------------------------------------------------------------------ one hop

    def _hop(
        self,
        url: str,
        hop: str,
        headers: Mapping[str, str],
        deadline: float,
        host_wait: float | None,
    ) -> tuple[Response | _Redirect, int]:
        """One URL, with retries: its response or redirect, and the attempts made."""
        host = gate_host(hop)
        total = 1 + self.policy.retries
        for attempt in range(1, total + 1):
            wait = deadline - time.monotonic()
            if host_wait is not None:
                wait = min(wait, host_wait)
            try:
                with self._gate.hold(host, wait=wait):
                    return self._once(url, hop, headers, attempt, deadline), attempt
            except _Retryable as failure:
                pause = 0.0 if attempt == total else self._backoff(attempt - 1, failure.retry_after)
                if attempt == total or time.monotonic() + pause >= deadline:
                    plural = "s" if attempt > 1 else ""
                    detail = f"{failure.detail} after {attempt} attempt{plural}"
                    if attempt < total:
                        detail += f" (no time left for another within {self._within})"
                    raise self._error(
                        failure.reason,
                        url,
                        hop,
                        detail,
                        status=failure.status,
                        attempts=attempt,
                    ) from None
                log.info(
                    "GET %s: %s; attempt %d of %d in %.2f s",
                    redact(hop),
                    failure.detail,
                    attempt + 1,
                    total,
                    pause,
                )
                self._sleep(pause)
            except FetchError as exc:
                if exc.reason != "host_busy":  # raised by _once, complete already
                    raise
                # From the gate, which knows no URL; attempt - 1 requests were made.
                raise self._error(exc.reason, url, hop, exc.detail, attempts=attempt - 1) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        cap = self.policy.backoff_max
        if retry_after is not None:
            return min(retry_after, cap)
        # Full jitter: spreads workers that failed together over the whole window.
        return self._random() * min(cap, self.policy.backoff_base * 2.0**retry)

    @property
    def _within(self) -> str:
        return f"the {self.policy.deadline:g} s request deadline"

    def _once(
        self, url: str, hop: str, headers: Mapping[str, str], attempt: int, deadline: float
    ) -> Response | _Redirect:
        limit = self.policy.max_bytes
        try:
            with self._client.stream("GET", hop, headers=headers) as reply:
                status = reply.status_code
                if status >= 500 or status == 429:
                    raise _Retryable(
                        "http_status",
                        f"HTTP {status}",
                        status,
                        _retry_after(reply.headers.get("retry-after")),
                    )
                if status != 304 and not 200 <= status < 300:
                    raise self._error(
                        "http_status", url, hop, f"HTTP {status}", status=status, attempts=attempt
                    )
                if status == 304 and not _CONDITIONAL.intersection(map(str.lower, headers)):
                    # "Not modified" since nothing: read as a 304, the feed would never be
                    # read again, each poll reported as unchanged.
                    message = "HTTP 304 (not modified) to a request that named no version"
                    raise self._error(
                        "http_status", url, hop, message, status=status, attempts=attempt
                    )
                received = {name.lower(): value for name, value in reply.headers.items()}
                if status == 304:
                    return Response(str(reply.url), status, received, b"", attempt)
                length = reply.headers.get("content-length", "")
                if length.isdigit() and int(length) > limit:
                    raise _TooLarge
                body = self._read(reply, limit, deadline)
                return Response(str(reply.url), status, received, body, attempt)
        except _RedirectSeen as redirect:
            return _Redirect(redirect.location, redirect.status)
        except _TooLarge:
            raise self._error(
                "too_large", url, hop, f"body larger than {limit} bytes", attempts=attempt
            ) from None
        except _Truncated as exc:
            # Never parsed: a prefix of a feed reads as an ill-formed feed with its last
            # entry cut short, which the next whole body would then "update".
            raise _Retryable("truncated", str(exc), None, None) from None
        except (httpx.TimeoutException, _DeadlinePassed) as exc:
            if time.monotonic() >= deadline:
                # The whole request is over its deadline: no retry could be in time.
                raise self._error(
                    "timeout",
                    url,
                    hop,
                    f"no complete response within {self._within}",
                    attempts=attempt,
                ) from None
            raise _Retryable("timeout", f"timed out ({type(exc).__name__})", None, None) from None
        except httpx.InvalidURL as exc:
            raise self._error(
                "bad_url", url, hop, f"not a valid URL: {exc}", attempts=attempt
            ) from None
        except (httpx.RequestError, zlib.error) as exc:
            # Refused or reset connections, truncated bodies and corrupt compressed bodies
            # alike: the transfer failed, and may work next time.
            detail = str(exc) or type(exc).__name__
            raise _Retryable("connect_error", f"transfer failed: {detail}", None, None) from None

    @staticmethod
    def _read(reply: httpx.Response, limit: int, deadline: float) -> bytes:
        decoder = _Decoder(reply.headers.get("content-encoding", ""))
        parts: list[bytes] = []
        total = 0
        received = 0  # bytes on the wire, before decoding
        try:
            for raw in reply.iter_raw():
                # Each read waits no longer than the deadline allows (_DeadlineStream); this
                # also stops a body that arrives steadily, a little at a time, for too long.
                if time.monotonic() >= deadline:
                    raise _DeadlinePassed
                received += len(raw)
                piece = decoder.decode(raw, limit - total)
                total += len(piece)
                if total > limit:
                    raise _TooLarge
                parts.append(piece)
        except httpx.RemoteProtocolError:
            _check_length(reply, received)
            raise
        parts.append(decoder.flush(limit - total))
        if total + len(parts[-1]) > limit:
            raise _TooLarge
        return b"".join(parts)

    @staticmethod
    def _error(
        reason: str,
        url: str,
        hop: str,
        detail: str,
        *,
        status: int | None = None,
        attempts: int = 0,
    ) -> FetchError:
        if _without_fragment(hop) != _without_fragment(url):
            detail = f"(redirected to {redact(hop)}) {detail}"
        return FetchError(reason, url, detail, status=status, attempts=attempts)
