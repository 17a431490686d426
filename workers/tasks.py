"""Celery tasks: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

from typing import Any

import redis
from celery.utils.log import get_task_logger

from workers.celery_app import app
from workers.keyspace import JOB_TTL_SECONDS
from workers.pipeline import process_inputs
from workers.runtime import worker_runtime
from workers.sources.files import TaskSpec, load_task

log = get_task_logger(__name__)


@app.task(
    name="newsdedup.ingest_batch",
    bind=True,
    # Redis restarting or failing over: wait and retry; the done set makes a retry
    # after a partial batch publish nothing twice.
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=20,
)
def ingest_batch(
    self: Any, job_id: str, task_index: int, spec: dict[str, Any], default_source: str | None
) -> dict[str, int]:
    runtime = worker_runtime()
    task = TaskSpec.from_json(spec)
    result = process_inputs(
        load_task(task, default_source=default_source),
        job_id=job_id,
        rules=runtime.rules,
        fingerprinter=runtime.fingerprinter,
        index=runtime.index,
        guard_prefix=task.root.rstrip("/") + "/",
        learner=runtime.learner,
    )
    keys = runtime.keys
    pipe = runtime.client.pipeline(transaction=False)
    pipe.sadd(keys.job_tasks(job_id), task_index)
    for key in (keys.job_tasks(job_id), keys.job_done(job_id)):
        pipe.expire(key, JOB_TTL_SECONDS)
    pipe.execute()
    counts = result.counts()
    log.info("job %s task %d: %s", job_id, task_index, counts)
    return counts
