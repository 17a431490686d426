"""Backfill jobs: record a plan in Redis, enqueue its tasks, read its progress.

A job records the roots its plan reads under (`roots` in the job hash: resolved,
escaped folders, as in TaskSpec.root). A worker runs a batch only when its job exists
and registered the batch's root (`task_refusal`); anything else is a message nobody
planned, such as one forged by whoever can write to the broker, and is refused without
reading a file: logged as an error and acknowledged. It is not sent to `dead`: its
inputs were never part of any job's total, so counting them would corrupt the job's
accounting (a forged batch could make a running job look finished).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

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

    @property
    def processed(self) -> int:
        return self.published + self.exact + self.near + self.dead

    @property
    def duplicates(self) -> int:
        return self.exact + self.near

    @property
    def finished(self) -> bool:
        return self.processed >= self.total


def record_job(
    client: redis.Redis, keys: Keys, job_id: str, plan: Plan, paths: list[str], kind: str
) -> None:
    created = time.time()
    pipe = client.pipeline()
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
        if wait is None:
            ingest_batch.apply_async(args=args)
        else:
            retry_while_outage(partial(ingest_batch.apply_async, args=args), wait)
