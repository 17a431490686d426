"""Key names and script arguments, without a server: every key newsdedup names is its own
and no neighbour's, source names never reach another key, fact operations are packed as
the Redis protocol would."""

from __future__ import annotations

import hiredis
import numpy as np
import pytest

from workers.index.encoding import FactOperation, fact_operation, packed_fact_operations
from workers.index.keys import Keys

pytestmark = pytest.mark.unit


def test_owns_every_key_newsdedup_names_and_no_neighbours() -> None:
    import uuid

    from workers.feeds.status import feed_job, feed_key
    from workers.worker.app import FETCH_QUEUE, INGEST_QUEUE
    from workers.worker.jobs import new_job_id
    from workers.worker.presence import worker_tag

    keys = Keys("nd:")
    feed = feed_key("https://example.org/feed")
    names = [
        *(keys.stream(name) for name in ("docs", "duplicates", "dead")),
        keys.stats, keys.dead_reasons, keys.sources, keys.stats_minute(29000000),
        keys.index_meta, keys.index_count, keys.learner_sources, keys.jobs, keys.feeds,
        keys.beat_lock, keys.host_gate("example.org:443"), keys.poll(str(uuid.uuid4())),
        keys.workers, keys.worker(worker_tag("celery@host")),
        keys.feed(feed), keys.feed_lock(feed), keys.feed_tries(feed),
        *(f(job) for job in (new_job_id(), feed_job(feed)) for f in (
            keys.job, keys.job_done, keys.job_tasks, keys.job_attempts, keys.job_cursor
        )),
        *(key for name in ("sources", "x:c", "*", "\n") for key in (
            keys.source_stats(name), keys.learner_meta(name), keys.learner_lines(name),
            *keys.learner_count_shards(name),
        )),
        f"nd:{INGEST_QUEUE}", f"nd:{FETCH_QUEUE}\x06\x163", "nd:_kombu.binding.ingest",
        "nd:unacked", "nd:ix:l:4095", "nd:ix:df:3", "nd:stats:source:old", "nd:bp:old:c",
        "nd:src:" + "0" * 32 + ":bp:c",
    ]  # fmt: skip
    assert [name for name in names if not keys.owns(name)] == []
    for name in names:
        assert not Keys("nd:b:").owns(name) and not Keys("n").owns(name)
    assert not keys.owns("nd:b:docs") and not keys.owns("nd:ix:docs")
    assert not keys.owns("nd:job:feed-x") and not keys.owns("nd:src:names:docs")


def test_source_names_never_reach_another_key() -> None:
    keys = Keys("nd:")
    names = ["sources", "names", "x", "x:c", "a:b", "a:b:l", "*", "..", "", "\u200b", "a\nb"]
    per_source = [
        (keys.source_stats(n), *keys.learner_keys(n), *keys.learner_count_shards(n)) for n in names
    ]
    flat = [key for group in per_source for key in group]
    fixed = {keys.sources, keys.learner_sources, keys.stats, keys.dead_reasons}
    assert len(set(flat)) == len(flat) and not fixed & set(flat)
    # Fixed length, whatever the name's.
    assert {len(group[0]) for group in per_source} == {len("nd:src::stats") + 32}


@pytest.mark.parametrize("operation", ["INCRBY", "GET"])
def test_fact_operations_are_packed_as_redis_protocol_arguments(
    operation: FactOperation,
) -> None:
    cells = np.array([0, 9, 10, 99, 100, 12345, 2**21 - 1, 2**24 - 1], dtype=np.uint32)
    packed, lengths = packed_fact_operations(cells, operation)
    one_by_one = [
        hiredis.pack_command(fact_operation(int(cell), operation)).split(b"\r\n", 1)[1]
        for cell in cells
    ]
    assert packed == b"".join(one_by_one)
    assert lengths.tolist() == [len(op) for op in one_by_one]
