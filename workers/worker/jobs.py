"""Backfill jobs: record a plan in Redis, enqueue its tasks, read its progress.

A job records the roots its plan reads under (`roots` in the job hash: resolved,
escaped folders, as in TaskSpec.root). A worker runs a batch only when its job exists
and registered the batch's root (`task_refusal`); anything else is a message nobody
planned, such as one forged by whoever can write to the broker, and is refused without
reading a file: logged as an error and acknowledged. It is not sent to `dead`: its
inputs were never part of any job's total, so counting them would corrupt the job's
accounting (a forged batch could make a running job look finished).

A job also records its plan (`job:<id>:plan`: each batch's spec, removed as the batch
ends) and, once every task is sent, `sent_at`; each batch's message carries the task id
`batch_task_id(job, index)`. With those the workers find and send again a batch whose
message was lost on its way to a worker (workers/worker/lost.py).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from workers.index.keys import JOB_TTL_SECONDS, Keys
from workers.ingest.plan import Plan
from workers.ops.connection import as_text, no_waiting, retry_while_outage


def new_job_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class JobProgress:
    job_id: str
    total: int
    published: int
    exact: int
    near: int
    dead: int
    tasks_total: int
    tasks_done: int
    skipped: dict[str, int]
    dead_reasons: dict[str, int]
    abandoned_tasks: int = 0  # batches given up after too many starts (workers/worker/batches.py)
    resent_tasks: int = 0  # batches sent again after their message was lost (worker/lost.py)
    sent_tasks: int = 0  # batches sent so far (tasks_total once the backfill sent them all)
    # The backfill stopped before sending every batch (interrupted, killed): the job cannot
    # finish until `newsdedup backfill --resume` sends the rest.
    sending_stopped: bool = False

    @property
    def processed(self) -> int:
        return self.published + self.exact + self.near + self.dead

    @property
    def duplicates(self) -> int:
        return self.exact + self.near

    @property
    def finished(self) -> bool:
        return self.processed >= self.total

    @property
    def stopped(self) -> bool:
        """Its backfill stopped sending, and every batch it sent has ended: the job goes no
        further until `backfill --resume`."""
        return self.sending_stopped and self.tasks_done >= self.sent_tasks


# Plan entries per HSET: a plan of thousands of batches goes in a few round trips of
# bounded size.
PLAN_CHUNK = 500


def plan_entry(spec: dict[str, Any]) -> bytes:
    """A batch's spec as the plan keeps it: JSON, compressed (a batch of single files
    repeats its folders in every path, and the plan sits beside the queued messages, so
    it costs about a tenth of them instead of as much again)."""
    return zlib.compress(json.dumps(spec, ensure_ascii=False).encode("utf-8"), 6)


def spec_of_plan_entry(entry: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(zlib.decompress(entry))
    return spec


def batch_task_id(job_id: str, task_index: int, resend: int = 0) -> str:
    """The Celery task id of a batch's message: `<job>/<index>`, and `<job>/<index>/r<n>`
    for the n-th batch the job sent again. The lost-batch sweep finds a job's batches among
    the broker's messages by it."""
    base = f"{job_id}/{task_index}"
    return f"{base}/r{resend}" if resend else base


def batch_of_task_id(task_id: str) -> tuple[str, int] | None:
    """(job id, task index) of a batch's task id; None for any other task id."""
    parts = task_id.split("/")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def record_job(
    client: redis.Redis,
    keys: Keys,
    job_id: str,
    plan: Plan,
    paths: list[str],
    kind: str,
    default_source: str | None = None,
) -> None:
    """The job's hash and its plan, before any of its tasks is sent."""
    created = time.time()
    pipe = client.pipeline()
    specs = [(index, plan_entry(spec.to_json())) for index, spec in enumerate(plan.tasks)]
    for start in range(0, len(specs), PLAN_CHUNK):
        pipe.hset(keys.job_plan(job_id), mapping=dict(specs[start : start + PLAN_CHUNK]))
    if specs:
        pipe.expire(keys.job_plan(job_id), JOB_TTL_SECONDS)
    if default_source is not None:
        pipe.hset(keys.job(job_id), "source", default_source)
    pipe.hset(
        keys.job(job_id),
        mapping={
            "kind": kind,
            "paths": json.dumps(paths, ensure_ascii=False),
            "roots": json.dumps(sorted({spec.root for spec in plan.tasks}), ensure_ascii=False),
            "total": plan.total_inputs,
            "tasks_total": len(plan.tasks),
            "skipped": json.dumps(plan.skipped),
            "created_at": created,
            "sent_tasks": 0,
            "sending_at": created,
            "published": 0,
            "exact": 0,
            "near": 0,
            "dead": 0,
        },
    )
    pipe.expire(keys.job(job_id), JOB_TTL_SECONDS)
    pipe.zadd(keys.jobs, {job_id: created})
    pipe.execute()


def task_refusal(client: redis.Redis, keys: Keys, job_id: str, root: str) -> str | None:
    """Why a batch of `job_id` reading under `root` must not run, or None when it may."""
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.job(job_id))
    pipe.hget(keys.job(job_id), "roots")
    exists, roots = pipe.execute()
    if not exists:
        return f"no job {job_id!r} (expired, reset, or never planned)"
    if roots is None or root not in json.loads(roots):
        return f"job {job_id} registered no root {root!r}"
    return None


def _sending_stopped(fields: dict[str, str]) -> bool:
    """Whether the job's backfill stopped before sending every batch: it said so, or has
    not been heard from for SENDER_GONE_AFTER seconds. (A job recorded without `Sending`
    notes, by an older version, never counts as stopped.)"""
    if "sent_at" in fields or "sending_at" not in fields:
        return False
    if "sending_stopped_at" in fields:
        return True
    return time.time() - float(fields["sending_at"]) > SENDER_GONE_AFTER


def read_progress(client: redis.Redis, keys: Keys, job_id: str) -> JobProgress:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.job(job_id))
    pipe.scard(keys.job_tasks(job_id))
    raw, tasks_done = pipe.execute()
    if not raw:
        raise KeyError(f"no such job: {job_id}")
    fields = {as_text(k): as_text(v) for k, v in raw.items()}

    def number(name: str) -> int:
        return int(fields.get(name, "0"))

    return JobProgress(
        job_id=job_id,
        total=number("total"),
        published=number("published"),
        exact=number("exact"),
        near=number("near"),
        dead=number("dead"),
        tasks_total=number("tasks_total"),
        tasks_done=int(tasks_done),
        skipped=json.loads(fields.get("skipped", "{}")),
        dead_reasons={
            name.removeprefix("dead:"): int(value)
            for name, value in fields.items()
            if name.startswith("dead:")
        },
        abandoned_tasks=number("abandoned_tasks"),
        resent_tasks=number("resent_tasks"),
        sent_tasks=number("tasks_total") if "sent_at" in fields else number("sent_tasks"),
        sending_stopped=_sending_stopped(fields),
    )


# A sending backfill not heard from (`Sending`) for SENDER_GONE_AFTER seconds stopped
# sending (killed, machine lost).
SENDER_GONE_AFTER = 60.0


class Sending:
    """How far a backfill got sending its job's batches, which go in index order: the
    job's `sent_tasks` (batches 0 .. sent_tasks - 1 are sent) and `sending_at` (when it
    was last heard from), noted after every batch sent: a backfill killed at any moment
    leaves at most the batch it was sending unnoted, which `backfill --resume` sends again
    (harmless: a batch runs once, `worker/batches.py`). With them `job` tells a backfill
    still sending from one that stopped, and `backfill --resume` sends the rest."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        job_id: str,
        wait: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client, self.keys, self.job_id, self.wait = client, keys, job_id, wait
        self.count = 0

    def sent(self, count: int) -> None:
        """Batches 0 .. count - 1 are sent."""
        self.count = count
        self._note({"sent_tasks": count, "sending_at": time.time()})

    def take_over(self) -> bool:
        """Become the sender of a job whose sending stopped (`backfill --resume`), in one
        transaction with the look at it; False when it is not stopped any more: another
        resume took it over first, and two would send every batch twice."""
        key = self.keys.job(self.job_id)
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # typeshed lacks it
                raw: dict[bytes, bytes] = pipe.hgetall(key)  # type: ignore[assignment]
                if not _sending_stopped({as_text(k): as_text(v) for k, v in raw.items()}):
                    return False
                pipe.multi()
                pipe.hset(key, "sending_at", time.time())
                pipe.hdel(key, "sending_stopped_at")
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    def stopped(self) -> None:
        """This backfill sends no more (interrupted): say so at once, with the exact count,
        rather than let readers wait SENDER_GONE_AFTER seconds to find out. Best effort and
        without waiting (Ctrl-C may come while Redis is away): then silence says it."""
        fields: dict[FieldT, EncodableT] = {
            "sent_tasks": self.count,
            "sending_stopped_at": time.time(),
        }
        with contextlib.suppress(redis.RedisError), no_waiting(self.client):
            self.client.hset(self.keys.job(self.job_id), mapping=fields)

    def finished(self) -> None:
        """Every batch is sent: from now on a batch found nowhere was lost
        (workers/worker/lost.py). A job whose sending stopped short is never completed
        behind its user's back: `backfill --resume` is how it goes on."""
        self._note({"sent_tasks": self.count, "sent_at": time.time()})

    def _note(self, fields: dict[FieldT, EncodableT]) -> None:
        write = partial(self.client.hset, self.keys.job(self.job_id), mapping=fields)
        if self.wait is None:
            write()
        else:
            retry_while_outage(write, self.wait)


# A backfill's sends while the broker is away: a few quick tries, then its user is told
# (`Sending.wait`) and the send is tried again for as long as it takes.
SEND_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


def enqueue_tasks(
    job_id: str,
    tasks: Iterable[tuple[int, dict[str, Any]]],
    default_source: str | None,
    sending: Sending,
) -> None:
    """Send the job's batches (task index, TaskSpec JSON), in index order, noting how far
    it got on `sending`. A send refused by an outage (Redis full, away) is tried again after
    `sending.wait(error)` returns, for as long as it returns: a job left with some of its
    tasks unsent would not finish. Sending one twice is harmless (the job's done set makes
    the second run publish nothing)."""
    from workers.worker.tasks import ingest_batch  # the Celery app is only needed to send

    for task_index, spec in tasks:
        args = (job_id, task_index, spec, default_source)
        send = partial(
            ingest_batch.apply_async,
            args=args,
            task_id=batch_task_id(job_id, task_index),
            # Given up after a second or two, not the app's two minutes (a worker's retry
            # must not be dropped): `sending.wait` then says why and tries again.
            retry_policy=SEND_RETRY_POLICY if sending.wait is not None else None,
        )
        if sending.wait is None:
            send()
        else:
            retry_while_outage(send, sending.wait)
        sending.sent(task_index + 1)


def unsent_tasks(
    client: redis.Redis, keys: Keys, job_id: str, sent: int
) -> list[tuple[int, dict[str, Any]]]:
    """The batches of a job whose sending stopped after `sent` of them that were never
    sent, from its plan."""
    entries: dict[bytes, bytes] = client.hgetall(keys.job_plan(job_id))  # type: ignore[assignment]
    return sorted(
        (int(index), spec_of_plan_entry(entry))
        for index, entry in entries.items()
        if int(index) >= sent
    )
