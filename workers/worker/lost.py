"""Backfill batches whose message was lost on its way to a worker: found, and sent again.

kombu's Redis transport takes a message with BRPOP and records it in its unacked hash
once the reply has reached the worker. A reply that never arrives (the connection cut
just then by a network fault, a proxy or a failover; Redis killed after its pop reached
the AOF but before the reply left) loses the message: it is in neither the queue nor the
hash, the visibility timeout never brings it back, and its job would never finish.

The job knows what it still expects: its plan (`job:<id>:plan`) holds every batch not yet
ended, and each batch's message carries the task id `batch_task_id(job, index)`. Every
worker with a Redis broker runs a `LostBatchSweep` thread; one at a time (`jobs:sweep`,
a redis-py lock) it looks at each backfill job whose tasks were all sent and that has
not finished:

- while the job makes progress (inputs processed, batches ended), nothing more;
- once it has made none for `worker.lost_batch_after` seconds, it reads the broker's
  messages (queued and unacknowledged, in one transaction): a batch of the plan found
  there on no two sweeps in a row is sent again, with the task id `<job>/<index>/r<n>`,
  and counted on the job (`resent_tasks`).

Sending a batch that was not lost after all (a message held in a worker's memory all that
time) makes it run twice, which publishes nothing twice: the job's done set and ended
batches guard every input (workers/worker/batches.py). With RabbitMQ as the broker there
is no such window (a delivery is unacknowledged from the moment the broker sends it), and
no sweep runs.

On the embedded server, a command that is the server's only user (no worker runs) does
not wait for the stall: before its worker starts it sends again, after one look, every
batch neither ended, queued nor held (`LostBatchSweep.sweep_with_no_worker`).

A poll sent by `newsdedup poll --wait` is watched the same way by the command itself
(`LostPolls`): found in the broker on no two looks in a row once `lost_batch_after` has
passed, it is sent again under its task id, whose record the command is waiting on. A
poll the beat sends needs no such care: the next one comes at the feed's interval.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import redis
from redis.exceptions import LockError

from workers.index.keys import JOB_TTL_SECONDS, Keys
from workers.messages import counted
from workers.ops.connection import as_text
from workers.worker.broker import broker_redis_url, broker_task_ids
from workers.worker.jobs import (
    batch_of_task_id,
    batch_task_id,
    read_progress,
    spec_of_plan_entry,
)

log = logging.getLogger(__name__)

# Messages the broker may hold for the sweep still to read them all; past this a stalled
# job is looked at again once the queues have drained below it (a long backlog is
# progress for someone, and a lost batch waits at most until then).
SCAN_LIMIT = 10_000
# The longest pause between sweeps, in seconds.
SWEEP_EVERY_MAX = 30.0

# Sends one batch again: (job id, task index, its TaskSpec JSON, default source, task id).
SendBatch = Callable[[str, int, dict[str, Any], str | None, str], None]
# Job id -> the indexes of its batches the broker holds a message for.
BrokerBatches = dict[str, set[int]]
T = TypeVar("T", int, str)


@dataclass(frozen=True, slots=True)
class Watch:
    """What the sweep last saw of one job."""

    progress: tuple[int, int]  # inputs processed, batches ended
    since: float  # when that progress was first seen (unix time)
    unseen: tuple[int, ...] = ()  # batches of the plan the broker held no message for

    def to_json(self) -> str:
        return json.dumps({"progress": self.progress, "since": self.since, "unseen": self.unseen})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Watch:
        data = json.loads(raw)
        processed, ended = data["progress"]
        return cls((int(processed), int(ended)), float(data["since"]), tuple(data["unseen"]))


def observe(previous: Watch | None, progress: tuple[int, int], now: float) -> Watch:
    """The job's watch after seeing `progress` at `now`: the clock restarts on progress."""
    if previous is None or previous.progress != progress:
        return Watch(progress, now)
    return previous


def unseen_twice(previously_unseen: Iterable[T], due: set[T], in_broker: set[T]) -> list[T]:
    """The messages to send again: due, and found in the broker neither now nor at the
    previous look (a message between a queue and a worker's memory is there again at once)."""
    return sorted((due - in_broker) & set(previously_unseen))


def look_every(after: float) -> float:
    """Seconds between looks for messages lost after `after` seconds."""
    return max(0.5, min(SWEEP_EVERY_MAX, after / 4))


class LostBatchSweep:
    """The sweep thread of one worker (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        broker: redis.Redis,
        keys: Keys,
        queues: tuple[str, ...],
        after: float,
        send: SendBatch,
    ) -> None:
        self.client, self.broker, self.keys = client, broker, keys
        self.queues, self.after, self.send = queues, after, send
        self.every = look_every(after)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="newsdedup-lost-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread, if started, and close the clients."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 10)
        self.client.close()
        self.broker.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sweep()
            except (redis.RedisError, OSError) as exc:  # Redis away: the next sweep looks
                log.debug("lost-batch sweep skipped: %s", exc)

    def sweep(self, now: float | None = None) -> list[tuple[str, int]]:
        """One look at every unfinished job, by the one worker holding the sweep lock.
        Returns the (job, batch) pairs sent again."""
        lock = self.client.lock(
            self.keys.sweep_lock, timeout=max(60.0, 4 * self.every), blocking=False
        )
        if not lock.acquire():
            return []
        try:
            return self._look_at_jobs(time.time() if now is None else now, at_once=False)
        finally:
            with contextlib.suppress(LockError, redis.RedisError):
                lock.release()

    def sweep_with_no_worker(self) -> list[tuple[str, int]]:
        """Send again, now, every batch of a job whose tasks were all sent that is neither
        ended nor held by the broker. Only for a caller that knows no worker runs (the
        embedded server's only user, `Endpoints.alone`, after putting the unacknowledged
        messages back): no message can then be on its way between the broker and a
        worker, so one look tells a lost batch, without the stall or the second look.
        (No sweep lock either: one a killed worker held is not released.)"""
        return self._look_at_jobs(time.time(), at_once=True)

    def _look_at_jobs(self, now: float, *, at_once: bool) -> list[tuple[str, int]]:
        # Read at most once a sweep, and only if a job has stalled.
        in_broker = functools.cache(self._broker_batches)
        sent: list[tuple[str, int]] = []
        for raw in self.client.zrangebyscore(self.keys.jobs, now - JOB_TTL_SECONDS, "+inf"):
            job_id = as_text(raw)
            sent.extend((job_id, i) for i in self._look_at(job_id, now, in_broker, at_once))
        return sent

    def _look_at(
        self,
        job_id: str,
        now: float,
        broker_batches: Callable[[], BrokerBatches | None],
        at_once: bool,
    ) -> list[int]:
        keys = self.keys
        kind, sent_at = self.client.hmget(keys.job(job_id), "kind", "sent_at")
        if kind is None or as_text(kind) != "backfill" or sent_at is None:
            return []  # expired, not a backfill, or its tasks are still being sent
        try:
            progress = read_progress(self.client, keys, job_id)
        except KeyError:
            return []
        if progress.finished or progress.tasks_done >= progress.tasks_total:
            self.client.delete(keys.job_watch(job_id))
            return []
        raw = self.client.get(keys.job_watch(job_id))
        watch = observe(
            Watch.from_json(raw) if raw is not None else None,
            (progress.processed, progress.tasks_done),
            now,
        )
        lost: list[int] = []
        if at_once or now - watch.since >= self.after:
            pending = {int(i) for i in self.client.hkeys(keys.job_plan(job_id))}
            batches = broker_batches()
            if pending and batches is not None:
                in_broker = batches.get(job_id, set())
                if at_once:
                    lost = sorted(pending - in_broker)
                    why = "no worker runs and no message is queued for"
                else:
                    lost = unseen_twice(watch.unseen, pending, in_broker)
                    stalled = now - watch.since
                    why = f"no progress for {stalled:.0f} s, no message queued or held for"
                if lost:
                    self._send_again(job_id, lost, why)
                    watch = Watch(watch.progress, now)  # give them time to run
                else:
                    watch = replace(watch, unseen=tuple(sorted(pending - in_broker)))
        self.client.set(keys.job_watch(job_id), watch.to_json(), ex=JOB_TTL_SECONDS)
        return lost

    def _broker_batches(self) -> BrokerBatches | None:
        """The batches the broker holds a message for, by job; None when there are too
        many messages to read."""
        task_ids = broker_task_ids(self.broker, self.keys.prefix, self.queues, SCAN_LIMIT)
        if task_ids is None:
            return None
        batches: BrokerBatches = {}
        for batch in map(batch_of_task_id, task_ids):
            if batch is not None:
                batches.setdefault(batch[0], set()).add(batch[1])
        return batches

    def _send_again(self, job_id: str, lost: list[int], why: str) -> None:
        keys = self.keys
        specs = self.client.hmget(keys.job_plan(job_id), [str(i) for i in lost])
        source = self.client.hget(keys.job(job_id), "source")
        default_source = as_text(source) if source is not None else None
        for index, spec in zip(lost, specs, strict=True):
            if spec is None:  # ended since the plan was read
                continue
            assert isinstance(spec, bytes), "the data client reads bytes"
            resend = int(self.client.hincrby(keys.job(job_id), "resent_tasks", 1))
            task_id = batch_task_id(job_id, index, resend)
            self.send(job_id, index, spec_of_plan_entry(spec), default_source, task_id)
        log.warning(
            "job %s: %s lost on the way to a worker (%s %s): sent again",
            job_id,
            counted(len(lost), "batch", "batches"),
            why,
            "it" if len(lost) == 1 else "them",
        )


class LostPolls:
    """For a command waiting on the polls it sent: sends again, with `resend(task_id)`,
    each whose message the broker has held neither now nor at the previous look, once
    `after` seconds have passed since it was sent (or last sent again)."""

    def __init__(
        self,
        broker: redis.Redis,
        prefix: str,
        queues: tuple[str, ...],
        after: float,
        resend: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker, self.prefix, self.queues = broker, prefix, queues
        self.after, self.resend, self.clock = after, resend, clock
        self.every = look_every(after)
        self._sent: dict[str, float] = {}  # task id -> when sent (or sent again)
        self._unseen: set[str] = set()
        self._last_look = -float("inf")

    def check(self, waiting: set[str]) -> list[str]:
        """Look (at most every `every` seconds) for the waited-on polls; the ones sent again."""
        now = self.clock()
        for task_id in waiting:
            self._sent.setdefault(task_id, now)
        if now - self._last_look < self.every:
            return []
        self._last_look = now
        due = {task_id for task_id in waiting if now - self._sent[task_id] >= self.after}
        if not due:
            self._unseen = set()
            return []
        try:
            in_broker = broker_task_ids(self.broker, self.prefix, self.queues, SCAN_LIMIT)
        except (redis.RedisError, OSError):
            return []  # Redis away: the next look
        if in_broker is None:
            return []
        unseen = due - in_broker
        lost = unseen_twice(self._unseen, due, in_broker)
        for task_id in lost:
            self.resend(task_id)
            self._sent[task_id] = now
        self._unseen = unseen - set(lost)
        return lost

    def close(self) -> None:
        self.broker.close()


def watch_polls(
    broker_url: str, prefix: str, after: float, resend: Callable[[str], None]
) -> LostPolls | None:
    """A `LostPolls` for the fetch queue of a Redis broker; None for any other broker."""
    from workers.worker.app import FETCH_QUEUE
    from workers.worker.presence import heartbeat_client

    url = broker_redis_url(broker_url)
    if url is None:
        return None
    return LostPolls(heartbeat_client(url), prefix, (FETCH_QUEUE,), after, resend)
