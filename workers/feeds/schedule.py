"""Celery beat's schedule, built from config/feeds.toml.

Exactly one beat may run: two would send every poll twice. The per-feed lock would keep
the polls themselves from overlapping, but not from doubling the traffic, so the
scheduler also takes a Redis lock (`beat:lock`) at start and refreshes it on every tick;
a second beat refuses to start with one clear line. `newsdedup beat` and `run` take the
lock before starting Celery (`take_beat_lock`), so that a second one refuses before
Celery's banner; the scheduler then takes it again under the same token (handed on in
BEAT_TOKEN_ENV), which renews it.

The schedule lives in memory (Celery's default scheduler keeps it in a shelve file,
which pickles); when each feed was last polled is read back from the feed's status in
Redis, so a restarted beat does not poll every feed at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery.beat import Scheduler

from workers.config import process_settings
from workers.feeds.spec import FeedSpec
from workers.feeds.status import feed_key
from workers.index.keys import Keys
from workers.index.locks import RedisLock
from workers.messages import counted
from workers.ops.connection import OutageNotice, outage_reason, redis_from_url
from workers.worker.app import FETCH_QUEUE
from workers.worker.runtime import load_feed_specs, worker_redis_url

log = logging.getLogger(__name__)

POLL_TASK = "newsdedup.poll_feed"
BEAT_LOCK_SECONDS = 60
BEAT_LOCK_MS = BEAT_LOCK_SECONDS * 1000


# The token under which the command that started this beat took the beat lock.
BEAT_TOKEN_ENV = "NEWSDEDUP_BEAT_TOKEN"


class BeatAlreadyRunning(SystemExit):
    pass


def another_beat(holder: str | None) -> str:
    """Why a beat refuses to start: the one line, without the "newsdedup: error: " head."""
    return (
        f"another beat is running ({holder or '?'}); exactly one beat may run against a "
        f"Redis and prefix (its lock expires {BEAT_LOCK_SECONDS}s after that beat stops)"
    )


def beat_lock(client: redis.Redis, keys: Keys) -> RedisLock:
    """The beat lock, under the token handed on by the starting command if there is one,
    else a fresh one naming this host and process."""
    token = os.environ.get(BEAT_TOKEN_ENV) or (
        f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    )
    return RedisLock(client, keys.beat_lock, token)


def take_beat_lock(client: redis.Redis, keys: Keys) -> RedisLock | None:
    """The beat lock taken for a beat about to start in this process or its children (its
    token put in BEAT_TOKEN_ENV for them); None when another beat holds it."""
    lock = beat_lock(client, keys)
    if not lock.acquire(BEAT_LOCK_MS):
        return None
    os.environ[BEAT_TOKEN_ENV] = lock.token
    return lock


def schedule_entries(
    feeds: tuple[FeedSpec, ...], last_polled: dict[str, float], now: datetime
) -> dict[str, dict[str, Any]]:
    """Beat entries for the enabled feeds: each due `interval` after its last poll, at
    once if it was never polled. A poll message expires after one interval: with workers
    down for a day, they find one poll per feed waiting, not a day of them."""
    entries = {}
    for spec in feeds:
        if not spec.enabled:
            continue
        polled = last_polled.get(feed_key(spec.url))
        interval = timedelta(seconds=spec.interval)
        last_run = datetime.fromtimestamp(polled, UTC) if polled else now - interval
        entries[f"poll {spec.name}"] = {
            "task": POLL_TASK,
            "schedule": interval,
            "args": (spec.to_json(),),
            "options": {"queue": FETCH_QUEUE, "expires": spec.interval},
            "last_run_at": min(last_run, now),
        }
    return entries


class FeedScheduler(Scheduler):  # type: ignore[misc]
    def setup_schedule(self) -> None:
        settings = process_settings()
        self._client: redis.Redis = redis_from_url(worker_redis_url(settings))
        self._keys = Keys(settings.prefix)
        self._lock = beat_lock(self._client, self._keys)
        if not self._lock.acquire(BEAT_LOCK_MS):
            raise BeatAlreadyRunning(f"newsdedup: error: {another_beat(self._lock.holder())}")
        feeds = load_feed_specs(settings)
        last_polled = self._last_polled(feeds)
        entries = schedule_entries(feeds, last_polled, self.app.now())
        self.merge_inplace(entries)
        log.info("beat: polling %s: %s", counted(len(entries), "feed"), ", ".join(sorted(entries)))

    def _last_polled(self, feeds: tuple[FeedSpec, ...]) -> dict[str, float]:
        keys = [feed_key(spec.url) for spec in feeds]
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._keys.feed(key), "last_polled")
        values = pipe.execute()
        return {key: float(v) for key, v in zip(keys, values, strict=True) if v}

    def install_default_entries(self, data: Any) -> None:
        # No result backend, so Celery's backend_cleanup entry has nothing to clean.
        return

    _notice: OutageNotice | None = None

    @property
    def _outage(self) -> OutageNotice:
        # Made on first use: Celery's Scheduler.__init__ runs the first tick.
        if self._notice is None:
            self._notice = OutageNotice(
                lambda reason, seconds: log.warning(
                    "beat: Redis is %s: no poll is sent until it takes writes (%.0f s so far)",
                    reason,
                    seconds,
                ),
                lambda: log.warning("beat: Redis takes writes again: polling goes on"),
            )
        return self._notice

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._keep_lock()
        delay: float = super().tick(*args, **kwargs)
        return min(delay, BEAT_LOCK_SECONDS / 3)

    def _keep_lock(self) -> None:
        try:
            if self._lock.hold(BEAT_LOCK_MS):
                self._outage.answered()
                return
            # Lost it (Redis restarted without persistence, this beat stalled past the
            # expiry, or Redis refused work for longer than the lock lives): take it again
            # unless another beat has.
            taken = self._lock.acquire(BEAT_LOCK_MS)
        except Exception as exc:
            # Redis away, full, or unable to write to its disk: no poll could be sent
            # either, and the beat outlives it (a command's client gives up after its
            # retry window). Another beat can take the lock only from a Redis that takes
            # writes; if one did, the lock says so afterwards.
            if (reason := outage_reason(exc)) is None:
                raise
            self._outage.refused(reason)
            return
        if not taken:
            raise BeatAlreadyRunning("newsdedup: error: another beat took over; stopping this one")
        self._outage.answered()

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        # Celery's, but for a poll Redis refuses: one line, no traceback, and the beat tries
        # it again at its next time (a poll's message expires at its next time anyway).
        log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:
            if (reason := outage_reason(exc)) is None:
                log.error("Message Error: %s", exc, exc_info=True)
                return
            self._outage.refused(reason)

    def close(self) -> None:
        try:
            super().close()
        finally:
            lock: RedisLock | None = getattr(self, "_lock", None)
            if lock is not None:
                with contextlib.suppress(redis.RedisError):
                    lock.release()
            client = getattr(self, "_client", None)
            if client is not None:
                client.close()
