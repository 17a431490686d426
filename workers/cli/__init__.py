"""The `newsdedup` command line.

Expected failures (Redis unreachable, a missing path, bad config) print one line to
stderr and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar
from urllib.parse import urlsplit

import click
import kombu.exceptions
import redis

from workers.config import ConfigError, Settings, load_settings, use_settings
from workers.feeds.poll import (
    PollReport,
    ad_hoc_feed,
    feed_key,
    feed_statuses,
    read_poll,
    record_poll_queued,
)
from workers.feeds.spec import FeedSpec
from workers.index.dedup import IndexMismatch, delete_matching
from workers.index.keys import STREAM_NAMES
from workers.ingest.files import Limits, PlanError, plan_backfill
from workers.ingest.paths import escape_name
from workers.ops import streams
from workers.ops.connection import (
    REDIS_OUTAGE,
    Endpoints,
    RedisUnavailable,
    as_text,
    child_environment,
    connected_settings,
    endpoints,
    outage_reason,
    ping,
    redact,
    retry_while_outage,
)
from workers.ops.processes import PARENT_PID_ENV, kill_group
from workers.ops.stats import collect_stats, printable, render_stats, write_refusal
from workers.pipeline.process import rebuild_index
from workers.worker.jobs import JobProgress, enqueue_plan, new_job_id, read_progress, record_job
from workers.worker.runtime import Runtime, build_runtime

EXIT_FAILURE = 1
EXIT_USAGE = 2

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"newsdedup: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the failures a user can act on into one line and a non-zero exit."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (RedisUnavailable, ConfigError, IndexMismatch) as exc:
            fail(str(exc))
        except PlanError as exc:
            fail(str(exc), EXIT_USAGE)
        except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
            reason = outage_reason(exc)
            if reason is None and isinstance(exc, kombu.exceptions.OperationalError):
                fail(f"cannot reach the Celery broker: {redact(str(exc))}")
            if reason is None:
                raise  # a bug: the traceback is for us
            fail(f"Redis is {reason}")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@dataclass(slots=True)
class Context:
    settings: Settings


@contextmanager
def open_runtime(ctx: Context) -> Iterator[tuple[Runtime, Endpoints]]:
    """Connect to the configured Redis, or start/attach the embedded one."""
    settings = ctx.settings
    with endpoints(settings.redis_url, settings.broker_url, settings.data_dir) as ends:
        runtime = build_runtime(settings, ends.redis_url)
        ping(runtime.client, ends.redis_url)
        try:
            yield runtime, ends
        finally:
            runtime.client.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of settings (also NEWSDEDUP_CONFIG); see docs/configuration.md.",
)
@click.version_option(package_name="newsdedup")
@click.pass_context
def cli(click_ctx: click.Context, config_file: Path | None) -> None:
    """Streaming ingest and near-duplicate removal for news.

    Without REDIS_URL every command uses an embedded Redis kept in NEWSDEDUP_DATA_DIR
    (default ./.newsdedup), so later commands see the same state.
    """
    try:
        click_ctx.obj = Context(use_settings(load_settings(config_file)))
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)


# --------------------------------------------------------------------------- backfill


def _follow(
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
    columns = (
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.1f} docs/s"),
        TextColumn("dup {task.fields[dups]}"),
        TextColumn("dead {task.fields[dead]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("backfill", total=progress.total, rate=0.0, dups=0, dead=0)
        while True:
            progress = read_progress(runtime.client, runtime.keys, job_id)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(
                task,
                completed=progress.processed,
                rate=progress.processed / elapsed,
                dups=progress.duplicates,
                dead=progress.dead,
            )
            if progress.finished:
                return progress
            if progress.abandoned_tasks and progress.tasks_done >= progress.tasks_total:
                fail(
                    f"job {job_id}: {progress.abandoned_tasks} task(s) given up after "
                    f"repeated failures, {progress.total - progress.processed} inputs not "
                    "accounted for; see the worker logs"
                )
            if worker is not None and worker.poll() is not None:
                where = f"; see {log_path}" if log_path else ""
                fail(f"the worker process exited with code {worker.returncode}{where}")
            if timeout is not None and elapsed > timeout:
                fail(
                    f"job {job_id} not finished after {timeout:.0f}s "
                    f"({progress.processed}/{progress.total} inputs)"
                )
            stall.check(progress.processed)
            time.sleep(0.2)


class _BlockedWait:
    """Between tries of a send that Redis refused: says why once per cause, then waits with
    backoff (up to 5 s) for as long as it takes; Ctrl-C stops the command."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.tries = 0
        self.said: str | None = None

    def __call__(self, error: BaseException) -> None:
        from rich.console import Console

        blocked = write_refusal(self.runtime.client, self.runtime.keys)
        message = blocked or f"Redis is {outage_reason(error)}"
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


# Stopping the worker a command started: a warm shutdown lets the running batch (maybe
# another job's) finish and be acknowledged; whatever is left after this many seconds is
# killed. Shorter when the command was interrupted: the user is waiting for it to end.
WORKER_STOP_GRACE = 30.0
WORKER_STOP_GRACE_INTERRUPTED = 10.0


def _start_local_worker(
    ends: Endpoints, settings: Settings, concurrency: int, queues: str = "ingest"
) -> tuple[subprocess.Popen[bytes], Path]:
    """A Celery worker for this command, tied to it: it stops when this process ends,
    however it ends (workers.ops.processes.exit_with_parent), and holds this process's share
    of the embedded server (`inherit_fds`), which therefore outlives it."""
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
    worker = subprocess.Popen(
        command,
        env={**child_environment(ends, settings), PARENT_PID_ENV: str(os.getpid())},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        pass_fds=ends.inherit_fds,
        # Its own process group: a terminal's Ctrl-C reaches this command only, which
        # stops the worker in order; and the whole tree can be killed at once.
        process_group=0,
    )
    log_file.close()
    return worker, log_path


def _stop_local_worker(worker: subprocess.Popen[bytes], grace: float) -> None:
    """Warm shutdown (SIGTERM: the running batch finishes), then after `grace` seconds
    SIGKILL for the worker's whole process group, pool processes included, stuck or not."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=grace)
    if worker.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    kill_group(worker.pid)  # pool processes a main process that died left behind


@contextmanager
def _local_worker(
    ends: Endpoints, settings: Settings, concurrency: int, queues: str = "ingest"
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A worker for the time of the block; SIGTERM, like Ctrl-C, interrupts the command
    so that the worker and the embedded server are stopped in order."""
    _stop_on_signals()
    worker, log_path = _start_local_worker(ends, settings, concurrency, queues)
    try:
        yield worker, log_path
    except BaseException:
        _stop_local_worker(worker, WORKER_STOP_GRACE_INTERRUPTED)
        raise
    _stop_local_worker(worker, WORKER_STOP_GRACE)


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


@cli.command()
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
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
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
    settings = ctx.settings
    ingest = settings.ingest
    limits = Limits(
        max_file_bytes=ingest.max_file_bytes,
        max_record_bytes=ingest.max_record_bytes,
        max_decompressed_bytes=ingest.max_decompressed_bytes,
        max_title_chars=ingest.max_title_chars,
    )
    plan = plan_backfill(list(paths), batch_size=ingest.batch_size, limits=limits)
    with open_runtime(ctx) as (runtime, ends):
        blocked = _BlockedWait(runtime)
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
            with _local_worker(ends, settings, processes) as (worker, log_path):
                progress = _follow(runtime, job_id, worker, log_path, timeout)
        else:
            progress = _follow(runtime, job_id, None, None, timeout)
        click.echo(_summary(progress, time.monotonic() - started))


@cli.command()
@click.argument("job_id", required=False)
@click.option("--wait", is_flag=True, help="Follow progress until done.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def job(ctx: Context, job_id: str | None, wait: bool, as_json: bool) -> None:
    """Show a backfill job's progress (default: the latest job)."""
    with open_runtime(ctx) as (runtime, _):
        if job_id is None:
            latest: Any = runtime.client.zrevrange(runtime.keys.jobs, 0, 0)
            if not latest:
                fail("no jobs recorded yet")
            job_id = as_text(latest[0])
        try:
            progress = (
                _follow(runtime, job_id, None, None, None)
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


# --------------------------------------------------------------------------- feeds


def _feed_spec(
    runtime: Runtime, target: str, source: str | None, fetch_article: str | None
) -> FeedSpec:
    """The configured feed named or located by `target`, else an ad-hoc one for the URL;
    --source and --fetch-article override either."""
    match = next(
        (
            spec
            for spec in runtime.feeds
            if target == spec.name or feed_key(target) == feed_key(spec.url)
        ),
        None,
    )
    if match is None:
        if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).hostname:
            fail(f"{target!r} is neither an http(s) URL nor a feed in the feeds config", EXIT_USAGE)
        return ad_hoc_feed(
            target,
            source=source,
            fetch_article=fetch_article,
            interval=runtime.settings.feeds.default_interval,
        )
    overrides: dict[str, Any] = {}
    if source:
        overrides["source"] = source
    if fetch_article:
        overrides["fetch_article"] = fetch_article
    return FeedSpec.from_json({**match.to_json(), **overrides}) if overrides else match


def _wait_for_polls(
    runtime: Runtime,
    task_ids: list[str],
    worker: subprocess.Popen[bytes] | None,
    log_path: Path | None,
    timeout: float | None,
) -> list[tuple[str, dict[str, str]]]:
    from rich.console import Console

    started = time.monotonic()
    records: dict[str, dict[str, str]] = {}
    with Console(stderr=True).status(f"polling {len(task_ids)} feed(s)"):
        while True:
            for task_id in task_ids:
                if task_id not in records:
                    record = read_poll(runtime.client, runtime.keys, task_id)
                    if record.get("state") in ("done", "crashed"):
                        records[task_id] = record
            if len(records) == len(task_ids):
                return [(task_id, records[task_id]) for task_id in task_ids]
            if worker is not None and worker.poll() is not None:
                where = f"; see {log_path}" if log_path else ""
                fail(f"the worker process exited with code {worker.returncode}{where}")
            if timeout is not None and time.monotonic() - started > timeout:
                fail(f"polls not finished after {timeout:.0f}s ({len(records)}/{len(task_ids)})")
            time.sleep(0.2)


@cli.command()
@click.argument("targets", metavar="URL_OR_FEED...", nargs=-1, required=True)
@click.option("--source", help="Source name for the documents (default: the feed's, or the host).")
@click.option(
    "--fetch-article",
    type=click.Choice(["auto", "always", "never"]),
    help="Fetch article pages: auto = for entries that carry only a summary (default: the "
    "feed's setting, else auto).",
)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Wait until the polls are processed (always on with the embedded Redis).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each poll's report as JSON.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@click.pass_obj
@friendly_errors
def poll(
    ctx: Context,
    targets: tuple[str, ...],
    source: str | None,
    fetch_article: str | None,
    wait: bool | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Poll feeds once by hand: fetch each feed, keep its entries not seen before, fetch
    their articles where needed, then clean, deduplicate and publish them.

    Each target is a feed URL or the name of a feed in the feeds config. Exits 1 when a
    poll failed (the reason is printed and the feed's status records it).
    """
    with open_runtime(ctx) as (runtime, ends):
        specs = [_feed_spec(runtime, target, source, fetch_article) for target in targets]
        runtime.index.ensure_params()
        from workers.worker.app import app
        from workers.worker.tasks import poll_feed

        app.conf.broker_url = ends.broker_url
        task_ids = []
        try:
            for spec in specs:
                task_id = str(uuid.uuid4())
                record_poll_queued(runtime.client, runtime.keys, task_id, spec)
                poll_feed.apply_async(args=(spec.to_json(),), task_id=task_id)
                task_ids.append(task_id)
        finally:
            app.pool.force_close_all()  # this process sends nothing more
        if not ends.embedded and not wait:
            for spec, task_id in zip(specs, task_ids, strict=True):
                click.echo(f"enqueued a poll of {spec.url} (task {task_id})")
            return
        if ends.embedded:
            processes = min(len(specs), 4)
            with _local_worker(ends, ctx.settings, processes, "fetch,ingest") as (worker, log):
                records = _wait_for_polls(runtime, task_ids, worker, log, timeout)
        else:
            records = _wait_for_polls(runtime, task_ids, None, None, timeout)
    failed = False
    for spec, (_, record) in zip(specs, records, strict=True):
        if record.get("state") != "done":
            failed = True
            click.echo(f"{spec.name} ({spec.url}): crashed: {record.get('error', '?')}", err=True)
            continue
        report = PollReport.from_json(json.loads(record["report"]))
        failed = failed or report.outcome == "failed"
        click.echo(
            json.dumps(report.to_json(), ensure_ascii=False) if as_json else report.summary()
        )
    if failed:
        sys.exit(EXIT_FAILURE)


def _ago(stamp: float | None, now: float) -> str:
    if stamp is None:
        return "never"
    seconds = now - stamp
    future = seconds < 0
    seconds = abs(seconds)
    text = (
        f"{seconds:.0f}s"
        if seconds < 120
        else f"{seconds / 60:.0f}m"
        if seconds < 7200
        else f"{seconds / 3600:.1f}h"
    )
    return f"in {text}" if future else f"{text} ago"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def feeds(ctx: Context, as_json: bool) -> None:
    """Each feed's status: the configured ones and any polled by hand."""
    with open_runtime(ctx) as (runtime, _):
        statuses = feed_statuses(runtime.client, runtime.keys, list(runtime.feeds))
        enabled = {spec.name: spec.enabled for spec in runtime.feeds}
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], ensure_ascii=False, indent=2))
        return
    if not statuses:
        click.echo(f"no feeds configured in {ctx.settings.feeds_config_path()} or polled yet")
        return
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(title="feeds")
    for name, justify in (
        ("feed", "left"),
        ("polled", "right"),
        ("status", "left"),
        ("entries", "right"),
        ("new: last/all", "right"),
        ("published", "right"),
        ("dups", "right"),
        ("dead", "right"),
        ("errors", "right"),
        ("next poll", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in statuses:
        status = {"polled": str(s.last_status), "not_modified": "304"}.get(
            s.last_outcome, s.last_outcome
        )
        if s.last_error:
            status += f"\n[red]{s.last_error}"
        if s.configured and not enabled.get(s.name, True):
            next_poll = "disabled"
        elif not s.configured:
            next_poll = "by hand"
        else:
            next_poll = _ago(s.next_poll, now) if s.next_poll else "at beat start"
        table.add_row(
            f"{s.name}\n[dim]{s.url}",
            _ago(s.last_polled, now),
            status,
            str(s.last_entries),
            f"{s.last_new}/{s.new_total}",
            str(s.published),
            str(s.exact + s.near),
            str(s.dead),
            str(s.failures) + (f" ({s.failures_in_row} in a row)" if s.failures_in_row else ""),
            next_poll,
        )
    Console().print(table)


# --------------------------------------------------------------------------- worker


def _run_celery(ctx: Context, what: str, argv: list[str]) -> None:
    """Run a Celery program (worker, beat) with the newsdedup app in this process."""
    with open_runtime(ctx) as (runtime, ends):
        runtime.index.ensure_params()
        # The app, its pool children and the beat: this command's settings, on its Redis.
        use_settings(connected_settings(ctx.settings, ends))
        os.environ.update(child_environment(ends, ctx.settings))
        from workers.worker.app import app

        app.conf.broker_url = ends.broker_url
        click.echo(
            f"newsdedup {what}: Redis {redact(ends.redis_url)}"
            + (" (embedded)" if ends.embedded else ""),
            err=True,
        )
        try:
            app.start(argv)
        finally:
            app.pool.force_close_all()


_WORKER_OPTIONS = (
    click.option(
        "--concurrency",
        "-c",
        type=click.IntRange(1, 256),
        help="Pool processes (default: CPU count).",
    ),
    click.option("--queues", "-Q", default="ingest,fetch", show_default=True),
    click.option("--loglevel", "-l", default="INFO", show_default=True),
    click.argument("celery_args", nargs=-1, type=click.UNPROCESSED),
)


def _worker_options(func: Callable[P, R]) -> Callable[P, R]:
    for option in reversed(_WORKER_OPTIONS):
        func = option(func)
    return func


def _worker_argv(
    concurrency: int | None, queues: str, loglevel: str, celery_args: tuple[str, ...]
) -> list[str]:
    argv = ["worker", "--queues", queues, "--loglevel", loglevel]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return [*argv, *celery_args]


@cli.command(context_settings={"ignore_unknown_options": True})
@_worker_options
@click.pass_obj
@friendly_errors
def worker(
    ctx: Context, concurrency: int | None, queues: str, loglevel: str, celery_args: tuple[str, ...]
) -> None:
    """Run a Celery worker with the newsdedup app (extra args go to `celery worker`).

    It runs backfill batches (queue `ingest`) and feed polls (queue `fetch`); the polls
    are sent by `newsdedup beat`, of which exactly one must run.
    """
    _run_celery(ctx, "worker", _worker_argv(concurrency, queues, loglevel, celery_args))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@friendly_errors
def beat(ctx: Context, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run the one Celery beat that sends each configured feed's poll on schedule.

    Run exactly one per Redis and prefix, next to any number of workers; a second beat
    refuses to start. The schedule comes from the feeds config and is re-read at start.
    """
    _run_celery(ctx, "beat", ["beat", "--loglevel", loglevel, *celery_args])


@cli.command(context_settings={"ignore_unknown_options": True})
@_worker_options
@click.pass_obj
@friendly_errors
def run(
    ctx: Context, concurrency: int | None, queues: str, loglevel: str, celery_args: tuple[str, ...]
) -> None:
    """Worker and beat in one process, for development: poll the configured feeds and
    process everything until stopped (Ctrl-C). In production run `worker` and `beat`."""
    argv = _worker_argv(concurrency, queues, loglevel, celery_args)
    _run_celery(ctx, "worker + beat", [*argv, "--beat"])


# --------------------------------------------------------------------------- stats/tail


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM end a long-running command with KeyboardInterrupt, also when the
    process started with SIGINT ignored (a shell's background job). Only the first: a
    repeated signal must not cut short the stopping of the worker and the server."""

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _watch_stats(read: Callable[[], dict[str, Any]], seconds: float, as_json: bool) -> None:
    """Show the stats again every `seconds` until Ctrl-C: tables refreshed in place on a
    terminal, else printed one after the other; or one JSON object per line."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from workers.ops.stats import stats_renderable

    _stop_on_signals()
    console = Console()
    try:
        if as_json or not console.is_terminal:
            while True:
                data = read()
                if as_json:
                    click.echo(json.dumps(data, ensure_ascii=False))
                else:
                    console.print(stats_renderable(data), "")
                time.sleep(seconds)
        with Live(stats_renderable(read()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(seconds)
                try:
                    view = stats_renderable(read())
                except REDIS_OUTAGE as exc:
                    view = Text(f"cannot read Redis: {redact(str(exc))}; retrying", style="red")
                live.update(view, refresh=True)
    except KeyboardInterrupt:
        return


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.2),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 2) until Ctrl-C; with --json, one line each time.",
)
@click.pass_obj
@friendly_errors
def stats(ctx: Context, as_json: bool, watch: float | None) -> None:
    """Counters overall and per source, rates over 1/5/15 minutes, streams and their
    consumer groups (pending, lag), dead reasons, index size, Redis memory, feeds."""
    with open_runtime(ctx) as (runtime, _):

        def read() -> dict[str, Any]:
            return collect_stats(runtime.client, runtime.keys, runtime.feeds)

        if watch is not None:
            _watch_stats(read, watch, as_json)
            return
        data = read()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        render_stats(data)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 or :: for every interface).",
)
@click.pass_obj
@friendly_errors
def metrics(ctx: Context, port: int, host: str) -> None:
    """Serve Prometheus metrics at http://HOST:PORT/metrics until Ctrl-C.

    Each scrape reads the counters, streams, index and Redis memory from Redis, so one
    server shows every worker's numbers; Redis unreachable during a scrape answers
    newsdedup_up 0.
    """
    from workers.ops.metrics import MetricsServer, Scraper, scrape_client

    with open_runtime(ctx) as (runtime, ends):
        client = scrape_client(ends.redis_url)
        try:
            try:
                server = MetricsServer(host, port, Scraper(client, runtime.keys, runtime.feeds))
            except OSError as exc:
                fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            _stop_on_signals()
            click.echo(
                f"newsdedup metrics: serving {server.url} from Redis {redact(ends.redis_url)}"
                + (" (embedded)" if ends.embedded else "")
                + "; Ctrl-C to stop"
            )
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass
            finally:
                server.server_close()
        finally:
            client.close()


def _print_entry(stream: str, record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False))
        return
    # Every field shown comes from an input: escaped, one entry stays one line.
    shown = {name: printable(str(value)) for name, value in record.items()}
    if stream == "docs":
        renamed = f" (input id {shown['input_id']})" if "input_id" in shown else ""
        click.echo(
            f"{shown['stream_id']}  {shown['id']}{renamed}  [{shown['source']}]  {shown['title']}"
        )
    elif stream == "duplicates":
        click.echo(
            f"{shown['stream_id']}  {shown['id']}  {shown['kind']} of "
            f"{shown['duplicate_of']}  (similarity {record['similarity']:.2f})"
        )
    else:
        click.echo(
            f"{shown['stream_id']}  {shown['input_ref']}  {shown['reason']}: {shown['error']}"
        )


@cli.command()
@click.option("--stream", type=click.Choice(STREAM_NAMES), default="docs", show_default=True)
@click.option("--from-start", is_flag=True, help="Read from the oldest entry.")
@click.option(
    "--count",
    type=click.IntRange(1),
    help="At most this many entries (default: all with --from-start, else the last 10).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new entries.")
@click.option("--group", help="Read through this consumer group and acknowledge.")
@click.option("--consumer", help="Consumer name within --group.")
@click.pass_obj
@friendly_errors
def tail(
    ctx: Context,
    stream: str,
    from_start: bool,
    count: int | None,
    as_json: bool,
    follow: bool,
    group: str | None,
    consumer: str | None,
) -> None:
    """Print entries of an output stream."""
    if (group is None) != (consumer is None):
        fail("--group and --consumer go together", EXIT_USAGE)
    with open_runtime(ctx) as (runtime, _):
        client, key = runtime.client, runtime.keys.stream(stream)

        def show(entry: streams.Entry) -> None:
            _print_entry(stream, streams.as_record(stream, entry), as_json)

        if group and consumer:
            streams.ensure_group(client, key, group, from_start=from_start)
            printed = 0
            while count is None or printed < count:
                size = 100 if count is None else min(100, count - printed)
                batch = streams.read_group(
                    client, key, group, consumer, count=size, block_ms=5000 if follow else None
                )
                if not batch and not follow:
                    break
                for entry in batch:
                    show(entry)
                    streams.ack(client, key, group, entry[0])  # after it is out, not before
                    printed += 1
            return
        last = "$"
        if from_start:
            for entry in streams.iter_range(client, key, limit=count):
                show(entry)
                last = entry[0]
        else:
            for entry in streams.last_entries(client, key, count or 10):
                show(entry)
                last = entry[0]
        while follow:
            for entry in streams.read_after(client, key, last, block_ms=5000, count=100):
                show(entry)
                last = entry[0]


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def reset(ctx: Context, yes: bool) -> None:
    """Delete everything newsdedup stored under its key prefix (streams, index, stats)."""
    prefix = ctx.settings.prefix
    _confirm(yes, f"delete every key under {prefix!r}")
    with open_runtime(ctx) as (runtime, _):
        deleted = delete_matching(runtime.client, runtime.keys, runtime.keys.all_pattern)
    click.echo(f"deleted {deleted} keys under {prefix!r}")


# --------------------------------------------------------------------------- index


@cli.group()
def index() -> None:
    """Inspect, reset or rebuild the dedup index."""


@index.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def index_stats(ctx: Context, as_json: bool) -> None:
    """Documents indexed, memory used, parameters."""
    with open_runtime(ctx) as (runtime, _):
        data = runtime.index.describe()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    per_doc = data["bytes_per_document"]
    click.echo(f"documents indexed: {data['documents']}")
    click.echo(
        f"index memory: {data['memory_bytes']} bytes in {data['keys']} keys"
        + (f", {per_doc} bytes per document" if per_doc else "")
    )
    click.echo(
        f"retention: {data['retention_days']:g} days by {data['retention_clock']} time"
        + (f", clock at {data['watermark']}" if data["watermark"] else "")
    )
    params = data["parameters"]
    if params:
        click.echo("parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))


@index.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def index_reset(ctx: Context, yes: bool) -> None:
    """Delete the dedup index only (streams and stats stay)."""
    _confirm(yes, "delete the dedup index")
    with open_runtime(ctx) as (runtime, _):
        deleted = runtime.index.reset()
    click.echo(f"deleted the dedup index ({deleted} keys)")


@index.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def index_rebuild(ctx: Context, yes: bool) -> None:
    """Rebuild the index from the `docs` stream with the current parameters.

    For a parameter change (num_perm, shingle_size, seed, lsh_threshold, facts_bits): nothing
    is published again; documents that duplicate an earlier one under the new parameters
    are left out of the index.
    """
    _confirm(yes, "rebuild the dedup index from the docs stream")
    with open_runtime(ctx) as (runtime, _):
        runtime.index.reset()
        totals = rebuild_index(runtime)
    click.echo(
        f"rebuilt the dedup index: {totals.get('indexed', 0)} documents indexed, "
        f"{totals.get('skipped', 0)} left out as duplicates under the new parameters"
    )


# --------------------------------------------------------------------------- boilerplate


@cli.group()
def boilerplate() -> None:
    """Inspect or reset the boilerplate lines learned per source."""


@boilerplate.command("show")
@click.argument("source", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def boilerplate_show(ctx: Context, source: str | None, limit: int, as_json: bool) -> None:
    """List SOURCE's learned lines with the documents each was seen in; without SOURCE,
    list the sources the learner has counted."""
    with open_runtime(ctx) as (runtime, _):
        learner = runtime.learner
        if source is None:
            rows = [(name, *learner.learned_lines(name)) for name in learner.sources()]
            if as_json:
                listing = [{"source": n, "documents": d, "learned": len(ls)} for n, d, ls in rows]
                click.echo(json.dumps(listing, ensure_ascii=False, indent=2))
                return
            if not rows:
                click.echo("no source has been counted yet")
            for name, documents, lines in rows:
                click.echo(
                    f"{printable(name)}: {documents} documents counted, {len(lines)} lines learned"
                )
            return
        documents, lines = learner.learned_lines(source)
    bar = runtime.learner.settings.bar(documents)
    if as_json:
        payload = {
            "source": source,
            "documents": documents,
            "learn_at": bar,
            "lines": [{"count": ln.count, "text": ln.text} for ln in lines[:limit]],
            "learned": len(lines),
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{printable(source)}: {documents} documents counted; a line is learned once seen in "
        f"{bar:g} of them; {len(lines)} learned"
    )
    for line in lines[:limit]:
        click.echo(f"{line.count:>8}  {printable(line.text)}")
    if len(lines) > limit:
        click.echo(f"... {len(lines) - limit} more (--limit)")


@boilerplate.command("reset")
@click.argument("source", required=False)
@click.option("--all", "all_sources", is_flag=True, help="Forget every source.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def boilerplate_reset(ctx: Context, source: str | None, all_sources: bool, yes: bool) -> None:
    """Forget the lines learned for SOURCE (or for every source with --all)."""
    if (source is None) == (not all_sources):
        fail("name one SOURCE or pass --all", EXIT_USAGE)
    which = "every source" if source is None else printable(source)
    _confirm(yes, f"forget the boilerplate learned for {which}")
    with open_runtime(ctx) as (runtime, _):
        deleted = runtime.learner.reset(source)
    click.echo(f"forgot the boilerplate learned for {which} ({deleted} keys)")


def _confirm(yes: bool, action: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"this will {action}; pass --yes to confirm", EXIT_USAGE)
    click.confirm(f"This will {action}. Continue?", abort=True)


def main() -> None:
    cli(prog_name="newsdedup")
