"""What counts as Redis refusing work for a while (wait and retry) and what is a real error."""

from __future__ import annotations

import pytest
import redis
from kombu.exceptions import OperationalError
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError

from workers.ops.connection import outage_reason

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "full"),
        (ReadOnlyError("You can't write against a read only replica."), "read-only"),
        (BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379."), "unreachable"),
        (redis.TimeoutError("Timeout reading from socket"), "unreachable"),
        (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), "refusing"),
        # Redis before 7 wraps the error of a script's command in its own.
        (
            redis.ResponseError(
                "Error running script (call to f_eed3e5aa): @user_script:2: @user_script: 2: "
                "-OOM command not allowed when used memory > 'maxmemory'."
            ),
            "full",
        ),
        (
            redis.ResponseError(
                "Error running script (call to f_1): @user_script:9: -READONLY You can't write"
            ),
            "read-only",
        ),
    ],
)
def test_outages_are_recognised(error: Exception, reason: str) -> None:
    found = outage_reason(error)
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize(
    "text",
    [
        "MISCONF Errors writing to the AOF file: No space left on device",
        # As a script's command meets it (the broker's and the index's scripts).
        "MISCONF Errors writing to the AOF file: No space left on device script: on "
        "@user_script:2.",
    ],
)
def test_a_failed_aof_write_says_why(text: str) -> None:
    """The server's own words name the cause (a full disk), not a snapshot it never takes."""
    assert outage_reason(redis.ResponseError(text)) == (
        "refusing writes: it cannot write its AOF: No space left on device (MISCONF)"
    )


def _as_in_a_pipeline(error: redis.RedisError, command: tuple[str, ...]) -> redis.RedisError:
    """`error` as redis-py raises it from a pipeline: the command named before the reply."""
    redis.Redis().pipeline().annotate_exception(error, 1, command)  # connects nowhere
    return error


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            redis.ResponseError("MISCONF Errors writing to the AOF file: No space left on device"),
            "refusing writes: it cannot write its AOF: No space left on device (MISCONF)",
        ),
        (
            redis.ResponseError("BUSY Redis is busy running a script."),
            "busy running a script (BUSY)",
        ),
        (
            OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
            "full: used memory is over maxmemory (OOM)",
        ),
    ],
)
def test_an_outage_met_inside_a_pipeline_is_recognised(
    error: redis.RedisError, reason: str
) -> None:
    """A transaction that met MISCONF fails as redis-py's annotated error, with EXECABORT as
    its context: still an outage to wait out, not a fault of the batch to retry."""
    # A hostile argument may carry the annotation's own words: the code after the last one.
    command = ("SADD", "k", "x) of pipeline caused error: WRONGTYPE")
    assert outage_reason(_as_in_a_pipeline(error, command)) == reason


def test_a_real_error_inside_a_pipeline_is_no_outage() -> None:
    error = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    assert outage_reason(_as_in_a_pipeline(error, ("MISCONF", "OOM"))) is None


def test_kombu_wrapped_outage_is_recognised() -> None:
    try:
        try:
            raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
        except OutOfMemoryError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        assert outage_reason(wrapped) == "full: used memory is over maxmemory (OOM)"


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.ResponseError("Error running script (call to f_1): @user_script:3: bad argument"),
        redis.AuthenticationError("invalid username-password pair"),
        ValueError("not a Redis error"),
    ],
)
def test_real_errors_are_not_outages(error: Exception) -> None:
    assert outage_reason(error) is None
