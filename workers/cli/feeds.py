"""`newsdedup poll` and `newsdedup feeds`: polling feeds by hand, and each feed's status."""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from workers.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Context,
    check_waiting,
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
    from workers.feeds.spec import FeedSpec
    from workers.feeds.status import ad_hoc_feed, feed_key

    match = next(
        (spec for spec in feeds if target == spec.name or feed_key(target) == feed_key(spec.url)),
        None,
    )
    if match is None:
        if urlsplit(target).scheme not in ("http", "https") or not urlsplit(target).hostname:
            fail(f"{target!r} is neither an http(s) URL nor a feed in the feeds config", EXIT_USAGE)
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
@click.option("--json", "as_json", is_flag=True, help="Print each poll's report as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
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
    from workers.worker.runtime import load_feed_specs

    settings = ctx.settings
    wait = check_waiting(settings, wait, timeout, "poll")
    # Every target is resolved before any server or worker starts: a typo is a usage error
    # at once.
    feeds = load_feed_specs(settings)
    specs = [_feed_spec(settings, feeds, target, source, fetch_article) for target in targets]
    with open_runtime(ctx, rules=True) as (runtime, ends):
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
            with local_worker(ends, ctx.settings, processes, "fetch,ingest") as (worker, log):
                records = wait_for_polls(runtime, task_ids, worker, log, timeout)
        else:
            records = wait_for_polls(runtime, task_ids, None, None, timeout)
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def feeds(ctx: Context, as_json: bool) -> None:
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
