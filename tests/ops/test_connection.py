"""The data connection: waiting for a reply is no outage."""

from __future__ import annotations

import time

from conftest import RedisTarget

from workers.ops.connection import redis_from_url


def test_a_blocking_read_longer_than_five_seconds_returns_empty(
    redis_target: RedisTarget, prefix: str
) -> None:
    """`tail --follow` blocks 5 s at a time on the stream; redis-py 8 times reads out after
    5 s by default, which made an idle `tail --follow` fail as `Redis is unreachable`."""
    client = redis_from_url(redis_target.url)
    try:
        started = time.monotonic()
        assert client.xread({f"{prefix}docs": "$"}, block=6000, count=1) in ([], {})
        assert time.monotonic() - started >= 5.5
    finally:
        client.close()
