"""What `newsdedup feeds` prints: each feed's status, readable in an 80-column terminal.

The table keeps one feed to two lines (its name, then its URL without the scheme, cut to
the column with "…"), so that its numbers stay on the lines of its name. Below a
terminal width where even that does not fit, each feed becomes a short block of
labelled lines instead. The last error of each failing feed is printed in full under
either. `--verbose` adds the columns left out (entries in the last poll, new entries in
the last poll and in all, source, interval, polls) and prints URLs whole: as a table on
a terminal wide enough for its columns, else as blocks with those lines added; `--json`
has every field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from workers.feeds.status import FeedStatus
from workers.messages import counted, printable

# Narrower than this, a table cannot give the feed's name and URL a useful width; the
# verbose table's five more columns need this much more.
TABLE_MIN_WIDTH = 72
VERBOSE_TABLE_MIN_WIDTH = 120

# The last poll's outcome, as short as it can be said.
_OUTCOME = {
    "not_modified": "304",
    "unchanged": "same",
    "failed": "failed",
    "locked": "locked",
    "never polled": "never",
}


def ago(stamp: float | None, now: float) -> str:
    """ "5s ago", "12m ago", "1.5h ago", "in 4m"; "never" for no time."""
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


def _outcome(status: FeedStatus) -> Text:
    """The last poll's outcome: its HTTP status and the new entries it found, or why it
    found none ("304", "same", "failed", "locked", "never")."""
    if status.last_outcome == "polled":
        return Text(f"{status.last_status}, {status.last_new} new")
    label = _OUTCOME.get(status.last_outcome, status.last_outcome)
    return Text(printable(label), style="red" if status.last_outcome == "failed" else "")


def _next_poll(status: FeedStatus, enabled: bool, now: float) -> str:
    if not status.configured:
        return "by hand"
    if not enabled:
        return "disabled"
    return ago(status.next_poll, now) if status.next_poll else "at beat\nstart"


def _errors(status: FeedStatus) -> str:
    if not status.failures_in_row:
        return str(status.failures)
    return f"{status.failures}\n{status.failures_in_row} in a row"


def _feed_cell(status: FeedStatus, verbose: bool) -> Text:
    """The feed's name over its URL; cut with "…" to the column, or whole and folded."""
    # Text, not markup: names, URLs and errors come from feeds ("[bold]" stays as it is).
    url = status.url if verbose else status.url.removeprefix("https://").removeprefix("http://")
    cell = Text(
        printable(status.name),
        style="bold",
        no_wrap=not verbose,
        overflow="fold" if verbose else "ellipsis",
    )
    cell.append("\n")
    cell.append(printable(url), style="dim")
    return cell


def _feeds_table(
    statuses: Sequence[FeedStatus], enabled: Mapping[str, bool], now: float, verbose: bool
) -> Table:
    # No vertical rules, one space between columns: the numbers need every column.
    table = Table(
        title="feeds",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    # Only the feed column gives way (its cell cuts itself with "…"); the others keep
    # their width, so that a feed stays on its two lines.
    table.add_column("feed", min_width=12)
    table.add_column("last poll", no_wrap=True)
    if verbose:
        table.add_column("entries", justify="right", no_wrap=True)
        table.add_column("new\nlast/all", justify="right", no_wrap=True)
    for header in ("pub-\nlished", "dups", "dead", "errors", "next\npoll"):
        table.add_column(header, justify="right", no_wrap=True)
    if verbose:
        table.add_column("source")
        table.add_column("every", justify="right", no_wrap=True)
        table.add_column("polls", justify="right", no_wrap=True)
    for s in statuses:
        last_poll = _outcome(s)
        if s.last_polled is not None:
            last_poll.append("\n" + ago(s.last_polled, now), style="dim")
        row: list[RenderableType] = [_feed_cell(s, verbose), last_poll]
        if verbose:
            row += [str(s.last_entries), f"{s.last_new}/{s.new_total}"]
        row += [
            str(s.published),
            str(s.exact + s.near),
            str(s.dead),
            _errors(s),
            _next_poll(s, enabled.get(s.name, True), now),
        ]
        if verbose:
            row += [Text(printable(s.source)), f"{s.interval}s", str(s.polls)]
        table.add_row(*row)
    return table


def _feed_blocks(
    statuses: Sequence[FeedStatus], enabled: Mapping[str, bool], now: float, verbose: bool
) -> Group:
    """One feed per block of short lines, for terminals too narrow for the table."""
    blocks: list[RenderableType] = [Text("feeds", style="italic")]
    for s in statuses:
        block = _feed_cell(s, verbose)
        block.append("\n  last poll: ")
        block.append(_outcome(s))
        if s.last_polled is not None:
            block.append(f", {ago(s.last_polled, now)}")
        block.append(f"\n  published {s.published}, dups {s.exact + s.near}, dead {s.dead}")
        errors = counted(s.failures, "error")
        if s.failures_in_row:
            errors += f" ({s.failures_in_row} in a row)"
        block.append(f"\n  {errors}")
        next_poll = _next_poll(s, enabled.get(s.name, True), now).replace("\n", " ")
        block.append(f"\n  next poll: {next_poll}")
        if verbose:
            block.append(f"\n  entries {s.last_entries}, new {s.last_new} last / {s.new_total} all")
            block.append("\n  source ")
            block.append(printable(s.source))
            block.append(f", every {s.interval}s, {counted(s.polls, 'poll')}")
        blocks.append(block)
    return Group(*blocks)


def _last_errors(statuses: Sequence[FeedStatus]) -> Text | None:
    failing = [s for s in statuses if s.last_error]
    if not failing:
        return None
    text = Text("last errors:", style="bold")
    for s in failing:
        text.append("\n")
        text.append(printable(s.name), style="bold")
        text.append(": ")
        text.append(printable(s.last_error), style="red")
    return text


def print_feeds(
    statuses: Sequence[FeedStatus],
    enabled: Mapping[str, bool],
    now: float,
    *,
    verbose: bool = False,
    console: Console | None = None,
) -> None:
    """Print the statuses as a table (or, on a narrow terminal, as blocks), then the last
    error of each failing feed."""
    console = console or Console()
    # The verbose table's columns need a wide terminal: on a narrower one the table would
    # squeeze the feed's own column out, so it gives way to the blocks too.
    narrow = console.width < (VERBOSE_TABLE_MIN_WIDTH if verbose else TABLE_MIN_WIDTH)
    if narrow:
        console.print(_feed_blocks(statuses, enabled, now, verbose))
    else:
        console.print(_feeds_table(statuses, enabled, now, verbose))
    errors = _last_errors(statuses)
    if errors is not None:
        console.print(errors)
