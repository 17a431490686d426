"""Finding entries by document id: the only part of `explain` that reads Redis."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from workers.index.keys import Keys
from workers.ops import streams
from workers.records import DeadRecord, DocRecord, DuplicateRecord

# The streams an input can end in with a text to explain, in the order searched.
SEARCHED = ("docs", "duplicates")


@dataclass(frozen=True, slots=True)
class Found:
    """An entry of `docs` or `duplicates`, typed."""

    stream: str
    stream_id: str
    record: DocRecord | DuplicateRecord

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids it is found by: its id, and the input's own id when it was changed."""
        input_id = getattr(self.record, "input_id", None)
        return (self.record.id, input_id) if input_id else (self.record.id,)


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _typed(stream: str, entry: streams.Entry) -> Found:
    kind = DocRecord if stream == "docs" else DuplicateRecord
    return Found(stream, entry[0], kind.from_fields(entry[1]))


def find_entries(client: redis.Redis, keys: Keys, wanted: str, *, page: int = 200) -> list[Found]:
    """The newest entry of `docs` published as `wanted` (with the newer ones that came in
    as input `wanted` and were published under a suffixed id) and the newest entry of
    `duplicates` for input `wanted`; newest first. Each stream is read from its newest
    entry back and no further than its first match."""
    found: list[Found] = []
    for entry in streams.iter_newest_first(client, keys.stream("docs"), page=page):
        fields = entry[1]
        if fields.get("id") == wanted:
            found.append(_typed("docs", entry))
            break
        if fields.get("input_id") == wanted:
            found.append(_typed("docs", entry))
    for entry in streams.iter_newest_first(client, keys.stream("duplicates"), page=page):
        if entry[1].get("id") == wanted:
            found.append(_typed("duplicates", entry))
            break
    return sorted(found, key=lambda f: _order(f.stream_id), reverse=True)


def find_entry(client: redis.Redis, keys: Keys, stream_id: str) -> Found | None:
    """The entry of stream id `stream_id` in `docs` or `duplicates`, or None."""
    for stream in SEARCHED:
        entry = streams.entry_by_id(client, keys.stream(stream), stream_id)
        if entry is not None:
            return _typed(stream, entry)
    return None


def find_published(
    client: redis.Redis, keys: Keys, published_ids: list[str], *, page: int = 200
) -> dict[str, Found]:
    """The newest `docs` entry of each published id, in one pass from the newest entry
    back that stops when all are found (an id missing from the map has left the stream)."""
    missing = set(published_ids)
    found: dict[str, Found] = {}
    if not missing:
        return found
    for entry in streams.iter_newest_first(client, keys.stream("docs"), page=page):
        doc_id = entry[1].get("id", "")
        if doc_id in missing:
            found[doc_id] = _typed("docs", entry)
            missing.discard(doc_id)
            if not missing:
                break
    return found


@dataclass(frozen=True, slots=True)
class FoundDead:
    """An entry of `dead`: an input that was not processed, typed."""

    stream_id: str
    record: DeadRecord


def find_dead(client: redis.Redis, keys: Keys, wanted: str, *, page: int = 200) -> FoundDead | None:
    """The newest entry of `dead` for input id or input_ref `wanted`, or None. Read from
    its newest entry back, no further than the first match."""
    for stream_id, fields in streams.iter_newest_first(client, keys.stream("dead"), page=page):
        if wanted in (fields.get("id"), fields.get("input_ref")):
            return FoundDead(stream_id, DeadRecord.from_fields(fields))
    return None
