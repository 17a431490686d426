"""`newsdedup beat`: exactly one per Redis and prefix. A second one refuses in one line,
before Celery prints its banner; once the first stops, a beat starts again at once.

Real beats, each `python -m workers.cli beat` in its own process, on the embedded Redis of
one temporary data folder (the README's default setup).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import cli_env, run_cli, start_cli

from workers.feeds.schedule import BEAT_LOCK_SECONDS


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
