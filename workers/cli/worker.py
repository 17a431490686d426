"""`newsdedup worker`, `beat` and `run`: Celery programs with the newsdedup app, in this
process."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from workers.cli.common import (
    CONCURRENCY,
    Context,
    command_app,
    fail,
    friendly_errors,
    open_runtime,
)


def _run_celery(ctx: Context, what: str, argv: list[str], *, beat: bool = False) -> None:
    """Run a Celery program (worker, beat) with the newsdedup app in this process. With
    `beat`, take the beat lock first: a second beat refuses in one line, before Celery
    prints anything."""
    import redis

    from workers.ops.connection import as_text, child_environment, redact

    with open_runtime(ctx, rules=True, writes=True) as (runtime, ends):
        runtime.index.ensure_params()
        lock = None
        if beat:
            from workers.feeds.schedule import another_beat, take_beat_lock

            lock = take_beat_lock(runtime.client, runtime.keys)
            if lock is None:
                holder = runtime.client.get(runtime.keys.beat_lock)
                fail(another_beat(None if holder is None else as_text(holder)))
        # The app, its pool children and the beat: this command's settings, on its Redis.
        app = command_app(ctx, ends)
        if ends.alone and argv[0] == "worker":
            from workers.cli.supervisor import take_back_from_killed_workers

            take_back_from_killed_workers(app, ends, ctx.settings)
        os.environ.update(child_environment(ends, ctx.settings))
        click.echo(
            f"newsdedup {what}: Redis {redact(ends.redis_url)}"
            + (" (embedded)" if ends.embedded else ""),
            err=True,
        )
        try:
            app.start(argv)
        finally:
            app.pool.force_close_all()
            if lock is not None:  # the beat's own release, should it not have run
                with contextlib.suppress(redis.RedisError):
                    lock.release()


P = ParamSpec("P")
R = TypeVar("R")

_WORKER_OPTIONS = (
    click.option(
        "--concurrency",
        "-c",
        type=CONCURRENCY,
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


@click.command(context_settings={"ignore_unknown_options": True})
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


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@friendly_errors
def beat(ctx: Context, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run the one Celery beat that sends each configured feed's poll on schedule.

    Run exactly one per Redis and prefix, next to any number of workers; a second beat
    refuses to start. The schedule comes from the feeds config and is re-read at start.
    """
    _run_celery(ctx, "beat", ["beat", "--loglevel", loglevel, *celery_args], beat=True)


@click.command(context_settings={"ignore_unknown_options": True})
@_worker_options
@click.pass_obj
@friendly_errors
def run(
    ctx: Context, concurrency: int | None, queues: str, loglevel: str, celery_args: tuple[str, ...]
) -> None:
    """Worker and beat in one process, for development: poll the configured feeds and
    process everything until stopped (Ctrl-C). In production run `worker` and `beat`."""
    argv = _worker_argv(concurrency, queues, loglevel, celery_args)
    _run_celery(ctx, "worker + beat", [*argv, "--beat"], beat=True)


# --------------------------------------------------------------------------- stats/tail
