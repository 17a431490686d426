"""`newsdedup beat`: exactly one per Redis and prefix. A second one refuses in one line,
before Celery prints its banner; once the first stops, a beat starts again at once.

Real beats, each `python -m workers.cli beat` in its own process, on the embedded Redis of
one temporary data folder (the README's default setup).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from conftest import cli_env, run_cli, start_cli
from support import faults

from workers.feeds.schedule import BEAT_LOCK_SECONDS
from workers.index.keys import Keys
from workers.worker.app import FETCH_QUEUE
from workers.worker.broker import queue_keys


@contextmanager
def running_beat(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A beat that has taken the lock and built its schedule; stopped (SIGTERM) after."""
    beat = start_cli(["beat", "--loglevel", "INFO"], env, log)
    try:
        deadline = time.monotonic() + 60
        while "beat: polling" not in log.read_text(errors="replace"):
            assert beat.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        yield beat
    finally:
        beat.terminate()
        beat.wait(timeout=60)


def test_second_beat_refuses_in_one_line_before_the_banner(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds.toml"
    feeds.write_text("", encoding="utf-8")  # no feeds: the beat polls nothing
    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_FEEDS__CONFIG=str(feeds))

    with running_beat(env, tmp_path / "first.log"):
        second = run_cli(["beat"], env, timeout=60)
        assert second.returncode == 1
        assert second.stdout == ""  # no banner: Celery never started
        assert second.stderr.splitlines() == [second.stderr.strip()], second.stderr
        assert second.stderr.startswith("newsdedup: error: another beat is running (")
        assert f"expires {BEAT_LOCK_SECONDS}s after that beat stops" in second.stderr
        assert "celery" not in second.stderr.lower()

        # `run` embeds a beat too: refused the same way, before its worker starts.
        run = run_cli(["run", "--concurrency", "1"], env, timeout=60)
        assert run.returncode == 1 and run.stdout == ""
        assert run.stderr.startswith("newsdedup: error: another beat is running (")
        assert len(run.stderr.splitlines()) == 1, run.stderr

    # The first beat released its lock on the way out: the next one starts at once.
    started = time.monotonic()
    with running_beat(env, tmp_path / "third.log"):
        assert time.monotonic() - started < BEAT_LOCK_SECONDS / 2


@faults.needs_redis_server
def test_a_running_beat_waits_out_a_full_disk_under_redis(tmp_path: Path) -> None:
    """The disk under Redis's AOF full for 45 s: Redis refuses every write (MISCONF), the
    beat's lock refresh and its polls among them. The beat says so in one line now and
    then and keeps running; once Redis takes writes it holds its lock again and sends the
    next poll."""
    feeds = tmp_path / "feeds.toml"
    feeds.write_text(
        '[[feed]]\nname = "loop"\nurl = "http://127.0.0.1:9/feed.xml"\ninterval = 10\n',
        encoding="utf-8",
    )
    prefix = "beatdisk:"
    with faults.small_file_system(tmp_path / "disk", "32m") as disk:
        server = faults.PrivateRedis(disk / "redis")
        server.start()
        client = redis.Redis.from_url(server.url, socket_connect_timeout=1)
        filler = disk / "filler"
        env = cli_env(redis_url=server.url, prefix=prefix, NEWSDEDUP_FEEDS__CONFIG=str(feeds))
        log = tmp_path / "beat.log"

        def sent() -> int:
            return sum(int(client.llen(key)) for key in queue_keys(prefix, FETCH_QUEUE))

        def said() -> str:
            return log.read_text(errors="replace")

        try:
            with running_beat(env, log) as beat:
                faults.wait_until(lambda: sent() >= 1, 30, "the first poll sent", said)
                faults.fill(filler)
                with contextlib.suppress(redis.ResponseError):  # the write that finds it full
                    client.set("filler", "x" * 100_000)
                before = sent()
                time.sleep(45)  # past the beat's lock refreshes (every 20 s) and the
                # client's retry window (10 s), with a poll due every 10 s
                assert beat.poll() is None, said()
                assert sent() == before, said()
                assert re.search(
                    r"beat: Redis is refusing writes: it cannot write its AOF: No space left "
                    r"on device \(MISCONF\): no poll is sent until it takes writes",
                    said(),
                ), said()
                filler.unlink()
                faults.wait_until(lambda: sent() > before, 60, "a poll sent again", said)
                faults.wait_until(
                    lambda: "Redis takes writes again" in said(), 30, "the beat's line", said
                )
                assert beat.poll() is None, said()
                assert "Traceback" not in said(), said()
                assert client.get(Keys(prefix).beat_lock) is not None
        finally:
            client.close()
            server.stop()
            filler.unlink(missing_ok=True)
