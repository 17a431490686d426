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

import json
import secrets
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import redis

from workers.index.keys import JOB_TTL_SECONDS, Keys
from workers.ingest.plan import Plan
from workers.ops.connection import as_text, retry_while_outage


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

    @property
    def processed(self) -> int:
        return self.published + self.exact + self.near + self.dead

    @property
    def duplicates(self) -> int:
        return self.exact + self.near

    @property
    def finished(self) -> bool:
        return self.processed >= self.total


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
    )


def enqueue_plan(
    job_id: str,
    plan: Plan,
    default_source: str | None,
    *,
    wait: Callable[[BaseException], None] | None = None,
) -> None:
    """Send every task of the plan. A send refused by an outage (Redis full, away) is tried
    again after `wait(error)` returns, for as long as it returns: a job left with some of
    its tasks unsent would never finish. Sending one twice is harmless (the job's done set
    makes the second run publish nothing)."""
    from workers.worker.tasks import ingest_batch  # the Celery app is only needed to send

    for task_index, spec in enumerate(plan.tasks):
        args = (job_id, task_index, spec.to_json(), default_source)
        send = partial(
            ingest_batch.apply_async, args=args, task_id=batch_task_id(job_id, task_index)
        )
        if wait is None:
            send()
        else:
            retry_while_outage(send, wait)


def mark_sent(client: redis.Redis, keys: Keys, job_id: str) -> None:
    """Every task of the job is sent: from now on a batch found nowhere was lost (a job
    whose sending was cut short is never completed behind its user's back)."""
    client.hset(keys.job(job_id), "sent_at", time.time())
