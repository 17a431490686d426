"""Reading the counters the Lua scripts keep, the streams and Redis itself, and showing them.

`collect_stats` reads everything in a few round trips; `newsdedup stats` shows it as
tables (or JSON) and `newsdedup metrics` (workers/ops/metrics.py) as Prometheus metrics.

Rates: the scripts that publish also count each document's outcome (MINUTE_KINDS:
published, exact, near, dead; "seen" is their sum) in a bucket per minute of the Redis
server's clock (`Keys.stats_minute`), so every worker on every machine adds to the same
buckets. The rate over the last N minutes is documents
per second over the last N x 60 seconds before the server time of the reading: the
current (partial) minute's bucket and the N - 1 before it count in full, and the bucket
N minutes back counts for the share of its minute still inside the window (its
documents assumed spread evenly over it). So a rate moves smoothly, is there from the
first document on (no waiting for a full minute), and 60 x the 1-minute rate is the
number of documents seen in the last 60 seconds, give or take the oldest bucket's share.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from workers.index.args import ProbeArgs
from workers.index.keys import (
    MINUTE_KINDS,
    RATE_KINDS,
    STREAM_NAMES,
    Keys,
)
from workers.index.scripts import PROBE_WRITE
from workers.messages import counted, printable
from workers.ops.connection import (
    as_text,
    evicting_reason,
    is_outage,
    no_waiting,
    outage_reason,
    server_eviction_risk,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from workers.feeds.spec import FeedSpec

# "updates" and "partials" are published documents too: those linked to another
# (update_of; partial_of / contains).
COUNTERS = (
    "seen",
    "published",
    "exact",
    "near",
    "dead",
    "updates",
    "partials",
    "stripped_lines",
    "bytes_in",
)
RATE_WINDOWS = (1, 5, 15)  # minutes
# Redis < 7 reports no consumer-group lag: it is counted from the entries after the
# group's last delivered one, up to this many (beyond that it is unknown: None).
LAG_SCAN_LIMIT = 100


def _counters(raw: dict[Any, Any]) -> dict[str, int]:
    values = {as_text(k): int(v) for k, v in raw.items()}
    return {name: values.get(name, 0) for name in COUNTERS}


def window_rates(
    buckets: Mapping[int, Mapping[str, int]], now: float, minutes: int
) -> dict[str, float]:
    """Documents per second of each RATE_KINDS over the `minutes` x 60 seconds before
    `now` (unix seconds), from per-minute outcome counts keyed by unix minute (see the
    module docstring: the oldest bucket counts for its share still inside the window)."""
    current = int(now // 60)
    inside = 1.0 - (now - current * 60) / 60  # share of the oldest bucket's minute
    totals = dict.fromkeys(RATE_KINDS, 0.0)
    for minute in range(current - minutes, current + 1):
        weight = inside if minute == current - minutes else 1.0
        counts = buckets.get(minute, {})
        for kind in MINUTE_KINDS:
            totals[kind] += weight * counts.get(kind, 0)
    totals["seen"] = sum(totals[kind] for kind in MINUTE_KINDS)
    return {kind: total / (minutes * 60) for kind, total in totals.items()}


def _stream_id(value: Any) -> tuple[int, int]:
    milliseconds, _, sequence = as_text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def _known_lag(group: Mapping[str, Any], info: Mapping[str, Any] | None) -> int | None:
    """The group's lag when Redis reports it (7+) or it follows from XINFO STREAM."""
    if group.get("lag") is not None:
        return int(group["lag"])
    if info is None or not info.get("length"):
        return 0  # no stream or no entries: nothing left to read
    delivered = _stream_id(group.get("last-delivered-id") or "0-0")
    if delivered >= _stream_id(info["last-generated-id"]):
        return 0
    first = info.get("first-entry")
    if first and delivered < _stream_id(first[0]):
        return int(info["length"])  # everything still in the stream comes after it
    return None


def _stream_details(
    client: redis.Redis, keys: Keys, infos: list[Any], groups: list[Any]
) -> dict[str, list[dict[str, Any]]]:
    """Each stream's consumer groups: name, consumers, pending, last delivered id, lag."""
    result: dict[str, list[dict[str, Any]]] = {}
    unknown: list[tuple[str, dict[str, Any]]] = []
    for name, info, reply in zip(STREAM_NAMES, infos, groups, strict=True):
        info = None if isinstance(info, Exception) else info
        rows = []
        for group in [] if isinstance(reply, Exception) else reply:
            row = {
                "name": as_text(group["name"]),
                "consumers": int(group["consumers"]),
                "pending": int(group["pending"]),
                "last_delivered_id": as_text(group.get("last-delivered-id") or "0-0"),
                "lag": _known_lag(group, info),
            }
            if row["lag"] is None:
                unknown.append((name, row))
            rows.append(row)
        result[name] = rows
    if unknown:
        pipe = client.pipeline(transaction=False)
        for name, row in unknown:
            start = "(" + str(row["last_delivered_id"])
            pipe.xrange(keys.stream(name), min=start, max="+", count=LAG_SCAN_LIMIT + 1)
        for (_, row), entries in zip(unknown, pipe.execute(raise_on_error=False), strict=True):
            if not isinstance(entries, Exception) and len(entries) <= LAG_SCAN_LIMIT:
                row["lag"] = len(entries)
    return result


def _feeds_summary(client: redis.Redis, keys: Keys, feeds: Sequence[FeedSpec]) -> dict[str, int]:
    from workers.feeds.status import feed_statuses

    statuses = feed_statuses(client, keys, list(feeds))
    return {
        "total": len(statuses),
        "polled": sum(1 for s in statuses if s.last_polled is not None),
        "failing": sum(1 for s in statuses if s.failures_in_row > 0),
    }


# The probe's size: about a worker's chunk of script calls (scripts/probe_write.lua).
PROBE_PADDING = 256 * 1024


def write_refusal(client: redis.Redis, keys: Keys) -> str | None:
    """Why Redis refuses writes right now (full, read-only, loading, away, ...), or the
    workers do (it would delete keys when full), in one line with what to do; None when
    it takes them. Found out by writing (scripts/probe_write.lua: as
    large as a worker's writes, stored small and briefly), so every cause the workers would
    meet is seen, whatever the server's configuration."""
    try:
        with no_waiting(client):
            if (risk := server_eviction_risk(client)) is not None:
                evicts = evicting_reason(risk)  # the workers wait: worker/tasks.py
                return f"Redis is {evicts}; the workers hold their batches until then"
            PROBE_WRITE(client, [keys.write_probe], ProbeArgs(bytes(PROBE_PADDING)))
        return None
    except Exception as exc:
        reason = outage_reason(exc)
        if reason is None:
            raise
    advice = "the workers hold their batches and go on by themselves once it takes writes"
    if reason.startswith("full"):
        try:
            with no_waiting(client):
                memory: Any = client.info("memory")
            reason = (
                f"full ({memory.get('used_memory_human')} used of maxmemory "
                f"{memory.get('maxmemory_human')}, policy {memory.get('maxmemory_policy')})"
            )
            advice = "raise maxmemory or free memory (docs/operations.md, Memory); " + advice
        except Exception as exc:
            if not is_outage(exc):
                raise
    return f"Redis is {reason}: {advice}"


def collect_stats(
    client: redis.Redis, keys: Keys, feeds: Sequence[FeedSpec] = ()
) -> dict[str, Any]:
    """Counters overall and per source, rates, streams and their consumer groups, the
    index, Redis memory and the feeds (the configured `feeds` and any polled by hand)."""
    first = client.pipeline(transaction=False)
    first.time()
    first.smembers(keys.sources)
    seconds, members = first.execute()
    now = seconds[0] + seconds[1] / 1e6
    current = int(now // 60)
    minutes = range(current - max(RATE_WINDOWS), current + 1)
    sources = sorted(as_text(s) for s in members)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.stats)
    pipe.hgetall(keys.dead_reasons)
    pipe.get(keys.index_count)
    pipe.hgetall(keys.index_meta)
    for name in STREAM_NAMES:
        pipe.xlen(keys.stream(name))
    for source in sources:
        pipe.hgetall(keys.source_stats(source))
    for minute in minutes:
        pipe.hgetall(keys.stats_minute(minute))
    pipe.info("memory")
    pipe.info("server")
    for name in STREAM_NAMES:
        pipe.xinfo_stream(keys.stream(name))
        pipe.xinfo_groups(keys.stream(name))
    replies: list[Any] = pipe.execute(raise_on_error=False)
    for reply in replies[: -2 * len(STREAM_NAMES)]:
        if isinstance(reply, Exception):  # XINFO on a missing stream is the only expected one
            raise reply
    overall, reasons, indexed, meta = replies[:4]
    at = 4
    lengths = replies[at : at + len(STREAM_NAMES)]
    at += len(STREAM_NAMES)
    per_source = replies[at : at + len(sources)]
    at += len(sources)
    buckets = {
        minute: {as_text(k): int(v) for k, v in raw.items()}
        for minute, raw in zip(minutes, replies[at : at + len(minutes)], strict=True)
    }
    at += len(minutes)
    memory, server = replies[at], replies[at + 1]
    stream_replies = replies[at + 2 :]
    totals = _counters(overall)
    return {
        **totals,
        "duplicates": totals["exact"] + totals["near"],
        "dead_reasons": {as_text(k): int(v) for k, v in reasons.items()},
        "streams": dict(zip(STREAM_NAMES, (int(n) for n in lengths), strict=True)),
        "index": {
            "documents": int(indexed or 0),
            "params": {as_text(k): as_text(v) for k, v in meta.items()},
        },
        "sources": {
            source: _counters(raw) for source, raw in zip(sources, per_source, strict=True)
        },
        "time": round(now, 3),
        "rates": {
            f"{window}m": {
                kind: round(rate, 4) for kind, rate in window_rates(buckets, now, window).items()
            }
            for window in RATE_WINDOWS
        },
        "consumer_groups": _stream_details(
            client, keys, stream_replies[0::2], stream_replies[1::2]
        ),
        "redis": {
            "version": str(server.get("redis_version", "")),
            "used_memory": int(memory.get("used_memory", 0)),
            "used_memory_human": str(memory.get("used_memory_human", "")),
            "maxmemory": int(memory.get("maxmemory", 0)),
            "maxmemory_human": str(memory.get("maxmemory_human", "")),
            "maxmemory_policy": str(memory.get("maxmemory_policy", "")),
        },
        "feeds": _feeds_summary(client, keys, feeds),
        "blocked": write_refusal(client, keys),
    }


# --------------------------------------------------------------------------- showing


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def _cell(name: str, value: int) -> str:
    return _human_bytes(value) if name == "bytes_in" else str(value)


def _rate(per_second: float) -> str:
    if per_second == 0:
        return "0"
    return f"{per_second:.2g}" if per_second < 1 else f"{per_second:,.1f}"


def stats_renderable(data: dict[str, Any]) -> RenderableType:
    """Everything `collect_stats` read, as rich tables."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    counts = Table(title="documents by source", title_justify="left")
    counts.add_column("source")
    for name in COUNTERS:
        counts.add_column(name.replace("_", " "), justify="right")
    for source, values in data["sources"].items():
        # Text, not a str: a name is not rich markup ("[bold]" or "[/]" stay as they are).
        label = Text(printable(source), overflow="fold")
        counts.add_row(label, *(_cell(n, values[n]) for n in COUNTERS))
    counts.add_row("[bold]all", *(f"[bold]{_cell(n, data[n])}" for n in COUNTERS), end_section=True)

    rates = Table(title="documents per second", title_justify="left")
    rates.add_column("last")
    for kind in RATE_KINDS:
        rates.add_column(kind, justify="right")
    for window, values in data["rates"].items():
        rates.add_row(window.replace("m", " min"), *(_rate(values[k]) for k in RATE_KINDS))

    streams = Table(title="streams", title_justify="left")
    for name, justify in (
        ("stream", "left"),
        ("length", "right"),
        ("group", "left"),
        ("consumers", "right"),
        ("pending", "right"),
        ("lag", "right"),
    ):
        streams.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, length in data["streams"].items():
        groups = data["consumer_groups"].get(name, [])
        if not groups:
            streams.add_row(name, str(length), "[dim]no group", "", "", "")
        for i, group in enumerate(groups):
            lag = group["lag"]
            streams.add_row(
                name if i == 0 else "",
                str(length) if i == 0 else "",
                group["name"],
                str(group["consumers"]),
                str(group["pending"]),
                "[yellow]unknown" if lag is None else str(lag),
            )

    parts: list[RenderableType] = [counts, rates, streams]
    if data["dead_reasons"]:
        dead = Table(title="dead by reason", title_justify="left")
        dead.add_column("reason")
        dead.add_column("documents", justify="right")
        for reason, n in sorted(data["dead_reasons"].items(), key=lambda item: -item[1]):
            dead.add_row(Text(printable(reason)), str(n))
        parts.append(dead)
    mem = data["redis"]
    maxmemory = mem["maxmemory_human"] if mem["maxmemory"] else "no limit"
    lines = [
        f"index: {counted(data['index']['documents'], 'document')}",
        f"redis {mem['version']}: {mem['used_memory_human']} used, maxmemory {maxmemory}, "
        f"policy {mem['maxmemory_policy']}",
    ]
    feeds = data["feeds"]
    if feeds["total"]:
        lines.append(
            f"feeds: {feeds['total']} ({feeds['polled']} polled, {feeds['failing']} failing)"
        )
    if data.get("blocked"):
        lines.append(f"[bold red]blocked: {escape(data['blocked'])}")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["time"]))
    lines.append(f"[dim]at {stamp}")
    parts.append(Text.from_markup("\n".join(lines)))
    return Group(*parts)


def render_stats(data: dict[str, Any]) -> None:
    from rich.console import Console

    Console().print(stats_renderable(data))
