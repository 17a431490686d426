"""`newsdedup explain ID`: why an input was published, dropped as a duplicate, or dead."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from workers.cli.common import EXIT_USAGE, Context, fail, friendly_errors, open_runtime
from workers.messages import printable  # the standard library only

_STREAM_ID = re.compile(r"\d+(-\d+)?")


@click.command()
@click.argument("doc_id", metavar="ID")
@click.option(
    "--entry",
    "stream_id",
    metavar="STREAM_ID",
    help="Explain this entry of docs or duplicates (a stream id, e.g. 1712345678901-0) "
    "when ID is in several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a self-contained HTML page with the two texts side by side to FILE.",
)
@click.pass_obj
@friendly_errors
def explain(
    ctx: Context, doc_id: str, stream_id: str | None, as_json: bool, html_file: Path | None
) -> None:
    """Why input or document ID was published, updated, kept as a partial or dropped as
    a duplicate: the rule and its settings, the candidates weighed, the linked document
    and the passages the two texts share. For an input that was dead: its reason.

    ID is a published id or an input's own id; it is looked up in docs and duplicates,
    newest entry first, and when in neither, in dead (by id or input ref). Shared
    passages are marked in reverse video on a terminal, else as ⟦n ...⟧.
    """
    if stream_id is not None and not _STREAM_ID.fullmatch(stream_id):
        fail(f"--entry {stream_id!r} is not a stream id (such as 1712345678901-0)", EXIT_USAGE)
    from workers.explain.explanation import explain_entry, linked_ids
    from workers.explain.find import find_dead, find_entries, find_entry, find_published
    from workers.explain.render import (
        render_dead_json,
        render_dead_text,
        render_html,
        render_json,
        render_text,
    )

    dedup = ctx.settings.dedup.model_dump()
    with open_runtime(ctx) as (runtime, _):
        client, keys = runtime.client, runtime.keys
        if stream_id is None:
            found = find_entries(client, keys, doc_id)
        else:
            entry = find_entry(client, keys, stream_id)
            found = [entry] if entry is not None and doc_id in entry.ids else []
        # An input that never reached the index: the dead stream says why.
        dead = find_dead(client, keys, doc_id) if not found and stream_id is None else None
        if not found and dead is None:
            where = f" at entry {stream_id}" if stream_id else ""
            fail(f"no entry for {printable(doc_id)!r}{where} in docs, duplicates or dead")
        wanted = sorted({link for f in found for _, link in linked_ids(f)})
        published = find_published(client, keys, wanted)
    if dead is not None:
        click.echo(render_dead_json(doc_id, dead) if as_json else render_dead_text(dead))
        if html_file is not None:
            fail(f"{printable(doc_id)!r} is dead: it has no text to show, {html_file} not written")
        return
    explanations = [explain_entry(f, published, dedup) for f in found]
    if html_file is not None:
        try:
            html_file.write_text(render_html(doc_id, explanations), encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {html_file}: {exc.strerror or exc}")
    if as_json:
        click.echo(render_json(doc_id, explanations))
        return
    color = sys.stdout.isatty()
    click.echo("\n\n".join(render_text(e, color=color) for e in explanations))
    if html_file is not None:
        click.echo(f"\nwrote {html_file}", err=True)
