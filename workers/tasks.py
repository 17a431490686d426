"""Celery tasks: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

from typing import Any

import redis
from celery.utils.log import get_task_logger

from workers.celery_app import app
from workers.keyspace import JOB_TTL_SECONDS
from workers.pipeline import process_inputs
from workers.polling import poll_feed as poll_once
from workers.polling import record_poll_result
from workers.runtime import worker_fetcher, worker_runtime
from workers.sources.feeds import FeedSpec
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


@app.task(
    name="newsdedup.poll_feed",
    bind=True,
    # Redis going away mid-poll: retry with the same task id, which takes the feed's lock
    # back and finds the entries it already accounted for in the feed's done set.
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def poll_feed(self: Any, spec: dict[str, Any]) -> dict[str, Any]:
    runtime = worker_runtime()
    task_id: str = self.request.id
    try:
        report = poll_once(
            runtime, FeedSpec.from_json(spec), task_id=task_id, fetcher=worker_fetcher()
        )
    except (redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception as exc:
        # A bug, not an expected failure: the waiting `poll` command must hear of it.
        record_poll_result(
            runtime.client, runtime.keys, task_id, None, f"{type(exc).__name__}: {exc}"
        )
        raise
    record_poll_result(runtime.client, runtime.keys, task_id, report)
    log.info("poll %s: %s", spec.get("name"), report.summary())
    return report.to_json()
