"""Celery tasks: thin wrappers that load a batch and hand it to the pipeline."""

from __future__ import annotations

import random
import time
from typing import Any

from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from workers.feeds.poll import HostBusy, poll_once
from workers.feeds.spec import FeedSpec
from workers.feeds.status import record_poll_result
from workers.ingest.spec import TaskSpec
from workers.ops.connection import is_outage, outage_reason, wait_while_evicting
from workers.worker.app import app
from workers.worker.batches import BatchRun
from workers.worker.jobs import task_refusal
from workers.worker.runtime import Runtime, worker_fetcher, worker_runtime

log = get_task_logger(__name__)


# Redis refusing work (restarting, failing over, full under noeviction, loading, or set to
# delete keys when full, which the task looks at before it writes anything): each
# task holds its message, unacknowledged, and waits inside its Redis calls (the runtime's
# HoldingRetry) for up to HOLD_SHARE of the soft time limit. Past that it hands the message
# back (Reject, requeue): pushed back onto the queue when Redis takes it, else left in the
# broker's unacked hash, which hands it out again after the visibility timeout. Never a
# Celery retry: sending one needs the same Redis to accept a write, and a retry that
# cannot be sent makes Celery drop the message and its inputs. Both tasks are idempotent:
# a batch's done set makes a second run publish nothing twice; a poll takes the feed's
# lock back and finds the entries it already accounted for in the feed's done set.
HOLD_SHARE = 0.8


def _hold_deadline(runtime: Runtime) -> float:
    return time.monotonic() + HOLD_SHARE * runtime.settings.worker.task_soft_time_limit


# The longest wait before a careful run that failed is started again (seconds).
RETRY_DELAY_MAX = 30.0


def _hand_back(what: str, exc: BaseException) -> Reject:
    log.warning("%s: Redis is %s; handing the message back", what, outage_reason(exc))
    return Reject(str(exc), requeue=True)


@app.task(
    name="newsdedup.ingest_batch",
    bind=True,
    # A batch that hits the hard time limit goes back to the queue instead of being
    # acknowledged with its unprocessed inputs; the next start runs it carefully
    # (workers/worker/batches.py) and finds the input that took the time.
    acks_on_failure_or_timeout=False,
    # Retries are bounded by the batch's own count of starts (batches.MAX_ATTEMPTS), which
    # redeliveries after a worker died count too.
    max_retries=None,
)
def ingest_batch(
    self: Any, job_id: str, task_index: int, spec: dict[str, Any], default_source: str | None
) -> dict[str, int]:
    runtime = worker_runtime()
    what = f"job {job_id} task {task_index}"
    try:
        task = TaskSpec.from_json(spec)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("%s refused: malformed batch (%s)", what, exc)
        return {}
    batch = BatchRun(
        runtime, job_id, task_index, task, default_source, retries=self.request.retries or 0
    )
    deadline = _hold_deadline(runtime)
    with runtime.hold.holding(until=deadline):
        try:
            wait_while_evicting(runtime.client, deadline, runtime.hold.on_wait)
            # Only batches a backfill planned are run: see workers/worker/jobs.py.
            refusal = task_refusal(runtime.client, runtime.keys, job_id, task.root)
            if refusal is not None:
                log.error("%s refused, no file read: %s", what, refusal)
                return {}
            batch.begin()
            result = batch.run()
            batch.finish()
        except SoftTimeLimitExceeded:
            try:
                batch.on_soft_time_limit()
            except Exception as exc:  # Redis refusing, most likely: the message goes back
                log.warning("%s: after the soft time limit: %s", what, exc)
                batch.on_outage()
            raise Reject("soft time limit", requeue=True) from None
        except Exception as exc:
            if is_outage(exc):
                batch.on_outage()
                raise _hand_back(what, exc) from None
            if batch.careful:
                # Not an input's (a careful run sends those to dead one by one): a fault
                # of the files or the worker. Retried later, until the batch's starts run
                # out and it is given up, saying so: a failed message left unacknowledged
                # would hold the job for ever without a word.
                delay = min(RETRY_DELAY_MAX, 2.0 ** (batch.attempt - 1))
                log.error("%s: %s: %s; retrying in %.0f s", what, type(exc).__name__, exc, delay)
                raise self.retry(countdown=delay) from None
            # Not one input's fault as far as we know (those go to dead one by one): run
            # the batch again carefully, which pins it on an input if it is one.
            log.warning("%s: %s; retrying carefully", what, exc)
            raise self.retry(countdown=0) from None
    counts = result.counts()
    log.info(
        "%s%s: %s", what, f" (start {batch.attempt}, careful)" if batch.careful else "", counts
    )
    return counts


# The longest pause before a poll that stepped aside for a busy host tries again
# (seconds); the pauses grow from 2 s.
BUSY_PAUSE_MAX = 60.0


def _busy_pause(tries: int) -> float:
    """Seconds until a poll's next try at a busy host, after `tries` tries: doubling, with
    jitter, so the polls of one host that stepped aside together do not return together."""
    return min(BUSY_PAUSE_MAX, 2.0 ** (tries + 1)) * (0.5 + random.random() / 2)


def _last_busy_try(busy_since: float, feed: FeedSpec) -> float:
    """When (unix time) a poll that found its host busy at `busy_since` makes its last
    try: half the feed's interval later, before the beat's message expires."""
    return busy_since + feed.interval / 2


@app.task(name="newsdedup.poll_feed", bind=True, max_retries=None)
def poll_feed(self: Any, spec: dict[str, Any], busy_since: float | None = None) -> dict[str, Any]:
    """Poll one feed. A feed whose host is busy with another request (a slow or stalled
    one, for another feed of that host) gives its worker process back and is tried again
    after a pause (`_busy_pause`), so the feeds of other hosts go on; `busy_since` (unix
    time) is when that began. For up to half the feed's interval, so that the last try
    comes before the beat's message expires (one interval after it was sent): that try
    waits for the host until the request deadline, and failing that the poll fails as
    `host_busy`."""
    runtime = worker_runtime()
    task_id: str = self.request.id
    deadline = _hold_deadline(runtime)
    try:
        feed = FeedSpec.from_json(spec)
        step_aside = busy_since is None or time.time() < _last_busy_try(busy_since, feed)
        with runtime.hold.holding(until=deadline):
            wait_while_evicting(runtime.client, deadline, runtime.hold.on_wait)
            report = poll_once(
                runtime, feed, task_id=task_id, fetcher=worker_fetcher(), step_aside=step_aside
            )
    except HostBusy as busy:
        since = time.time() if busy_since is None else busy_since
        until_last = _last_busy_try(since, feed) - time.time()
        pause = min(_busy_pause(self.request.retries), max(0.0, until_last))
        log.info("poll %s: %s; trying again in %.0f s", feed.name, busy.error.detail, pause)
        raise self.retry(countdown=pause, kwargs={"busy_since": since}) from None
    except Exception as exc:
        if is_outage(exc):
            raise _hand_back(f"poll {spec.get('name')}", exc) from None
        # A bug, not an expected failure: the waiting `poll` command must hear of it.
        record_poll_result(
            runtime.client, runtime.keys, task_id, None, f"{type(exc).__name__}: {exc}"
        )
        raise
    record_poll_result(runtime.client, runtime.keys, task_id, report)
    log.info("poll %s: %s", spec.get("name"), report.summary())
    return report.to_json()
