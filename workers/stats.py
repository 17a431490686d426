"""Reading the counters the Lua scripts keep, and showing them."""

from __future__ import annotations

from typing import Any

import redis

from workers.connection import as_text
from workers.keyspace import STREAM_NAMES, Keys

COUNTERS = ("seen", "published", "exact", "near", "dead", "stripped_lines", "bytes_in")


def _counters(raw: dict[Any, Any]) -> dict[str, int]:
    values = {as_text(k): int(v) for k, v in raw.items()}
    return {name: values.get(name, 0) for name in COUNTERS}


def collect_stats(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    members: Any = client.smembers(keys.sources)
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
    replies: list[Any] = pipe.execute()
    overall, reasons, indexed, meta = replies[:4]
    lengths = replies[4 : 4 + len(STREAM_NAMES)]
    per_source = replies[4 + len(STREAM_NAMES) :]
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
    }


def render_stats(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="newsdedup", show_lines=False)
    table.add_column("source")
    for name in ("seen", "published", "exact", "near", "dead", "stripped_lines"):
        table.add_column(name.replace("_", " "), justify="right")
    for source, counts in data["sources"].items():
        table.add_row(
            source,
            *(
                str(counts[n])
                for n in ("seen", "published", "exact", "near", "dead", "stripped_lines")
            ),
        )
    table.add_row(
        "[bold]all",
        *(
            f"[bold]{data[n]}"
            for n in ("seen", "published", "exact", "near", "dead", "stripped_lines")
        ),
    )
    console.print(table)
    streams = ", ".join(f"{name} {length}" for name, length in data["streams"].items())
    console.print(f"streams: {streams}")
    console.print(f"index: {data['index']['documents']} documents")
    if data["dead_reasons"]:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(data["dead_reasons"].items()))
        console.print(f"dead by reason: {reasons}")
