"""Finding an input's entries: newest first, by published id or input id, in both
streams, reading each stream back only as far as its first match."""

from __future__ import annotations

import redis
from conftest import RedisTarget
from support.explain_cases import add_cases

from workers.explain.find import find_entries, find_entry, find_published
from workers.index.keys import Keys


def _keys(prefix: str) -> Keys:
    return Keys(prefix)


def test_an_id_in_both_streams_and_under_a_suffix_newest_first(
    redis_target: RedisTarget, prefix: str
) -> None:
    client = redis.Redis.from_url(redis_target.url, decode_responses=True)
    added = add_cases(client, prefix)
    keys = _keys(prefix)
    # The update was published as hospital~2 (input id hospital), after hospital itself.
    found = find_entries(client, keys, "hospital", page=2)
    assert [(f.stream, f.record.id) for f in found] == [
        ("docs", "hospital~2"),
        ("docs", "hospital"),
    ]
    # A re-fetch of a published input lands in duplicates under the same id.
    client.xadd(f"{prefix}duplicates", {**client.xrange(f"{prefix}docs", count=1)[0][1],
                                        "duplicate_of": "hospital", "kind": "exact"})  # fmt: skip
    found = find_entries(client, keys, "hospital", page=2)
    assert [f.stream for f in found] == ["duplicates", "docs", "docs"]
    assert find_entries(client, keys, "nope", page=3) == []
    entry = find_entry(client, keys, added["oil"])
    assert entry is not None and entry.record.id == "oil" and entry.stream == "docs"
    assert find_entry(client, keys, "1-0") is None
    published = find_published(client, keys, ["roundup", "match-1", "gone"], page=2)
    assert sorted(published) == ["match-1", "roundup"]
    assert published["roundup"].stream_id == added["roundup"]


def test_the_search_stops_at_the_first_match(redis_target: RedisTarget, prefix: str) -> None:
    client = redis.Redis.from_url(redis_target.url, decode_responses=True)
    for n in range(50):  # older than every case: never read
        client.xadd(f"{prefix}docs", {"id": f"old-{n}", "text": "x"})
    add_cases(client, prefix)
    calls: list[str] = []
    real = client.xrevrange

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(str(args[0]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    client.xrevrange = counted  # type: ignore[method-assign]
    find_entries(client, _keys(prefix), "hostile", page=1)
    # The newest docs entry is hostile: one page of one entry read, not the 57 behind it.
    assert calls.count(f"{prefix}docs") == 1
    calls.clear()
    find_entries(client, _keys(prefix), "roundup", page=2)
    assert calls.count(f"{prefix}docs") == 3  # roundup is the 6th newest
