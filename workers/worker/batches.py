"""Running one backfill batch so that redelivery and poison inputs lose nothing.

A batch's first delivery runs fast: chunks of inputs, the next prepared while Redis runs
the last (`pipeline.process_inputs`). Every later delivery of the same batch (its worker
was killed, it hit a time limit, it was retried) runs *carefully*: one input at a time,
each first named in the job's cursor hash and looked up in the job's done set, in one
round trip. Inputs already accounted for are not worked on again, and the input a worker
died on is known:

- one that hits the soft time limit after taking at least half of it by itself goes to
  `dead` at once (`time_limit`); if the time went on many inputs, the next run simply
  goes on from where this one stopped;
- one named by the cursor when `POISON_STRIKES` careful runs died (the hard time limit,
  the OOM killer, a crash in C code) goes to `dead` as `worker_lost`. One death is not
  enough: a worker killed for reasons of its own (a deploy, a node drain) must not cost
  the input it happened to be working on;
- one whose processing raises goes to `dead` as `processing_error`, and the rest of the
  batch goes on.

After `MAX_ATTEMPTS` starts the batch is given up (logged and counted on the job as
`abandoned_tasks`) rather than redelivered for ever.

The done set holds only the inputs of batches still running: a batch that ends is added
to the job's ended batches and its inputs leave the done set, in one transaction, and a
delivery of an ended batch (an ack a crash cut off) does nothing. A copy of the batch
still running when another copy ends it (a redelivery or resend beside the first
delivery) is stopped by the index scripts themselves, which look for the batch among the
ended ones in the same atomic step as for its input in the done set
(scripts/common.lua). So the guard holds at every moment, and the done set stays as
small as the work in flight.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from workers.document import DeadInput, LoadedInput
from workers.index.keys import JOB_TTL_SECONDS, done_member
from workers.ingest.load import load_location, load_task, single_input_ref
from workers.ingest.spec import TaskSpec
from workers.ops.connection import is_outage
from workers.pipeline.process import BatchResult, process_with_runtime
from workers.worker.runtime import Runtime

log = logging.getLogger(__name__)

POISON_STRIKES = 2
MAX_ATTEMPTS = 25


@dataclass(frozen=True, slots=True)
class Suspect:
    """The input a previous careful run was working on when it died."""

    input_ref: str
    id: str
    source: str
    strikes: int  # careful runs that died on it, counting the last one
    retries: int = 0  # the Celery retry count of the run that named it

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Suspect:
        return cls(**json.loads(raw))


@dataclass(slots=True)
class BatchRun:
    """One start of one backfill batch (a Celery delivery of `ingest_batch`)."""

    runtime: Runtime
    job_id: str
    task_index: int
    task: TaskSpec
    default_source: str | None
    retries: int = 0  # Celery's count of this message's retries (not of redeliveries)
    attempt: int = 0
    suspect: Suspect | None = None
    current: Suspect | None = None  # careful runs: the input being worked on
    current_since: float = 0.0  # time.monotonic() when work on `current` began
    result: BatchResult = field(default_factory=BatchResult)
    ended: bool = False  # an earlier delivery of this batch ended it
    skipped: list[str] = field(default_factory=list)  # refs a careful run found done

    @property
    def careful(self) -> bool:
        return self.attempt > 1

    @property
    def guard_prefix(self) -> str:
        return self.task.root.rstrip("/") + "/"

    def begin(self) -> None:
        """Count this start and read what the last one left in the cursor."""
        keys, field_name = self.runtime.keys, str(self.task_index)
        pipe = self.runtime.client.pipeline(transaction=False)
        pipe.hincrby(keys.job_attempts(self.job_id), field_name, 1)
        pipe.hget(keys.job_cursor(self.job_id), field_name)
        pipe.expire(keys.job_attempts(self.job_id), JOB_TTL_SECONDS)
        pipe.sismember(keys.job_tasks(self.job_id), str(self.task_index))
        attempt, cursor, _, ended = pipe.execute()
        self.attempt = int(attempt)
        self.ended = bool(ended)
        if cursor is not None:
            left = Suspect.from_json(cursor)
            # Only a redelivery (the same retry count: that run never sent a retry of its
            # own) means its worker died; a run that ended in a retry (Redis went away)
            # was not killed by the input it was on.
            died = left.retries == self.retries
            self.suspect = replace(
                left, strikes=left.strikes + (1 if died else 0), retries=self.retries
            )

    def run(self) -> BatchResult:
        if self.ended:
            log.info("job %s task %d: already ended, nothing to do", self.job_id, self.task_index)
            return self.result
        if self.attempt > MAX_ATTEMPTS:
            log.error(
                "job %s task %d: given up after %d starts; its unaccounted inputs stay so",
                self.job_id,
                self.task_index,
                self.attempt - 1,
            )
            keys, pipe = self.runtime.keys, self.runtime.client.pipeline(transaction=False)
            pipe.hincrby(keys.job(self.job_id), "abandoned_tasks")
            # Counted as ended, so a waiting `job --wait` stops and says so.
            pipe.sadd(keys.job_tasks(self.job_id), self.task_index)
            pipe.hdel(keys.job_plan(self.job_id), str(self.task_index))
            pipe.execute()
            return self.result
        if not self.careful:
            self.result = self._process(
                load_task(
                    self.task,
                    default_source=self.default_source,
                    read_html=self.runtime.extractor.read,
                )
            )
            return self.result
        if self.suspect is not None and self.suspect.strikes >= POISON_STRIKES:
            self._kill(
                self.suspect,
                "worker_lost",
                f"its worker died {self.suspect.strikes} times while processing it "
                "(hard time limit, out of memory or a crash)",
            )
        root = Path(self.task.root)
        for loc in self.task.locations:
            # A file holding one input is named before it is read: reading and decoding a
            # huge file can be what takes the time.
            ref = single_input_ref(loc)
            if ref is not None and self._begin_input(ref):
                self.skipped.append(ref)
                continue
            items = load_location(
                root,
                loc,
                default_source=self.default_source,
                read_html=self.runtime.extractor.read,
                limits=self.task.limits,
            )
            for item in items:
                if ref is None and self._begin_input(item.input_ref, item.id, item.source):
                    self.skipped.append(item.input_ref)
                    continue
                # With the id and source read from the input, for its dead entry if need be.
                self.current = Suspect(item.input_ref, item.id, item.source, 0)
                try:
                    self.result.outcomes.extend(self._process([item]).outcomes)
                except SoftTimeLimitExceeded:
                    raise
                except Exception as exc:
                    if is_outage(exc):  # Redis's trouble, not the input's
                        raise
                    self._kill_current("processing_error", f"{type(exc).__name__}: {exc}")
                self.current = None
        self._clear_cursor()
        return self.result

    def finish(self) -> None:
        """Count the batch as ended (for `job --wait` and the summary), drop it from the
        job's plan (nothing to send again: workers/worker/lost.py), and take its inputs out
        of the done set: from now on the ended batch guards them (module docstring). One
        transaction, so one of the two always holds."""
        if self.ended:
            return
        keys = self.runtime.keys
        refs = {outcome.input_ref for outcome in self.result.outcomes}.union(self.skipped)
        pipe = self.runtime.client.pipeline(transaction=True)
        pipe.sadd(keys.job_tasks(self.job_id), self.task_index)
        pipe.hdel(keys.job_plan(self.job_id), str(self.task_index))
        if refs:
            pipe.zrem(
                keys.job_done(self.job_id), *(done_member(self.guard_prefix + r) for r in refs)
            )
        for key in (keys.job_tasks(self.job_id), keys.job_done(self.job_id)):
            pipe.expire(key, JOB_TTL_SECONDS)
        pipe.execute()

    def on_outage(self) -> None:
        """This start ends because Redis refuses work (full, away, read-only), which is no
        input's fault: forget the start and the cursor, so the next start runs at full
        speed and strikes no input as a suspect. Best effort and without waiting: HDEL is
        one of the writes a full Redis still takes; an unreachable one takes none, and
        then the next start is merely careful."""
        if self.attempt == 0:
            return  # refused before `begin`: the cursor is an earlier start's, keep it
        keys, field_name = self.runtime.keys, str(self.task_index)
        try:
            with self.runtime.hold.holding(until=0.0):
                pipe = self.runtime.client.pipeline(transaction=False)
                pipe.hdel(keys.job_cursor(self.job_id), field_name)
                pipe.hdel(keys.job_attempts(self.job_id), field_name)
                pipe.execute()
        except Exception as exc:
            if not is_outage(exc):
                raise

    def on_soft_time_limit(self) -> None:
        """The soft time limit struck. In a careful run, the input being worked on is the
        culprit if it took at least half the limit by itself; otherwise (a fast run, or time
        spread over many inputs) the next careful run goes on from here and finds out."""
        limit = self.runtime.settings.worker.task_soft_time_limit
        spent = time.monotonic() - self.current_since
        if self.careful and self.current is not None and spent >= limit / 2:
            self._kill_current(
                "time_limit",
                f"working on it took {spent:.0f} s of the task's soft time limit ({limit} s)",
            )
        self._clear_cursor()

    def _process(self, inputs: list[LoadedInput] | Iterator[LoadedInput]) -> BatchResult:
        return process_with_runtime(
            self.runtime,
            inputs,
            job_id=self.job_id,
            guard_prefix=self.guard_prefix,
            batch=str(self.task_index),
        )

    def _begin_input(self, input_ref: str, doc_id: str = "", source: str = "") -> bool:
        """Name the input in the cursor and make it current; True if the job has already
        accounted for it (then there is nothing to do)."""
        keys = self.runtime.keys
        strikes = 0
        if self.suspect is not None and self.suspect.input_ref == input_ref:
            strikes = self.suspect.strikes
        cursor = Suspect(input_ref, doc_id, source, strikes, self.retries)
        pipe = self.runtime.client.pipeline(transaction=False)
        pipe.hset(keys.job_cursor(self.job_id), str(self.task_index), cursor.to_json())
        pipe.expire(keys.job_cursor(self.job_id), JOB_TTL_SECONDS)
        pipe.zscore(keys.job_done(self.job_id), done_member(self.guard_prefix + input_ref))
        _, _, score = pipe.execute()
        self.current, self.current_since = cursor, time.monotonic()
        return score is not None

    def _kill_current(self, reason: str, error: str) -> None:
        if self.current is not None:
            self._kill(self.current, reason, error)

    def _kill(self, item: Suspect, reason: str, error: str) -> None:
        """Send one input to `dead`; a no-op if the job already accounted for it."""
        dead = DeadInput(item.input_ref, reason, error, item.id, item.source)
        log.warning(
            "job %s task %d: %s -> dead (%s)", self.job_id, self.task_index, item.input_ref, reason
        )
        self.result.outcomes.extend(
            self.runtime.index.run(
                self.runtime.index.build_batch(
                    self.job_id,
                    [],
                    [(dead, 0)],
                    guard_prefix=self.guard_prefix,
                    batch=str(self.task_index),
                )
            )
        )

    def _clear_cursor(self) -> None:
        self.runtime.client.hdel(self.runtime.keys.job_cursor(self.job_id), str(self.task_index))
