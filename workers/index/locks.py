"""One kind of lock in Redis, for a feed's poll, the one beat, and a host's politeness.

A lock is a key whose value is its owner's token, and which expires on its own: an owner
that dies holding it blocks the others for the lock's time to live at most. Taking,
keeping and releasing are each one script (scripts/lock_acquire.lua, lock_hold.lua,
lock_release.lua), so an owner whose lock expired and was taken by another never
extends or deletes that other owner's lock. Modelled on redis-py's `Lock`, run by the
index's one script runner (its outage handling included), and with two differences
the callers need: taking a lock the token already holds renews it (a redelivered task
takes its own lock back), and a release may leave the lock in place for a while (a
host's politeness delay after a request).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from workers.index.args import LockArgs
from workers.index.scripts import LOCK_ACQUIRE, LOCK_HOLD, LOCK_RELEASE
from workers.ops.connection import as_text


class RedisLock:
    """The lock at `key`, taken under `token` (a fresh random one by default)."""

    POLL_MAX = 0.25  # seconds between tries while waiting, at most

    def __init__(self, client: redis.Redis, key: str, token: str | None = None) -> None:
        self.client = client
        self.key = key
        self.token = token if token is not None else secrets.token_hex(16)

    def acquire(self, ttl_ms: int, *, wait: float = 0.0) -> bool:
        """Take the lock for `ttl_ms` milliseconds, or renew it when this token holds it
        already. While another owner holds it, try again for up to `wait` seconds (0: one
        try), looking again when the holder's lock would expire, and at least every
        `POLL_MAX` seconds (a holder may release early). Whether the lock is held."""
        if ttl_ms < 1:
            raise ValueError(f"a lock's time to live is at least 1 ms, not {ttl_ms}")
        deadline = time.monotonic() + wait
        while True:
            taken, holder_ttl_ms = LOCK_ACQUIRE(self.client, [self.key], self._args(ttl_ms))
            if taken:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Until the holder's lock would expire, but no longer than POLL_MAX: a holder
            # may shorten it (a host's request ending early leaves only its delay).
            pause = self.POLL_MAX if holder_ttl_ms < 0 else max(holder_ttl_ms / 1000, 0.001)
            time.sleep(min(pause, self.POLL_MAX, left))

    def hold(self, ms: int) -> bool:
        """Keep the lock `ms` milliseconds from now (0: release it at once), if this token
        still holds it. Whether it did."""
        return bool(LOCK_HOLD(self.client, [self.key], self._args(max(0, ms))))

    def release(self) -> bool:
        """Delete the lock if this token still holds it. Whether it did."""
        return bool(LOCK_RELEASE(self.client, [self.key], self._args(0)))

    def holder(self) -> str | None:
        """The token of whoever holds the lock now, None when nobody does."""
        value = self.client.get(self.key)
        return None if value is None else as_text(value)

    @contextmanager
    def held(self, ttl_ms: int, *, wait: float = 0.0, linger_ms: int = 0) -> Iterator[bool]:
        """`acquire` for the block, which learns whether it holds the lock; on leaving it,
        the lock is released, or kept `linger_ms` more when that is not 0."""
        taken = self.acquire(ttl_ms, wait=wait)
        try:
            yield taken
        finally:
            if taken:
                self.hold(linger_ms)

    def _args(self, milliseconds: int) -> LockArgs:
        return LockArgs(self.token, milliseconds)
