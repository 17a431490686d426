"""Reading the output streams: plain (XRANGE/XREAD) or through a consumer group.

Replies are normalised to `(entry_id, {field: value})` with str keys and values, so
callers (the CLI, tests, consumers) never deal with redis-py's bytes/str unions; what the
fields mean and their types are in workers/records.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from workers.ops.connection import as_text
from workers.records import read_entry

Entry = tuple[str, dict[str, str]]


def _entries(raw: Any) -> list[Entry]:
    return [
        (as_text(entry_id), {as_text(k): as_text(v) for k, v in (fields or {}).items()})
        for entry_id, fields in raw or []
    ]


def iter_range(
    client: redis.Redis, key: str, *, limit: int | None, page: int = 500, start: str = "-"
) -> Iterator[Entry]:
    """Entries from the oldest on (from entry id `start` on, when given), paged so a
    million-entry stream is never one reply."""
    served = 0
    while limit is None or served < limit:
        size = page if limit is None else min(page, limit - served)
        batch = _entries(client.xrange(key, min=start, max="+", count=size))
        if not batch:
            return
        for entry in batch:
            yield entry
            served += 1
        start = "(" + batch[-1][0]  # exclusive range start
        if len(batch) < size:
            return


def last_entries(client: redis.Redis, key: str, count: int) -> list[Entry]:
    return list(reversed(_entries(client.xrevrange(key, count=count))))


def read_after(
    client: redis.Redis, key: str, last_id: str, *, block_ms: int, count: int
) -> list[Entry]:
    reply: Any = client.xread({key: last_id}, block=block_ms, count=count)
    return [entry for _, entries in reply or [] for entry in _entries(entries)]


def ensure_group(client: redis.Redis, key: str, group: str, *, new_only: bool = False) -> bool:
    """Create consumer group `group` on `key` unless it exists; True if it was created.
    A new group reads the whole stream (it is how a new consumer catches up) or, with
    `new_only`, only entries added after now. An existing group goes on where it is."""
    try:
        client.xgroup_create(key, group, id="$" if new_only else "0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


def read_group(
    client: redis.Redis,
    key: str,
    group: str,
    consumer: str,
    *,
    count: int,
    block_ms: int | None,
    after: str = ">",
) -> list[Entry]:
    """Entries through consumer group `group`: with `after` ">", entries the group has not
    delivered yet; with an entry id ("0": from the oldest), `consumer`'s own pending
    entries after it (delivered to it, not acknowledged). A pending entry trimmed from the
    stream since comes with no fields."""
    reply: Any = client.xreadgroup(group, consumer, {key: after}, count=count, block=block_ms)
    return [entry for _, entries in reply or [] for entry in _entries(entries)]


def ack(client: redis.Redis, key: str, group: str, entry_id: str) -> None:
    client.xack(key, group, entry_id)


def as_record(stream: str, entry: Entry) -> dict[str, Any]:
    """An entry of `stream` as a JSON-ready dict: its stream id, then its fields in their
    order, typed as its record says (numbers, lists); a field the record does not know
    (an entry written by another version) as it is."""
    entry_id, fields = entry
    typed = read_entry(stream, fields).to_json()
    return {
        "stream_id": entry_id,
        **{name: typed.get(name, value) for name, value in fields.items()},
    }


def iter_newest_first(client: redis.Redis, key: str, *, page: int = 200) -> Iterator[Entry]:
    """Entries from the newest back (XREVRANGE in pages): a caller looking for one entry
    stops reading at the first match, however long the stream."""
    end = "+"
    while True:
        batch = _entries(client.xrevrange(key, max=end, min="-", count=page))
        yield from batch
        if len(batch) < page:
            return
        end = "(" + batch[-1][0]  # exclusive range end


def entry_by_id(client: redis.Redis, key: str, entry_id: str) -> Entry | None:
    """The entry of stream id `entry_id`, or None."""
    found = _entries(client.xrange(key, min=entry_id, max=entry_id, count=1))
    return found[0] if found else None
