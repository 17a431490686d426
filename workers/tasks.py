"""Celery tasks: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from workers.batches import BatchRun
from workers.celery_app import app
from workers.connection import REDIS_OUTAGE
from workers.jobs import task_refusal
from workers.keyspace import JOB_TTL_SECONDS
from workers.polling import poll_feed as poll_once
from workers.polling import record_poll_result
from workers.runtime import worker_fetcher, worker_runtime
from workers.sources.feeds import FeedSpec
from workers.sources.files import TaskSpec

log = get_task_logger(__name__)


# Redis restarting or failing over: wait and retry. Both tasks are idempotent: a batch's
# done set makes a retry after a partial batch publish nothing twice; a poll retries with
# the same task id, which takes the feed's lock back and finds the entries it already
# accounted for in the feed's done set.
RETRY_ON_OUTAGE: dict[str, Any] = {
    "autoretry_for": REDIS_OUTAGE,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
}


@app.task(
    name="newsdedup.ingest_batch",
    bind=True,
    **RETRY_ON_OUTAGE,
    max_retries=20,
    # A batch that hits the hard time limit goes back to the queue instead of being
    # acknowledged with its unprocessed inputs; the next start runs it carefully
    # (workers/batches.py) and finds the input that took the time.
    acks_on_failure_or_timeout=False,
)
def ingest_batch(
    self: Any, job_id: str, task_index: int, spec: dict[str, Any], default_source: str | None
) -> dict[str, int]:
    runtime = worker_runtime()
    # Only batches a backfill planned are run: see workers/jobs.py.
    try:
        task = TaskSpec.from_json(spec)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("job %s task %s refused: malformed batch (%s)", job_id, task_index, exc)
        return {}
    refusal = task_refusal(runtime.client, runtime.keys, job_id, task.root)
    if refusal is not None:
        log.error("job %s task %s refused, no file read: %s", job_id, task_index, refusal)
        return {}
    batch = BatchRun(
        runtime, job_id, task_index, task, default_source, retries=self.request.retries or 0
    )
    batch.begin()
    try:
        result = batch.run()
    except SoftTimeLimitExceeded:
        batch.on_soft_time_limit()
        raise self.retry(countdown=0) from None
    except REDIS_OUTAGE:
        raise
    except Exception as exc:
        if batch.careful:
            raise
        # Not one input's fault as far as we know (those go to dead one by one): run the
        # batch again carefully, which pins it on an input if it is one.
        log.warning("job %s task %d: %s; retrying carefully", job_id, task_index, exc)
        raise self.retry(countdown=0) from None
    keys = runtime.keys
    pipe = runtime.client.pipeline(transaction=False)
    pipe.sadd(keys.job_tasks(job_id), task_index)
    for key in (keys.job_tasks(job_id), keys.job_done(job_id)):
        pipe.expire(key, JOB_TTL_SECONDS)
    pipe.execute()
    counts = result.counts()
    log.info(
        "job %s task %d%s: %s",
        job_id,
        task_index,
        f" (start {batch.attempt}, careful)" if batch.careful else "",
        counts,
    )
    return counts


@app.task(
    name="newsdedup.poll_feed",
    bind=True,
    **RETRY_ON_OUTAGE,
    max_retries=10,
)
def poll_feed(self: Any, spec: dict[str, Any]) -> dict[str, Any]:
    runtime = worker_runtime()
    task_id: str = self.request.id
    try:
        report = poll_once(
            runtime, FeedSpec.from_json(spec), task_id=task_id, fetcher=worker_fetcher()
        )
    except REDIS_OUTAGE:
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
