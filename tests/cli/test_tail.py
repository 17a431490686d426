"""`newsdedup tail` through a consumer group, as a consumer pipeline runs it: nothing it
read is lost when it is cut off before acknowledging, and a following tail outlives Redis
going away.

Each test runs the real CLI against a redis-server of its own, with entries XADDed as the
index writes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import redis
from conftest import ROOT, cli_env, run_cli, start_cli
from support import faults
from support.explain_cases import ORIGINAL, doc

from workers.index.keys import Keys
from workers.records import Decision

PREFIX = "tail:"
GROUP = ["--group", "g", "--consumer", "c1", "--json"]


def _add_docs(client: redis.Redis, ids: list[str]) -> list[str]:
    """XADD a published document for each id; their stream ids."""
    stream = Keys(PREFIX).stream("docs")
    added = []
    for doc_id in ids:
        record = doc(doc_id, ORIGINAL, reason=Decision("new"))
        added.append(client.xadd(stream, record.to_fields()).decode())  # type: ignore[union-attr]
    return added


def _printed_ids(text: str) -> list[str]:
    return [json.loads(line)["id"] for line in text.splitlines() if line.startswith("{")]


def _pending(client: redis.Redis) -> int:
    summary = client.xpending(Keys(PREFIX).stream("docs"), "g")
    return int(summary["pending"])


@faults.needs_redis_server
def test_a_reader_cut_off_mid_batch_gets_the_rest_next_time(
    private_redis: faults.PrivateRedis,
) -> None:
    """A consumer that stops reading after one line (`| head -1`, a crashed script): the
    entries tail had taken but not printed are the next run's first."""
    client = redis.Redis.from_url(private_redis.url)
    ids = [f"doc-{n}" for n in range(6)]
    _add_docs(client, ids)
    env = cli_env(redis_url=private_redis.url, prefix=PREFIX)
    reader = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "tail", *GROUP],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    assert reader.stdout is not None
    first = _printed_ids(reader.stdout.readline().decode())
    reader.stdout.close()  # as `head -1` does
    reader.wait(timeout=60)
    assert first == ["doc-0"]
    # It took the whole batch from the group and acknowledged only what it printed.
    assert _pending(client) >= 4

    rest = run_cli(["tail", *GROUP], env, timeout=60)
    assert rest.returncode == 0, rest.stderr
    again = _printed_ids(rest.stdout)
    assert set(first) | set(again) == set(ids)
    assert _pending(client) == 0
    # Printed once each, except one a closed pipe may have cut off mid-write.
    assert len(again) <= len(ids) - len(first) + 1
    client.close()


@faults.needs_redis_server
def test_a_pending_entry_trimmed_since_is_named_and_acknowledged(
    private_redis: faults.PrivateRedis,
) -> None:
    client = redis.Redis.from_url(private_redis.url)
    stream = Keys(PREFIX).stream("docs")
    added = _add_docs(client, ["a", "b", "c"])
    client.xgroup_create(stream, "g", id="0")
    client.xreadgroup("g", "c1", {stream: ">"}, count=3)  # read, then cut off
    client.xdel(stream, added[1])  # trimmed before it was acknowledged
    result = run_cli(["tail", *GROUP], cli_env(redis_url=private_redis.url, prefix=PREFIX))
    assert result.returncode == 0, result.stderr
    assert _printed_ids(result.stdout) == ["a", "c"]
    assert result.stderr == (
        f"entry {added[1]} was trimmed from the stream before c1 acknowledged it\n"
    )
    assert _pending(client) == 0
    client.close()


def _wait_for(condition: object, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@faults.needs_redis_server
def test_a_following_group_reader_waits_out_redis_going_away(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    """Redis stops for longer than a command's retry window (about 10 s) and comes back:
    the follower says so on stderr, then prints what was added meanwhile, each once."""
    client = redis.Redis.from_url(private_redis.url)
    _add_docs(client, ["before"])
    log = tmp_path / "tail.log"
    env = cli_env(redis_url=private_redis.url, prefix=PREFIX)
    follower = start_cli(["tail", *GROUP, "--follow"], env, log)
    try:
        _wait_for(lambda: _printed_ids(log.read_text()) == ["before"], "the first entry")
        private_redis.stop()  # SIGTERM: the AOF keeps the group and its position
        _wait_for(lambda: "tail: Redis is unreachable" in log.read_text(), "the outage line")
        time.sleep(12)  # past the retry window
        assert follower.poll() is None, log.read_text()
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        _add_docs(client, ["after-1", "after-2"])
        _wait_for(
            lambda: _printed_ids(log.read_text()) == ["before", "after-1", "after-2"],
            "the entries added after the outage",
        )
        assert "tail: Redis answers again: following on" in log.read_text()
        assert follower.poll() is None
        assert _pending(client) == 0
        assert "Traceback" not in log.read_text()
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        client.close()


@faults.needs_redis_server
def test_sigterm_ends_a_following_command_as_ctrl_c_does(
    tmp_path: Path, private_redis: faults.PrivateRedis
) -> None:
    """`tail --follow` and `job --wait` stopped by a supervisor or `timeout`: one line and
    exit status 130, as for Ctrl-C (not a silent 143)."""
    env = cli_env(redis_url=private_redis.url, prefix=PREFIX)
    queued = run_cli(["backfill", str(ROOT / "seeds")], env, timeout=60)  # no worker runs it
    assert queued.returncode == 0, queued.stderr
    for args in (["tail", "--follow"], ["job", "--wait"]):
        log = tmp_path / f"{args[0]}.log"
        process = start_cli(args, env, log)
        time.sleep(3)  # following by now
        assert process.poll() is None, log.read_text()
        process.terminate()
        assert process.wait(timeout=30) == 130, log.read_text()
        assert log.read_text().endswith("newsdedup: error: interrupted\n"), log.read_text()
