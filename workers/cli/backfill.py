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
    EXIT_USAGE,
    Context,
    check_waiting,
    fail,
    friendly_errors,
    open_runtime,
)

if TYPE_CHECKING:
    from workers.worker.jobs import JobProgress


def _summary(progress: JobProgress, seconds: float | None = None) -> str:
    """One line per job; with `seconds`, also the wall time and rate."""
    skipped = sum(progress.skipped.values())
    parts = [
        f"{progress.total} inputs",
        f"{progress.published} published",
        f"{progress.exact} exact duplicates",
        f"{progress.near} near duplicates",
        f"{progress.dead} dead",
    ]
    if progress.dead_reasons:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(progress.dead_reasons.items()))
        parts[-1] += f" ({detail})"
    if skipped:
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(progress.skipped.items()))
        parts.append(f"{skipped} skipped ({detail})")
    line = f"job {progress.job_id}: " + ", ".join(parts)
    if seconds is None:
        return line
    rate = progress.processed / seconds if seconds > 0 else 0.0
    return line + f" in {seconds:.1f}s ({rate:.0f} docs/s)"


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--source", help="Source name for records that carry none (default: folder name).")
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Follow progress until done (always on with the embedded Redis).",
)
@click.option(
    "--workers",
    "concurrency",
    type=click.IntRange(1, 64),
    help="Worker processes for the embedded run (default: up to the CPU count).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up waiting after this many seconds.",
)
@click.pass_obj
@friendly_errors
def backfill(
    ctx: Context,
    paths: tuple[Path, ...],
    source: str | None,
    wait: bool | None,
    concurrency: int | None,
    timeout: float | None,
) -> None:
    """Clean, deduplicate and publish every article under PATHS (folders or files)."""
    from workers.cli.supervisor import BlockedWait, follow_job, local_worker
    from workers.ingest.paths import escape_name
    from workers.ingest.plan import plan_backfill
    from workers.ingest.spec import Limits
    from workers.ops.connection import retry_while_outage
    from workers.worker.jobs import enqueue_plan, new_job_id, read_progress, record_job

    settings = ctx.settings
    wait = check_waiting(settings, wait, timeout, "backfill")
    if concurrency is not None and settings.redis_url:
        fail(
            "--workers is for the embedded Redis: with REDIS_URL set, start workers with "
            "`newsdedup worker`",
            EXIT_USAGE,
        )
    ingest = settings.ingest
    limits = Limits.from_settings(settings)
    plan = plan_backfill(list(paths), batch_size=ingest.batch_size, limits=limits)
    with open_runtime(ctx, rules=True) as (runtime, ends):
        blocked = BlockedWait(runtime)
        retry_while_outage(runtime.index.ensure_params, blocked)
        job_id = new_job_id()
        roots = [escape_name(str(p.resolve())) for p in paths]
        retry_while_outage(
            partial(record_job, runtime.client, runtime.keys, job_id, plan, roots, "backfill"),
            blocked,
        )
        from workers.worker.app import app

        app.conf.broker_url = ends.broker_url
        started = time.monotonic()
        if not plan.tasks:
            progress = read_progress(runtime.client, runtime.keys, job_id)
            click.echo(_summary(progress, time.monotonic() - started))
            return
        try:
            enqueue_plan(job_id, plan, source, wait=blocked)
        finally:
            app.pool.force_close_all()  # this process sends nothing more
        if not ends.embedded and not wait:
            click.echo(
                f"job {job_id}: enqueued {plan.total_inputs} inputs in "
                f"{len(plan.tasks)} tasks; follow with `newsdedup job {job_id}`"
            )
            return
        if ends.embedded:
            processes = concurrency or max(1, min(os.cpu_count() or 1, len(plan.tasks), 8))
            with local_worker(ends, settings, processes) as (worker, log_path):
                progress = follow_job(runtime, job_id, worker, log_path, timeout)
        else:
            progress = follow_job(runtime, job_id, None, None, timeout)
        click.echo(_summary(progress, time.monotonic() - started))


@click.command()
@click.argument("job_id", required=False)
@click.option("--wait", is_flag=True, help="Follow progress until done.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def job(ctx: Context, job_id: str | None, wait: bool, as_json: bool) -> None:
    """Show a backfill job's progress (default: the latest job)."""
    from workers.cli.supervisor import follow_job
    from workers.ops.connection import as_text
    from workers.worker.jobs import read_progress

    with open_runtime(ctx) as (runtime, _):
        if job_id is None:
            latest: Any = runtime.client.zrevrange(runtime.keys.jobs, 0, 0)
            if not latest:
                fail("no jobs recorded yet")
            job_id = as_text(latest[0])
        try:
            progress = (
                follow_job(runtime, job_id, None, None, None)
                if wait
                else read_progress(runtime.client, runtime.keys, job_id)
            )
        except KeyError:
            fail(f"no such job: {job_id}")
        if as_json:
            click.echo(json.dumps(_progress_dict(progress)))
        else:
            click.echo(("finished " if progress.finished else "running ") + _summary(progress))


def _progress_dict(progress: JobProgress) -> dict[str, Any]:
    return {**asdict(progress), "processed": progress.processed, "finished": progress.finished}
