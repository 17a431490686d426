"""The worker a command starts for itself, and following what it does.

With the embedded Redis nothing else would process a command's tasks, so `backfill` and
`poll` start a local Celery worker tied to the command (`local_worker`), follow the job
or the polls until every input is accounted for, and stop the worker in order, also on
Ctrl-C or SIGTERM. While Redis refuses writes (full, read-only), the progress display
says so in one line instead of looking stuck (`BlockedWait`, `_Stall`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.cli.common import fail, stop_on_signals
from workers.config import Settings
from workers.feeds.status import read_poll
from workers.messages import counted
from workers.ops.connection import Endpoints, child_environment, is_outage, outage_reason
from workers.ops.processes import LIFELINE_FD_ENV, PARENT_PID_ENV, kill_group
from workers.ops.stats import write_refusal
from workers.worker.jobs import JobProgress, read_progress
from workers.worker.runtime import Runtime

if TYPE_CHECKING:
    from workers.worker.lost import LostPolls


def resume_advice(job_id: str) -> str:
    """What to do about a job whose backfill stopped sending its batches."""
    return f"`newsdedup backfill --resume {job_id}` sends the rest"


def follow_job(
    runtime: Runtime,
    job_id: str,
    worker: subprocess.Popen[bytes] | None,
    log_path: Path | None,
    timeout: float | None,
) -> JobProgress:
    """Show a progress bar until every input of the job is accounted for."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    started = time.monotonic()
    progress = read_progress(runtime.client, runtime.keys, job_id)
    stall = _Stall(runtime, console)
    # A worker this command started is watched itself (`worker.poll()`); otherwise the
    # queue's consumers are, through the workers' heartbeats.
    # On the embedded server a job's own backfill runs its worker: one interrupted leaves
    # the job's batches queued for `backfill --resume`, which runs one again.
    embedded_advice = (
        f"`newsdedup backfill --resume {job_id}` runs one and waits for the job, or start "
        "`newsdedup worker`"
    )
    presence = _Presence(runtime, console, "ingest", embedded_advice) if worker is None else None
    columns = (
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} docs/s"),
        TextColumn("dup {task.fields[dups]}"),
        TextColumn("dead {task.fields[dead]}"),
        TimeElapsedColumn(),
    )
    # The rate is of what was processed while this command followed the job: a job
    # joined half done (`job --wait`, a resume) has its earlier work behind it.
    before = progress.processed
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=progress.total, rate=0.0, dups=0, dead=0)
        while True:
            progress = read_progress(runtime.client, runtime.keys, job_id)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=progress.processed,
                rate=(progress.processed - before) / elapsed,
                dups=progress.duplicates,
                dead=progress.dead,
            )
            if presence is not None:
                presence.check(progress.processed)
            if progress.finished:
                return progress
            if progress.stopped:
                fail(
                    f"job {job_id}: its backfill stopped after sending {progress.sent_tasks} "
                    f"of {counted(progress.tasks_total, 'batch', 'batches')}, and those have "
                    f"run ({progress.processed}/{counted(progress.total, 'input')}); "
                    + resume_advice(job_id)
                )
            if progress.abandoned_tasks and progress.tasks_done >= progress.tasks_total:
                missing = progress.total - progress.processed
                fail(
                    f"job {job_id}: {counted(progress.abandoned_tasks, 'task')} given up after "
                    f"repeated failures, {counted(missing, 'input')} not accounted for; see "
                    "the worker logs"
                )
            if worker is not None and worker.poll() is not None:
                where = f"; see {log_path}" if log_path else ""
                fail(f"the worker process exited with code {worker.returncode}{where}")
            if timeout is not None and elapsed > timeout:
                fail(
                    f"job {job_id} not finished after {timeout:.0f}s "
                    f"({progress.processed}/{counted(progress.total, 'input')})"
                )
            stall.check(progress.processed)
            time.sleep(0.2)


class BlockedWait:
    """Between tries of a send that Redis refused: says why once per cause, then waits with
    backoff (up to 5 s) for as long as it takes; Ctrl-C stops the command."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.tries = 0
        self.said: str | None = None

    def __call__(self, error: BaseException) -> None:
        from rich.console import Console

        blocked = write_refusal(self.runtime.client, self.runtime.keys)
        # The data Redis takes writes: the send failed at the broker, another server.
        message = blocked or f"the Celery broker is {outage_reason(error) or error}"
        if message != self.said:
            self.said = message
            Console(stderr=True).print(
                f"blocked: {message}; waiting to send the job (Ctrl-C to stop)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        self.tries += 1
        time.sleep(min(5.0, 0.2 * 2 ** min(self.tries, 5)))


class _Stall:
    """While a job makes no progress, finds out every few seconds whether Redis refuses
    writes, and says so (and when it takes them again) in one line each."""

    AFTER = 3.0  # seconds without progress before looking
    EVERY = 5.0  # seconds between looks

    def __init__(self, runtime: Runtime, console: Any) -> None:
        self.runtime, self.console = runtime, console
        self.done = -1
        self.since = self.looked = time.monotonic()
        self.blocked: str | None = None

    def check(self, done: int) -> None:
        now = time.monotonic()
        if done != self.done:
            self.done, self.since = done, now
            if self.blocked is None:
                return
        elif now - self.since < self.AFTER or now - self.looked < self.EVERY:
            return
        self.looked = now
        blocked = write_refusal(self.runtime.client, self.runtime.keys)
        if blocked and blocked != self.blocked:
            self.console.print(f"blocked: {blocked}", markup=False, highlight=False, soft_wrap=True)
        elif self.blocked and not blocked:
            self.console.print("Redis takes writes again: going on", highlight=False)
        self.blocked = blocked


class _Presence:
    """While a command waits for tasks that no worker of its own runs: says, in one line,
    when no live worker consumes `queue` (and it makes no progress), and again when one
    does (workers/worker/presence.py). Looks every EVERY seconds: one SMEMBERS and one
    MGET."""

    EVERY = 1.0
    # Without a heartbeat, progress within this many seconds still counts as a worker: one
    # of a version that writes none.
    GRACE = 2.0

    def __init__(
        self, runtime: Runtime, console: Any, queue: str, embedded_advice: str = ""
    ) -> None:
        self.runtime, self.console, self.queue = runtime, console, queue
        # What to do on the embedded server (no REDIS_URL to share): the command's own.
        self.embedded_advice = embedded_advice
        self.looked = -float("inf")
        self.done = -1
        self.moved = time.monotonic()
        self.absent = False

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def check(self, done: int) -> None:
        from workers.worker.presence import consumers, live_workers

        now = time.monotonic()
        moved = done != self.done
        if moved:
            self.done, self.moved = done, now
        if now - self.looked < self.EVERY and not (moved and self.absent):
            return
        self.looked = now
        try:
            found = consumers(live_workers(self.runtime.client, self.runtime.keys), self.queue)
        except Exception as exc:
            if not is_outage(exc):
                raise
            return  # Redis refusing work is _Stall's to say
        if self.absent and (found or moved):
            names = ", ".join(w.name for w in found)
            who = f"worker {names} consumes" if found else "a worker consumes"
            self._say(f"{who} the {self.queue} queue: going on")
            self.absent = False
        elif not found and not self.absent and now - self.moved >= self.GRACE:
            embedded = not self.runtime.settings.redis_url
            start = (
                self.embedded_advice or "start `newsdedup worker` with the same data dir"
                if embedded
                else "start one (`newsdedup worker` with the same REDIS_URL, or BROKER_URL, "
                "and prefix)"
            )
            self._say(
                f"no worker is consuming the {self.queue} queue: {start}; still waiting "
                "(Ctrl-C to stop)"
            )
            self.absent = True


# Stopping the worker a command started: it stops taking messages, finishes those it
# holds (maybe another job's) and shuts down warm; whatever is left after this many
# seconds is killed. Shorter when the command was interrupted: the user is waiting.
WORKER_STOP_GRACE = 30.0
WORKER_STOP_GRACE_INTERRUPTED = 10.0


@dataclass
class LocalWorker:
    """A Celery worker this command started, and the write end of its lifeline: the pipe
    the worker watches to know when to stop (workers.ops.processes.exit_with_parent)."""

    process: subprocess.Popen[bytes]
    log_path: Path
    lifeline: int


def _start_local_worker(
    ends: Endpoints, settings: Settings, concurrency: int, queues: str = "ingest"
) -> LocalWorker:
    """A Celery worker for this command, tied to it: it stops when this process asks or
    ends, however it ends (workers.ops.processes.exit_with_parent), and holds this
    process's share of the embedded server (`inherit_fds`), which therefore outlives it."""
    log_path = settings.data_dir / "worker.log"
    log_file = log_path.open("ab")
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--pool",
        "prefork",
        "--loglevel",
        "WARNING",
        "--hostname",
        f"embedded-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    # Only the worker gets the read end; the write end is not inheritable, so the pipe
    # closes when this process ends, whatever else it started.
    watched, lifeline = os.pipe()
    try:
        worker = subprocess.Popen(
            command,
            env={
                **child_environment(ends, settings),
                PARENT_PID_ENV: str(os.getpid()),
                LIFELINE_FD_ENV: str(watched),
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(*ends.inherit_fds, watched),
            # Its own process group: a terminal's Ctrl-C reaches this command only, which
            # stops the worker in order; and the whole tree can be killed at once.
            process_group=0,
        )
    except BaseException:
        os.close(lifeline)
        raise
    finally:
        os.close(watched)
        log_file.close()
    return LocalWorker(worker, log_path, lifeline)


def _stop_local_worker(worker: LocalWorker, grace: float) -> None:
    """Ask the worker to drain and stop within `grace` seconds (it writes nothing more to
    Redis's unacked hash, so no message waits there for the visibility timeout); after
    that, SIGKILL for its whole process group, pool processes included, stuck or not."""
    with suppress(OSError):  # a worker already gone
        os.write(worker.lifeline, f"{grace:g}".encode("ascii"))
    os.close(worker.lifeline)
    process = worker.process
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace + 1.0)
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    kill_group(process.pid)  # pool processes a main process that died left behind


def take_back_from_killed_workers(app: Any, ends: Endpoints, settings: Settings) -> None:
    """For the embedded server's only user (`ends.alone`), before its worker starts: the
    batches a worker killed with its command held come back now, not after the visibility
    timeout (up to 15 minutes of a job that seems stuck), and so do those it was killed
    while taking (neither queued nor held), not after the lost-batch sweep's stall."""
    from functools import partial

    from workers.worker.app import lost_batch_sweep, send_batch_again
    from workers.worker.broker import restore_unacknowledged

    # A connection of its own: the command may have closed the app's pool after sending.
    with app.connection_for_write() as connection:
        restore_unacknowledged(connection)
        send = partial(send_batch_again, connection=connection)
        sweep = lost_batch_sweep(settings, ends.redis_url, send)
        if sweep is not None:  # always, on the embedded server
            try:
                sweep.sweep_with_no_worker()
            finally:
                sweep.stop()


@contextmanager
def local_worker(
    ends: Endpoints, settings: Settings, concurrency: int, queues: str = "ingest"
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A worker for the time of the block; SIGTERM, like Ctrl-C, interrupts the command
    so that the worker and the embedded server are stopped in order."""
    stop_on_signals()
    if ends.alone:
        from workers.worker.app import app

        take_back_from_killed_workers(app, ends, settings)
    worker = _start_local_worker(ends, settings, concurrency, queues)
    try:
        yield worker.process, worker.log_path
    except BaseException:
        _stop_local_worker(worker, WORKER_STOP_GRACE_INTERRUPTED)
        raise
    _stop_local_worker(worker, WORKER_STOP_GRACE)


def wait_for_polls(
    runtime: Runtime,
    task_ids: list[str],
    worker: subprocess.Popen[bytes] | None,
    log_path: Path | None,
    timeout: float | None,
    lost: LostPolls | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """Wait for the polls `task_ids` to end; `lost` sends again any whose message the
    broker lost on its way to a worker."""
    from rich.console import Console

    started = time.monotonic()
    records: dict[str, dict[str, str]] = {}
    console = Console(stderr=True)
    presence = _Presence(runtime, console, "fetch") if worker is None else None
    with console.status(f"polling {counted(len(task_ids), 'feed')}"):
        while True:
            for task_id in task_ids:
                if task_id not in records:
                    record = read_poll(runtime.client, runtime.keys, task_id)
                    if record.get("state") in ("done", "crashed"):
                        records[task_id] = record
            if presence is not None:
                presence.check(len(records))
            if len(records) == len(task_ids):
                return [(task_id, records[task_id]) for task_id in task_ids]
            if lost is not None:
                lost.check({task_id for task_id in task_ids if task_id not in records})
            if worker is not None and worker.poll() is not None:
                where = f"; see {log_path}" if log_path else ""
                fail(f"the worker process exited with code {worker.returncode}{where}")
            if timeout is not None and time.monotonic() - started > timeout:
                fail(f"polls not finished after {timeout:.0f}s ({len(records)}/{len(task_ids)})")
            time.sleep(0.2)
