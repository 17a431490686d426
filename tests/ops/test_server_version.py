"""The oldest server newsdedup supports is named, and an older one refused in one line."""

from __future__ import annotations

import pytest
from conftest import RedisTarget

from workers.ops.connection import OLDEST_SERVER, ping, too_old


@pytest.mark.unit
@pytest.mark.parametrize(
    ("version", "refused"),
    [("6.2.14", True), ("6.0.9", True), ("7.0.15", False), ("7.2.4", False), ("8.2.1", False)],
)
def test_versions_older_than_the_oldest_supported_are_named(version: str, refused: bool) -> None:
    assert OLDEST_SERVER == (7, 0)
    assert too_old({"redis_version": version}) == (version if refused else None)


@pytest.mark.unit
def test_a_server_that_names_no_version_is_not_refused() -> None:
    assert too_old({}) is None


def test_the_test_server_is_supported(redis_target: RedisTarget) -> None:
    ping(redis_target.client, redis_target.url)  # raises RedisUnavailable if too old
    assert too_old(redis_target.client.info("server")) is None
