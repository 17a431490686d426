"""How a worker a command started learns to stop (workers.ops.processes.exit_with_parent):
the command writes its grace to the lifeline pipe and closes it, or dies. Either way the
worker drains first, then gets SIGTERM, then SIGKILL at the deadline.

Real processes: a small child runs exit_with_parent with a drain that records how much
time it was given, and a SIGTERM handler that records the signal and keeps running (as a
stuck warm shutdown would), so the SIGKILL at the deadline is what ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT

from workers.ops.processes import LIFELINE_FD_ENV, PARENT_PID_ENV, WARM_SHUTDOWN

DEFAULT_GRACE = 7.0

CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    from workers.ops.processes import exit_with_parent

    log = sys.argv[1]

    def note(**event):
        with open(log, "a") as out:
            out.write(json.dumps({**event, "at": time.monotonic()}) + "\\n")

    signal.signal(signal.SIGTERM, lambda *_: note(event="sigterm"))
    exit_with_parent(float(sys.argv[2]), lambda until: note(event="drain", until=until))
    note(event="ready")
    while True:
        time.sleep(1)
    """
)


def events(log: Path) -> dict[str, dict[str, float]]:
    if not log.exists():
        return {}
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return {line["event"]: line for line in lines}


def wait_for(log: Path, event: str, timeout: float = 20.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if event in (seen := events(log)):
            return seen[event]
        time.sleep(0.05)
    raise AssertionError(f"no {event} within {timeout} s: {events(log)}")


def start_child(log: Path, *, lifeline: bool) -> tuple[subprocess.Popen[bytes], int | None]:
    """The child, watching this process, with the write end of its lifeline if asked."""
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid()), "PYTHONPATH": str(ROOT)}
    pass_fds: tuple[int, ...] = ()
    write_end = None
    if lifeline:
        read_end, write_end = os.pipe()
        env[LIFELINE_FD_ENV] = str(read_end)
        pass_fds = (read_end,)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(log), str(DEFAULT_GRACE)],
        env=env,
        pass_fds=pass_fds,
        process_group=0,
    )
    if pass_fds:
        os.close(pass_fds[0])
    wait_for(log, "ready")
    return child, write_end


def check_stop(child: subprocess.Popen[bytes], log: Path, asked_at: float, grace: float) -> None:
    """Drained with the time up to WARM_SHUTDOWN before the deadline, then SIGTERM, then
    SIGKILL (the child ignores the SIGTERM) at about `grace` seconds after `asked_at`."""
    returncode = child.wait(timeout=grace + 10)
    ended_at = time.monotonic()
    drain, term = wait_for(log, "drain"), wait_for(log, "sigterm")
    assert returncode == -9
    assert drain["until"] == pytest.approx(asked_at + grace - WARM_SHUTDOWN, abs=1.0)
    assert drain["at"] <= term["at"] <= drain["at"] + 1.0
    assert ended_at - asked_at == pytest.approx(grace, abs=1.5)


def test_asked_with_a_grace_drains_then_stops_within_it(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    child, write_end = start_child(log, lifeline=True)
    assert write_end is not None
    time.sleep(0.7)  # still running: an open lifeline is no request to stop
    assert child.poll() is None and "drain" not in events(log)
    asked_at = time.monotonic()
    os.write(write_end, b"9")
    os.close(write_end)
    check_stop(child, log, asked_at, grace=9.0)


def test_lifeline_closed_without_a_word_is_a_command_gone(tmp_path: Path) -> None:
    """The command died (the kernel closed its end): the worker's own grace applies."""
    log = tmp_path / "events.jsonl"
    child, write_end = start_child(log, lifeline=True)
    assert write_end is not None
    asked_at = time.monotonic()
    os.close(write_end)
    check_stop(child, log, asked_at, grace=DEFAULT_GRACE)


def test_without_a_lifeline_the_parent_pid_is_watched(tmp_path: Path) -> None:
    """A worker started with the pid alone (no pipe): it stops once reparented."""
    log = tmp_path / "events.jsonl"
    middle = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        env = {{**os.environ, {PARENT_PID_ENV!r}: str(os.getpid()), "PYTHONPATH": {str(ROOT)!r}}}
        subprocess.Popen([sys.executable, "-c", {CHILD!r}, {str(log)!r}, "{DEFAULT_GRACE}"],
                         env=env, process_group=0)
        while not os.path.exists({str(log)!r}):
            time.sleep(0.05)
        """
    )
    subprocess.run([sys.executable, "-c", middle], check=True, timeout=30)
    asked_at = time.monotonic()
    drain = wait_for(log, "drain")
    assert drain["until"] == pytest.approx(asked_at + DEFAULT_GRACE - WARM_SHUTDOWN, abs=1.0)
    wait_for(log, "sigterm")
