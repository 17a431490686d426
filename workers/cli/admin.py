"""`newsdedup reset`, `index ...` and `boilerplate ...`: what newsdedup stored: shown, reset
or rebuilt."""

from __future__ import annotations

import json

import click

from workers.cli.common import (
    EXIT_USAGE,
    Context,
    confirm,
    fail,
    friendly_errors,
    old_option_name,
    open_runtime,
)
from workers.messages import counted, printable  # the standard library only


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def reset(ctx: Context, yes: bool) -> None:
    """Delete everything newsdedup stored under its key prefix (streams, index, stats)."""
    from workers.index.dedup import delete_matching

    prefix = ctx.settings.prefix
    confirm(yes, f"delete every key under {prefix!r}")
    with open_runtime(ctx) as (runtime, _):
        deleted = delete_matching(runtime.client, runtime.keys, runtime.keys.all_pattern)
    click.echo(f"deleted {counted(deleted, 'key')} under {prefix!r}")


@click.group()
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
        f"index memory: {counted(data['memory_bytes'], 'byte')} in {counted(data['keys'], 'key')}"
        + (f", {counted(per_doc, 'byte')} per document" if per_doc else "")
    )
    click.echo(
        f"retention: {counted(float(data['retention_days']), 'day')} by "
        f"{data['retention_clock']} time"
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
    confirm(yes, "delete the dedup index")
    with open_runtime(ctx) as (runtime, _):
        deleted = runtime.index.reset()
    click.echo(f"deleted the dedup index ({counted(deleted, 'key')})")


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
    from workers.pipeline.process import rebuild_index

    confirm(yes, "rebuild the dedup index from the docs stream")
    with open_runtime(ctx, rules=True, writes=True) as (runtime, _):
        runtime.index.reset()
        totals = rebuild_index(runtime)
    click.echo(
        f"rebuilt the dedup index: {counted(totals.get('indexed', 0), 'document')} indexed, "
        f"{totals.get('skipped', 0)} left out as duplicates under the new parameters"
    )


@click.group()
def boilerplate() -> None:
    """Inspect or reset the boilerplate lines learned per source."""


@boilerplate.command("show")
@click.argument("source", required=False)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many lines.",
)
@old_option_name("--limit", "--count", "count", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
@friendly_errors
def boilerplate_show(ctx: Context, source: str | None, count: int, as_json: bool) -> None:
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
                    f"{printable(name)}: {counted(documents, 'document')} counted, "
                    f"{counted(len(lines), 'line')} learned"
                )
            return
        documents, lines = learner.learned_lines(source)
    bar = runtime.learner.settings.bar(documents)
    if as_json:
        payload = {
            "source": source,
            "documents": documents,
            "learn_at": bar,
            "lines": [{"count": ln.count, "text": ln.text} for ln in lines[:count]],
            "learned": len(lines),
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{printable(source)}: {counted(documents, 'document')} counted; a line is learned once "
        f"seen in {bar:g} of them; {len(lines)} learned"
    )
    for line in lines[:count]:
        click.echo(f"{line.count:>8}  {printable(line.text)}")
    if len(lines) > count:
        click.echo(f"... {len(lines) - count} more (--count)")


@boilerplate.command("reset")
@click.argument("source", required=False)
@click.option("--all", "all_sources", is_flag=True, help="Forget every source.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@friendly_errors
def boilerplate_reset(ctx: Context, source: str | None, all_sources: bool, yes: bool) -> None:
    """Forget the lines learned for SOURCE (or for every source with --all)."""
    if source is not None and all_sources:
        fail("name one SOURCE or pass --all, not both", EXIT_USAGE)
    if source is None and not all_sources:
        fail("name one SOURCE or pass --all", EXIT_USAGE)
    which = "every source" if source is None else printable(source)
    confirm(yes, f"forget the boilerplate learned for {which}")
    with open_runtime(ctx) as (runtime, _):
        deleted = runtime.learner.reset(source)
    click.echo(f"forgot the boilerplate learned for {which} ({counted(deleted, 'key')})")
