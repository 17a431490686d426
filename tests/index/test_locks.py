"""workers.index.locks.RedisLock against a real Redis (the test server, a key prefix of its own)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from conftest import RedisTarget

from workers.index.locks import RedisLock


def _lock(redis_target: RedisTarget, prefix: str, token: str | None = None) -> RedisLock:
    return RedisLock(redis_target.client, f"{prefix}lock", token)


def test_one_owner_at_a_time(redis_target: RedisTarget, prefix: str) -> None:
    first, second = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert first.token != second.token  # fresh random tokens
    assert first.acquire(10_000)
    assert not second.acquire(10_000)
    assert first.holder() == first.token
    assert 9_000 < redis_target.client.pttl(first.key) <= 10_000


def test_taking_ones_own_lock_renews_it(redis_target: RedisTarget, prefix: str) -> None:
    """A redelivered task (same token) takes its lock back instead of waiting."""
    crashed = _lock(redis_target, prefix, token="task-1")
    assert crashed.acquire(1_000)
    again = _lock(redis_target, prefix, token="task-1")
    assert again.acquire(60_000)
    assert redis_target.client.pttl(again.key) > 59_000


def test_others_cannot_extend_or_release(redis_target: RedisTarget, prefix: str) -> None:
    owner, other = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert owner.acquire(5_000)
    assert not other.hold(60_000)
    assert not other.release()
    assert owner.holder() == owner.token
    assert redis_target.client.pttl(owner.key) <= 5_000


def test_hold_extends_and_zero_releases(redis_target: RedisTarget, prefix: str) -> None:
    lock = _lock(redis_target, prefix)
    assert not lock.hold(1_000)  # not held: nothing to extend, nothing created
    assert redis_target.client.exists(lock.key) == 0
    assert lock.acquire(1_000)
    assert lock.hold(30_000)
    assert redis_target.client.pttl(lock.key) > 29_000
    assert lock.hold(0)
    assert lock.holder() is None


def test_release_then_free_for_others(redis_target: RedisTarget, prefix: str) -> None:
    first, second = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert first.acquire(10_000)
    assert first.release()
    assert not first.release()  # already gone
    assert second.acquire(10_000)


def test_an_expired_lock_is_free(redis_target: RedisTarget, prefix: str) -> None:
    dead, alive = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert dead.acquire(50)
    time.sleep(0.1)
    assert alive.acquire(10_000)
    # The first owner, back after its lock expired, touches the new owner's lock no more.
    assert not dead.hold(10_000)
    assert not dead.release()
    assert alive.holder() == alive.token


def test_wait_gives_up_after_the_wait(redis_target: RedisTarget, prefix: str) -> None:
    owner, waiter = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert owner.acquire(10_000)
    started = time.monotonic()
    assert not waiter.acquire(10_000, wait=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    started = time.monotonic()
    assert not waiter.acquire(10_000)  # no wait: one try
    assert time.monotonic() - started < 0.1


def test_wait_takes_the_lock_when_it_expires(redis_target: RedisTarget, prefix: str) -> None:
    owner, waiter = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert owner.acquire(150)
    started = time.monotonic()
    assert waiter.acquire(10_000, wait=5)
    assert 0.1 <= time.monotonic() - started < 0.5
    assert waiter.holder() == waiter.token


def test_wait_sees_an_early_release(redis_target: RedisTarget, prefix: str) -> None:
    """A holder releasing long before its lock would expire frees the waiter within about
    POLL_MAX, not at the expiry."""
    owner, waiter = _lock(redis_target, prefix), _lock(redis_target, prefix)
    assert owner.acquire(30_000)
    timer = threading.Timer(0.2, owner.release)
    timer.start()
    try:
        started = time.monotonic()
        assert waiter.acquire(10_000, wait=5)
        assert 0.15 <= time.monotonic() - started < 0.2 + RedisLock.POLL_MAX + 0.2
    finally:
        timer.cancel()


def test_wait_on_a_lock_without_expiry(redis_target: RedisTarget, prefix: str) -> None:
    """A lock with no time to live (set by hand) is looked at every POLL_MAX seconds."""
    redis_target.client.set(f"{prefix}lock", "someone")
    waiter = _lock(redis_target, prefix)
    threading.Timer(0.3, redis_target.client.delete, args=(waiter.key,)).start()
    started = time.monotonic()
    assert waiter.acquire(1_000, wait=5)
    assert 0.25 <= time.monotonic() - started < 0.3 + RedisLock.POLL_MAX + 0.2


def test_held_releases_on_leaving(redis_target: RedisTarget, prefix: str) -> None:
    lock, other = _lock(redis_target, prefix), _lock(redis_target, prefix)
    with lock.held(10_000) as held:
        assert held
        with other.held(10_000) as other_held:
            assert not other_held
        assert lock.holder() == lock.token  # the refused one released nothing
    assert lock.holder() is None
    with pytest.raises(RuntimeError), lock.held(10_000):
        raise RuntimeError("the block failed")
    assert lock.holder() is None


def test_held_may_linger(redis_target: RedisTarget, prefix: str) -> None:
    """A host's politeness delay: after the request the lock stays for `linger_ms`."""
    lock = _lock(redis_target, prefix)
    with lock.held(10_000, linger_ms=300) as held:
        assert held
    assert 0 < redis_target.client.pttl(lock.key) <= 300
    assert not _lock(redis_target, prefix).acquire(1_000)
    time.sleep(0.4)
    assert _lock(redis_target, prefix).acquire(1_000)


def test_time_to_live_must_be_positive(redis_target: RedisTarget, prefix: str) -> None:
    with pytest.raises(ValueError, match="at least 1 ms"):
        _lock(redis_target, prefix).acquire(0)


def test_scripts_reload_after_a_script_flush(redis_target: RedisTarget, prefix: str) -> None:
    """The runner loads the lock scripts again when the server forgot them."""
    if redis_target.external:
        pytest.skip("SCRIPT FLUSH would drop other users' scripts on a shared server")
    lock = _lock(redis_target, prefix)
    assert lock.acquire(10_000)
    redis_target.client.script_flush()
    assert lock.hold(10_000)
    assert lock.release()
    assert not _lock(redis_target, prefix).release()


def test_a_wrong_type_key_is_an_error(redis_target: RedisTarget, prefix: str) -> None:
    redis_target.client.rpush(f"{prefix}lock", "x")
    with pytest.raises(redis.ResponseError):
        _lock(redis_target, prefix).acquire(1_000)
