"""`newsdedup stats`, `metrics` and `tail`: reading counters, serving them to Prometheus,
and printing the output streams."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import click

from workers.cli.common import (
    EXIT_USAGE,
    Context,
    fail,
    friendly_errors,
    open_runtime,
    stop_on_signals,
)
from workers.index.keys import STREAM_NAMES  # the standard library only
from workers.messages import printable

T = TypeVar("T")


def _watch_stats(read: Callable[[], dict[str, Any]], seconds: float, as_json: bool) -> None:
    """Show the stats again every `seconds` until Ctrl-C: tables refreshed in place on a
    terminal, else printed one after the other; or one JSON object per line."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from workers.ops.connection import REDIS_OUTAGE, redact
    from workers.ops.stats import stats_renderable

    stop_on_signals()
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


@click.command()
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
    from workers.ops.stats import collect_stats, render_stats

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


@click.command()
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
    from workers.ops.connection import redact
    from workers.ops.metrics import MetricsServer, Scraper, scrape_client

    with open_runtime(ctx) as (runtime, ends):
        client = scrape_client(ends.redis_url)
        try:
            try:
                server = MetricsServer(host, port, Scraper(client, runtime.keys, runtime.feeds))
            except OSError as exc:
                fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            stop_on_signals()
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


def _relation(shown: dict[str, str]) -> str:
    """A published document's link to another, as tail shows it ("" when none)."""
    if "update_of" in shown:
        return f"  (update {shown.get('version', '?')} of {shown['update_of']})"
    if "partial_of" in shown:
        return f"  (part of {shown['partial_of']})"
    if "contains" in shown:
        return f"  (contains {shown['contains']})"
    return ""


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
            + _relation(shown)
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


@click.command()
@click.option("--stream", type=click.Choice(STREAM_NAMES), default="docs", show_default=True)
@click.option("--from-start", is_flag=True, help="Read from the oldest entry.")
@click.option(
    "--count",
    type=click.IntRange(1),
    help="At most this many entries (default: all with --from-start, else the last 10).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new entries.")
@click.option(
    "--group",
    help="Read through this consumer group and acknowledge. A new group starts at the "
    "oldest entry (see --new-only); an existing one goes on where it left off.",
)
@click.option("--consumer", help="Consumer name within --group.")
@click.option(
    "--new-only", is_flag=True, help="With --group: a new group reads only entries added from now."
)
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
    new_only: bool,
) -> None:
    """Print entries of an output stream."""
    from workers.ops import streams
    from workers.ops.connection import OutageNotice, outage_reason, retry_while_outage

    if (group is None) != (consumer is None):
        fail("--group and --consumer go together", EXIT_USAGE)
    if new_only and group is None:
        fail("--new-only applies to a new consumer group: give --group and --consumer", EXIT_USAGE)
    if new_only and from_start:
        fail("--new-only and --from-start contradict each other", EXIT_USAGE)
    if follow:
        stop_on_signals()  # SIGTERM ends it as Ctrl-C does: one line, exit 130
    with open_runtime(ctx) as (runtime, _):
        client, key = runtime.client, runtime.keys.stream(stream)
        notice = OutageNotice(
            lambda reason, seconds: click.echo(
                f"tail: Redis is {reason}: waiting for it ({seconds:.0f} s so far)", err=True
            ),
            lambda: click.echo("tail: Redis answers again: following on", err=True),
        )

        def waiting(error: BaseException) -> None:
            notice.refused(outage_reason(error) or "away")
            time.sleep(1.0)

        def ask(call: Callable[[], T]) -> T:
            # Following, an outage is waited out; else it ends the command (one line).
            if not follow:
                return call()
            answer = retry_while_outage(call, waiting)
            notice.answered()
            return answer

        def show(entry: streams.Entry) -> None:
            _print_entry(stream, streams.as_record(stream, entry), as_json)

        if group and consumer:
            created = ask(lambda: streams.ensure_group(client, key, group, new_only=new_only))
            if not created and (from_start or new_only):
                # Where a group reads from is set when it is created; saying nothing would
                # let the user believe the flag had its effect.
                flag = "--from-start" if from_start else "--new-only"
                click.echo(
                    f"group {group} exists: it goes on where it left off ({flag} applies "
                    "only to a new group)",
                    err=True,
                )
            # This consumer's pending entries first: a tail cut off between reading a batch
            # and acknowledging all of it (Ctrl-C, a closed pipe, a reply lost with its
            # connection) left them delivered to it, and a ">" read never returns them.
            after = "0"
            printed = 0
            while count is None or printed < count:
                size = 100 if count is None else min(100, count - printed)
                pending = after != ">"
                batch = ask(
                    partial(
                        streams.read_group,
                        client,
                        key,
                        group,
                        consumer,
                        count=size,
                        after=after,
                        block_ms=5000 if follow and not pending else None,
                    )
                )
                if pending:
                    after = batch[-1][0] if batch else ">"
                elif not batch:
                    if not follow:
                        break
                    # Idle: look again for entries a lost reply left pending (one
                    # command per block period, and only while nothing comes).
                    after = "0"
                for entry in batch:
                    if entry[1]:
                        show(entry)
                        printed += 1
                    else:
                        click.echo(
                            f"entry {entry[0]} was trimmed from the stream before {consumer} "
                            "acknowledged it",
                            err=True,
                        )
                    # After it is out, not before.
                    ask(partial(streams.ack, client, key, group, entry[0]))
            return
        last = "$"
        if from_start:
            for entry in streams.iter_range(client, key, limit=count):
                show(entry)
                last = entry[0]
        else:
            for entry in ask(lambda: streams.last_entries(client, key, count or 10)):
                show(entry)
                last = entry[0]
        while follow:
            for entry in ask(
                partial(streams.read_after, client, key, last, block_ms=5000, count=100)
            ):
                show(entry)
                last = entry[0]
