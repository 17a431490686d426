"""Which workers run, and on which queues: each worker says so in the data Redis.

A command that waits for its tasks (`backfill --wait`, `job --wait`, `poll --wait` on a
Redis of your own) would otherwise show a bar standing at 0 with no hint that nothing
consumes the queue. Every worker's main process writes `P worker:<w>` (its Celery name
and the queues it consumes, as JSON) every HEARTBEAT_EVERY seconds, expiring
HEARTBEAT_TTL seconds later, and adds <w> to `P workers`; it deletes both when it stops.
A worker killed outright is forgotten when its key expires. Readers find the live ones
with one SMEMBERS and one MGET (`live_workers`), and drop the expired tags from the set.

This lives in the data Redis, not in the broker: it works the same whatever BROKER_URL
points at (Redis or RabbitMQ), needs no remote-control round trip (`celery inspect
ping` waits a second for replies and needs the broker's fanout), and a worker busy with
a long task still answers, since the heartbeat runs in a thread of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from workers.index.keys import Keys, source_tag
from workers.ops.connection import as_text

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 2.0  # seconds between a worker's writes
HEARTBEAT_TTL = 10  # seconds a worker's key outlives its last write


def worker_tag(name: str) -> str:
    """<w> in `P worker:<w>`: a worker's name (any text) never goes into a key name."""
    return source_tag(name)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    name: str  # Celery's node name, e.g. celery@host
    queues: tuple[str, ...]
    host: str = ""
    pid: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {"name": self.name, "queues": list(self.queues), "host": self.host, "pid": self.pid}
        )

    @classmethod
    def from_json(cls, text: str) -> WorkerInfo:
        data = json.loads(text)
        return cls(
            str(data["name"]),
            tuple(str(q) for q in data.get("queues", ())),
            str(data.get("host", "")),
            int(data.get("pid", 0)),
        )


def announce(client: redis.Redis, keys: Keys, info: WorkerInfo) -> None:
    tag = worker_tag(info.name)
    pipe = client.pipeline(transaction=False)
    pipe.set(keys.worker(tag), info.to_json(), ex=HEARTBEAT_TTL)
    pipe.sadd(keys.workers, tag)
    pipe.execute()


def withdraw(client: redis.Redis, keys: Keys, name: str) -> None:
    tag = worker_tag(name)
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker(tag))
    pipe.srem(keys.workers, tag)
    pipe.execute()


def live_workers(client: redis.Redis, keys: Keys) -> list[WorkerInfo]:
    """The workers whose heartbeat has not expired, by name."""
    tags = sorted(as_text(t) for t in client.smembers(keys.workers))
    if not tags:
        return []
    values: Any = client.mget([keys.worker(tag) for tag in tags])
    found, gone = [], []
    for tag, value in zip(tags, values, strict=True):
        if value is None:
            gone.append(tag)
            continue
        try:
            found.append(WorkerInfo.from_json(as_text(value)))
        except (ValueError, KeyError, TypeError):
            continue
    if gone:
        # A worker that reappears adds its tag again with its next heartbeat.
        client.srem(keys.workers, *gone)
    return sorted(found, key=lambda w: w.name)


def consumers(workers: Iterable[WorkerInfo], queue: str) -> list[WorkerInfo]:
    return [w for w in workers if queue in w.queues]


class Heartbeat:
    """A worker's heartbeat thread: `start()` when it is ready, `stop()` when it stops."""

    def __init__(self, client: redis.Redis, keys: Keys, info: WorkerInfo) -> None:
        self.client, self.keys, self.info = client, keys, info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="newsdedup-heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                announce(self.client, self.keys, self.info)
                self._failing = False
            except (redis.RedisError, OSError) as exc:
                if not self._failing:  # once per outage: the worker's own log says more
                    log.warning("cannot write this worker's heartbeat: %s", exc)
                self._failing = True
            if self._stop.wait(HEARTBEAT_EVERY):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_EVERY + 5)
        with contextlib.suppress(redis.RedisError, OSError):  # else it expires by itself
            withdraw(self.client, self.keys, self.info.name)
        self.client.close()


def heartbeat_client(url: str) -> redis.Redis:
    """A client that fails fast: a heartbeat that cannot be written is skipped, never
    waited for (the worker's own clients ride out outages)."""
    options: dict[str, Any] = {"socket_timeout": 5}
    if not url.startswith("unix://"):
        options["socket_connect_timeout"] = 5
    return redis.Redis.from_url(url, **options)


def worker_info(name: str, queues: Iterable[str]) -> WorkerInfo:
    return WorkerInfo(name, tuple(sorted(set(queues))), socket.gethostname(), os.getpid())
