"""`newsdedup backfill` and `newsdedup job`: files into the pipeline, and a job's progress."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from workers.cli.common import (
    CONCURRENCY,
    EXIT_USAGE,
    TIMEOUT,
    Context,
    check_waiting,
    command_app,
    fail,
    friendly_errors,
    old_option_name,
    open_runtime,
    stop_on_signals,
    timeout_needs_waiting,
)
from workers.messages import counted

if TYPE_CHECKING:
    from collections.abc import Callable

    from workers.worker.jobs import JobProgress, Sending
    from workers.worker.runtime import Runtime


def _summary(progress: JobProgress, seconds: float | None = None) -> str:
    """One line per job; with `seconds`, also the wall time and rate."""
    skipped = sum(progress.skipped.values())
    parts = [
        counted(progress.total, "input"),
        f"{progress.published} published",
        counted(progress.exact, "exact duplicate"),
        counted(progress.near, "near duplicate"),
        f"{progress.dead} dead",
    ]
    if progress.dead_reasons:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(progress.dead_reasons.items()))
        parts[-1] += f" ({detail})"
    if skipped:
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(progress.skipped.items()))
        parts.append(f"{skipped} skipped ({detail})")
    if progress.resent_tasks:
        resent = counted(progress.resent_tasks, "batch", "batches")
        parts.append(f"{resent} sent again (lost on the way to a worker)")
    if progress.sending_stopped:
        from workers.cli.supervisor import resume_advice

        parts.append(
            f"its backfill stopped after sending {progress.sent_tasks} of "
            f"{counted(progress.tasks_total, 'batch', 'batches')}: "
            + resume_advice(progress.job_id)
        )
    line = f"job {progress.job_id}: " + ", ".join(parts)
    if seconds is None:
        return line
    rate = progress.processed / seconds if seconds > 0 else 0.0
    return line + f" in {seconds:.1f}s ({rate:.0f} docs/s)"


def _progress_dict(
    progress: JobProgress, outcome: str, seconds: float | None = None
) -> dict[str, Any]:
    """The JSON of `backfill --json` and `job --json` (fields in docs/operations.md)."""
    return {
        **asdict(progress),
        "processed": progress.processed,
        "finished": progress.finished,
        "outcome": outcome,
        "seconds": None if seconds is None else round(seconds, 3),
    }


def _report(progress: JobProgress, outcome: str, seconds: float, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_progress_dict(progress, outcome, seconds)))
    else:
        click.echo(_summary(progress, seconds))


@click.command()
@click.argument("given_paths", metavar="[PATHS]...", nargs=-1, type=click.Path())
@click.option("--source", help="Source name for records that carry none (default: folder name).")
@click.option(
    "--resume",
    "resume_id",
    metavar="JOB",
    help="Send the batches that job JOB's backfill did not send (it was interrupted or "
    "killed while sending), then go on as a backfill does.",
)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Follow progress until done (always on with the embedded Redis).",
)
@click.option(
    "--concurrency",
    "-c",
    type=CONCURRENCY,
    help="Worker processes for the embedded run (default: up to the CPU count, at most 8).",
)
@old_option_name("--workers", "--concurrency", "concurrency", type=CONCURRENCY)
@click.option(
    "--timeout",
    type=TIMEOUT,
    help="Give up waiting after this many seconds.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the outcome as one JSON object (job id, counts; see docs/operations.md).",
)
@click.pass_obj
@friendly_errors
def backfill(
    ctx: Context,
    given_paths: tuple[str, ...],
    source: str | None,
    resume_id: str | None,
    wait: bool | None,
    concurrency: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Clean, deduplicate and publish every article under PATHS (folders or files)."""
    from workers.cli.supervisor import BlockedWait, follow_job, local_worker, resume_advice
    from workers.ingest.paths import escape_name
    from workers.ingest.plan import plan_backfill
    from workers.ingest.spec import Limits
    from workers.ops.connection import retry_while_outage
    from workers.worker.jobs import (
        Sending,
        enqueue_tasks,
        new_job_id,
        read_progress,
        record_job,
    )

    settings = ctx.settings
    if "" in given_paths:
        # Path("") is the current folder: a script's unset variable would back it up.
        fail("an empty path was given: name a folder or file (`.` for this one)", EXIT_USAGE)
    paths = tuple(Path(given) for given in given_paths)
    if paths and resume_id:
        fail("give the PATHS to backfill, or --resume JOB, not both", EXIT_USAGE)
    if not paths and not resume_id:
        fail("give the PATHS to backfill (folders or files), or --resume JOB", EXIT_USAGE)
    if resume_id and source is not None:
        fail("--source is the job's own with --resume", EXIT_USAGE)
    wait = check_waiting(settings, wait, timeout, "backfill")
    if concurrency is not None and settings.redis_url:
        fail(
            "--concurrency is for the embedded Redis: with REDIS_URL set, start workers with "
            "`newsdedup worker`",
            EXIT_USAGE,
        )
    ingest = settings.ingest
    limits = Limits.from_settings(settings)
    plan = (
        plan_backfill(list(paths), batch_size=ingest.batch_size, limits=limits) if paths else None
    )
    with open_runtime(ctx, rules=True, writes=True) as (runtime, ends):
        blocked = BlockedWait(runtime)
        retry_while_outage(runtime.index.ensure_params, blocked)
        if plan is not None:
            job_id = new_job_id()
            roots = [escape_name(str(p.resolve())) for p in paths]
            retry_while_outage(
                partial(
                    record_job,
                    runtime.client,
                    runtime.keys,
                    job_id,
                    plan,
                    roots,
                    "backfill",
                    source,
                ),
                blocked,
            )
            tasks = [(index, spec.to_json()) for index, spec in enumerate(plan.tasks)]
            sending = Sending(runtime.client, runtime.keys, job_id, blocked)
        else:
            assert resume_id is not None
            job_id = resume_id
            tasks, sending, source = _resumable(runtime, job_id, blocked, ends.embedded)
        app = command_app(ctx, ends)
        started = time.monotonic()
        stop_on_signals()  # SIGTERM too stops the sending in order, as Ctrl-C does
        try:
            enqueue_tasks(job_id, tasks, source, sending)
            sending.finished()
        except KeyboardInterrupt:
            sending.stopped()
            total = read_progress(runtime.client, runtime.keys, job_id).tasks_total
            fail(
                f"interrupted while sending job {job_id}: {sending.count} of "
                f"{counted(total, 'batch', 'batches')} sent; " + resume_advice(job_id),
                130,
            )
        finally:
            app.pool.force_close_all()  # this process sends nothing more
        if plan is not None and not plan.tasks:
            progress = read_progress(runtime.client, runtime.keys, job_id)
            _report(progress, "finished", time.monotonic() - started, as_json)
            return
        if not ends.embedded and not wait:
            if as_json:
                progress = read_progress(runtime.client, runtime.keys, job_id)
                click.echo(json.dumps(_progress_dict(progress, "enqueued")))
                return
            what = (
                f"enqueued {counted(plan.total_inputs, 'input')} in "
                f"{counted(len(plan.tasks), 'task')}"
                if plan is not None
                else f"enqueued the {counted(len(tasks), 'batch', 'batches')} its backfill "
                "did not send"
            )
            click.echo(f"job {job_id}: {what}; follow with `newsdedup job {job_id}`")
            return
        if ends.embedded:
            # No batch to send (a resume of a job whose batches all wait queued): up to 8.
            processes = concurrency or max(1, min(os.cpu_count() or 1, len(tasks) or 8, 8))
            with local_worker(ends, settings, processes) as (worker, log_path):
                follow_job(runtime, job_id, worker, log_path, timeout)
            # Read again once the worker has stopped: a batch marks itself done just
            # after its inputs are counted, and the report shows it done too.
            progress = read_progress(runtime.client, runtime.keys, job_id)
        else:
            progress = follow_job(runtime, job_id, None, None, timeout)
        _report(progress, "finished", time.monotonic() - started, as_json)


def _resumable(
    runtime: Runtime, job_id: str, blocked: Callable[[BaseException], None], embedded: bool
) -> tuple[list[tuple[int, dict[str, Any]]], Sending, str | None]:
    """What `backfill --resume` sends for `job_id`: the batches its backfill did not
    send, with the job's default source; a one-line refusal when there is nothing to
    resume (no such job, all sent, its backfill still sending). On the embedded server a
    job whose batches were all sent but not all run (its backfill, which ran the worker,
    was interrupted while waiting) sends nothing: the worker this command starts runs
    what is queued."""
    from workers.ops.connection import as_text
    from workers.worker.jobs import Sending, read_progress, unsent_tasks

    client, keys = runtime.client, runtime.keys
    kind, source = client.hmget(keys.job(job_id), "kind", "source")
    if kind is None:
        fail(f"no such job: {job_id}")
    if as_text(kind) != "backfill":
        fail(f"job {job_id} is not a backfill")
    progress = read_progress(client, keys, job_id)
    sending = Sending(client, keys, job_id, blocked)
    sending.count = progress.sent_tasks
    default_source = as_text(source) if source else None
    if progress.sent_tasks >= progress.tasks_total and not progress.sending_stopped:
        if embedded and not progress.finished:
            return [], sending, default_source
        fail(f"job {job_id}: its backfill sent every batch; `newsdedup job {job_id}` shows it")
    if not progress.sending_stopped:
        fail(
            f"job {job_id} is still being sent by its backfill ({progress.sent_tasks} of "
            f"{counted(progress.tasks_total, 'batch', 'batches')} so far); resume it only "
            "once that has stopped"
        )
    if not sending.take_over():
        fail(f"job {job_id} is being resumed by another `newsdedup backfill --resume {job_id}`")
    tasks = unsent_tasks(client, keys, job_id, progress.sent_tasks)
    return tasks, sending, default_source


@click.command()
@click.argument("job_id", required=False)
@click.option("--wait", is_flag=True, help="Follow progress until done.")
@click.option("--timeout", type=TIMEOUT, help="With --wait: give up after this many seconds.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (the fields of `backfill --json`).",
)
@click.pass_obj
@friendly_errors
def job(ctx: Context, job_id: str | None, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Show a backfill job's progress (default: the latest job)."""
    from workers.cli.supervisor import follow_job
    from workers.ops.connection import as_text
    from workers.worker.jobs import read_progress

    timeout_needs_waiting(timeout, wait)
    if wait:
        stop_on_signals()  # SIGTERM ends the wait as Ctrl-C does: one line, exit 130
    with open_runtime(ctx) as (runtime, _):
        if job_id is None:
            latest: Any = runtime.client.zrevrange(runtime.keys.jobs, 0, 0)
            if not latest:
                fail("no jobs recorded yet")
            job_id = as_text(latest[0])
        try:
            progress = (
                follow_job(runtime, job_id, None, None, timeout)
                if wait
                else read_progress(runtime.client, runtime.keys, job_id)
            )
        except KeyError:
            fail(f"no such job: {job_id}")
        outcome = _state(progress)
        if as_json:
            click.echo(json.dumps(_progress_dict(progress, outcome)))
        else:
            click.echo(f"{outcome} {_summary(progress)}")


def _state(progress: JobProgress) -> str:
    """finished, running, or stopped (its backfill did not send every batch, and the ones
    it sent have ended: the job goes no further until `backfill --resume`)."""
    if progress.finished:
        return "finished"
    if progress.stopped:
        return "stopped"
    return "running"
