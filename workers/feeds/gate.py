"""Politeness: one request at a time per host across all workers, and a delay after each.

The fetcher holds a host's gate for each request (`HostGate.hold`); `RedisHostGate` keeps
it as a lock in Redis (workers/index/locks.py) that outlives the request by the delay.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol
from urllib.parse import urlsplit

import redis

from workers.feeds.policy import FetchError
from workers.index.keys import Keys
from workers.index.locks import RedisLock

log = logging.getLogger(__name__)


def gate_host(url: str) -> str:
    """The gate a URL's request goes through: its host, with the port when not the
    scheme's default."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = 443 if parts.scheme.lower() == "https" else 80
    if port is not None and port != default:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


class HostGate(Protocol):
    def hold(self, host: str, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Blocks until this host may be requested (FetchError host_busy after the gate's
        own wait, or `wait` seconds if shorter); held for one request."""
        ...


class NoHostGate:
    """No politeness at all (tools and tests)."""

    def hold(self, host: str, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class RedisHostGate:
    """At most one request at a time per host across all workers, and `delay` seconds
    between the end of one and the start of the next.

    The key lives `lease` seconds while a request runs, so a worker that dies holding it
    blocks the host that long at most; a request running longer than `lease` loses the
    key and may overlap the next one (keep `lease` above the request deadline).
    """

    def __init__(
        self, client: redis.Redis, keys: Keys, *, delay: float, lease: float, wait: float
    ) -> None:
        self._client = client
        self._keys = keys
        self._delay_ms = max(0, round(delay * 1000))
        self._lease_ms = max(1, round(lease * 1000))
        self._wait = wait

    @contextlib.contextmanager
    def hold(self, host: str, wait: float | None = None) -> Iterator[None]:
        lock = RedisLock(self._client, self._keys.host_gate(host))
        patience = self._wait if wait is None else max(0.0, min(self._wait, wait))
        if not lock.acquire(self._lease_ms, wait=patience):
            raise FetchError(
                "host_busy", "", f"{host} stayed busy for {patience:.3g} s (another request)"
            )
        try:
            yield
        finally:
            try:
                lock.hold(self._delay_ms)  # the politeness delay; 0 frees the host at once
            except redis.RedisError as exc:
                # The lease expires on its own; a lost release only delays the host.
                log.warning("could not release the host gate for %s: %s", host, exc)
