"""`newsdedup poll` and `newsdedup feeds`: polling feeds by hand, and each feed's status."""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from workers.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    TIMEOUT,
    Context,
    check_waiting,
    command_app,
    fail,
    friendly_errors,
    open_runtime,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from workers.config import Settings
    from workers.feeds.spec import FeedSpec


def _feed_spec(
    settings: Settings,
    feeds: Sequence[FeedSpec],
    target: str,
    source: str | None,
    fetch_article: str | None,
) -> FeedSpec:
    """The configured feed named or located by `target`, else an ad-hoc one for the URL;
    --source and --fetch-article override either."""
    from workers.feeds.spec import FeedSpec, is_http_url
    from workers.feeds.status import ad_hoc_feed, feed_key

    match = next((spec for spec in feeds if target == spec.name), None)
    if match is None:
        if not is_http_url(target):
            fail(f"{target!r} is neither an http(s) URL nor a feed in the feeds config", EXIT_USAGE)
        match = next((spec for spec in feeds if feed_key(target) == feed_key(spec.url)), None)
    if match is None:
        return ad_hoc_feed(
            target,
            source=source,
            fetch_article=fetch_article,
            interval=settings.feeds.default_interval,
        )
    overrides: dict[str, Any] = {}
    if source:
        overrides["source"] = source
    if fetch_article:
        overrides["fetch_article"] = fetch_article
    return FeedSpec.from_json({**match.to_json(), **overrides}) if overrides else match


@click.command()
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
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per target, one per line (fields in docs/operations.md).",
)
@click.option(
    "--timeout",
    type=TIMEOUT,
    help="Give up waiting after this many seconds.",
)
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
    from workers.cli.supervisor import local_worker, wait_for_polls
    from workers.feeds.status import PollReport, record_poll_queued
    from workers.worker.lost import LostPolls, watch_polls
    from workers.worker.runtime import load_feed_specs

    settings = ctx.settings
    wait = check_waiting(settings, wait, timeout, "poll")
    # Every target is resolved before any server or worker starts: a typo is a usage error
    # at once.
    feeds = load_feed_specs(settings)
    specs = [_feed_spec(settings, feeds, target, source, fetch_article) for target in targets]
    with open_runtime(ctx, rules=True, feeds=feeds, writes=True) as (runtime, ends):
        runtime.index.ensure_params()
        app = command_app(ctx, ends)
        from workers.worker.tasks import poll_feed

        task_ids: list[str] = []
        lost: LostPolls | None = None
        try:
            for spec in specs:
                task_id = str(uuid.uuid4())
                record_poll_queued(runtime.client, runtime.keys, task_id, spec)
                poll_feed.apply_async(args=(spec.to_json(),), task_id=task_id)
                task_ids.append(task_id)
            if not ends.embedded and not wait:
                for spec, task_id in zip(specs, task_ids, strict=True):
                    if as_json:
                        queued = {"feed": spec.name, "url": spec.shown_url, "outcome": "enqueued"}
                        click.echo(json.dumps({**queued, "task_id": task_id}, ensure_ascii=False))
                    else:
                        click.echo(f"enqueued a poll of {spec.shown_url} (task {task_id})")
                return
            spec_of_task = dict(zip(task_ids, specs, strict=True))

            def send_again(task_id: str) -> None:
                spec = spec_of_task[task_id]
                click.echo(
                    f"{spec.name} ({spec.shown_url}): the poll's message was lost on the way to a "
                    "worker; sent again",
                    err=True,
                )
                poll_feed.apply_async(args=(spec.to_json(),), task_id=task_id)

            lost = watch_polls(
                app.conf.broker_url, settings.prefix, settings.worker.lost_batch_after, send_again
            )
            if ends.embedded:
                processes = min(len(specs), 4)
                with local_worker(ends, settings, processes, "fetch,ingest") as (worker, log):
                    records = wait_for_polls(runtime, task_ids, worker, log, timeout, lost)
            else:
                records = wait_for_polls(runtime, task_ids, None, None, timeout, lost)
        finally:
            if lost is not None:
                lost.close()
            app.pool.force_close_all()  # this process sends nothing more
    failed = False
    for spec, (task_id, record) in zip(specs, records, strict=True):
        if record.get("state") != "done":
            failed = True
            error = record.get("error", "?")
            if as_json:
                crashed = {"feed": spec.name, "url": spec.shown_url, "outcome": "crashed"}
                line = {**crashed, "error": error, "task_id": task_id}
                click.echo(json.dumps(line, ensure_ascii=False))
            else:
                click.echo(f"{spec.name} ({spec.shown_url}): crashed: {error}", err=True)
            continue
        report = PollReport.from_json(json.loads(record["report"]))
        failed = failed or report.outcome == "failed"
        if as_json:
            click.echo(json.dumps({**report.to_json(), "task_id": task_id}, ensure_ascii=False))
        else:
            click.echo(report.summary())
    if failed:
        sys.exit(EXIT_FAILURE)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: every field of every feed.")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Every column, URLs in full (for wide terminals).",
)
@click.pass_obj
@friendly_errors
def feeds(ctx: Context, as_json: bool, verbose: bool) -> None:
    """Each feed's status: the configured ones and any polled by hand."""
    from workers.feeds.status import feed_statuses

    with open_runtime(ctx) as (runtime, _):
        statuses = feed_statuses(runtime.client, runtime.keys, list(runtime.feeds))
        enabled = {spec.name: spec.enabled for spec in runtime.feeds}
    if as_json:
        click.echo(json.dumps([asdict(s) for s in statuses], ensure_ascii=False, indent=2))
        return
    if not statuses:
        click.echo(f"no feeds configured in {ctx.settings.feeds_config_path()} or polled yet")
        return
    from workers.cli.feed_table import print_feeds  # rich: only when printing

    print_feeds(statuses, enabled, time.time(), verbose=verbose)
