"""Child processes that must not outlive the command that needs them.

A newsdedup command starts a Celery worker (and, on the embedded default, a Redis server
through `workers.ops.embedded`). Whatever ends the command, Ctrl-C, SIGTERM or SIGKILL, these
end with it instead of running on, reparented to PID 1. Standard library only: the
embedded server's supervisor imports this module and should start fast.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

# Set by a command for the worker it starts: the command's pid. The worker's main
# process watches it (`exit_with_parent`) and stops when that process is gone.
PARENT_PID_ENV = "NEWSDEDUP_EXIT_WITH_PID"
# Set with it: the read end of a pipe whose write end only the command holds. The command
# asks its worker to stop by writing its grace (seconds, ASCII) and closing the pipe; the
# pipe also closes when the command dies, however it dies.
LIFELINE_FD_ENV = "NEWSDEDUP_LIFELINE_FD"

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies (it survives exec).
    False where that is not available: the callers have another way to notice."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie (dead, waiting for its parent to reap it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    fields = _stat_fields(pid)
    # No /proc: a zombie counts as running until its parent reaps it.
    return fields is None or not fields or fields[0] != b"Z"


def is_program(pid: int, program: str, cwd: str | None = None) -> bool:
    """The running process `pid` runs `program` (its name, as in /proc/PID/comm) and, with
    `cwd`, works in that folder (redis-server changes into the folder of its files): a
    pid from a record written earlier may since have been reused by another process.
    Where /proc is missing, a running process is trusted to be the recorded one."""
    if not is_running(pid):
        return False
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            name = os.fsdecode(comm.read().strip())
        if cwd is not None and os.readlink(f"/proc/{pid}/cwd") != cwd:
            return False
    except OSError:
        return not os.path.isdir("/proc/self")
    return name == program[:15]  # the kernel keeps 15 characters of the name


def processes_with_cwd(program: str, folder: str) -> list[int]:
    """Running processes of `program` working in `folder` (Linux only)."""
    with contextlib.suppress(OSError):
        return [
            int(entry.name)
            for entry in os.scandir("/proc")
            if entry.name.isdigit() and is_program(int(entry.name), program, folder)
        ]
    return []


def wait_until_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a process that is not our child to end."""
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def terminate(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_until_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until_gone(pid, 5.0)


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (None if unreadable).
    The name may hold spaces and ")", so the fields start after the last one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()
    except OSError:
        return None


def group_alive(pgid: int) -> bool:
    """Some process of the process group `pgid` still runs (zombies do not count: where
    PID 1 does not reap orphans, a killed pool process may stay one for good)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and len(fields) > 2 and fields[2] == b"%d" % pgid and fields[0] != b"Z":
                return True
    return False


def kill_group(pgid: int, timeout: float = 5.0) -> None:
    """SIGKILL every process of the process group `pgid` and wait (up to `timeout`
    seconds) until none runs. SIGKILL also ends a stopped or hung process."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def _wait_for_stop(lifeline: int | None, parent: int) -> float | None:
    """Block until the command asks to stop (the grace it wrote, when the pipe closes) or
    is gone (None: its pipe closed with nothing written, or this process was reparented)."""
    written = b""
    while os.getppid() == parent:
        if lifeline is None:
            time.sleep(0.5)
            continue
        readable, _, _ = select.select([lifeline], [], [], 0.5)
        if not readable:
            continue
        try:
            chunk = os.read(lifeline, 64)
        except OSError:  # not the pipe it should be: watch the pid alone
            lifeline = None
            continue
        if chunk:
            written += chunk
            continue
        try:
            return float(written.decode("ascii")) if written else None
        except ValueError:
            return None
    return None


def exit_with_parent(grace: float, drain: Callable[[float], None] | None = None) -> None:
    """In a worker a command started (PARENT_PID_ENV set): stop when that command asks
    (its lifeline pipe, LIFELINE_FD_ENV) or is gone, however it ended.

    First `drain(deadline)`: the worker takes no more messages and finishes those it holds,
    so none is left unacknowledged in Redis for the visibility timeout. Then a SIGTERM for
    Celery's warm shutdown, at the latest WARM_SHUTDOWN seconds before the deadline (the
    grace the command wrote, else `grace`); whatever still runs then gets SIGKILL for the
    whole process group (a stuck pool process included).

    Polling the parent pid, rather than Linux's parent-death signal, keeps the warm
    shutdown and works on any Unix. The variables are removed so that processes the worker
    starts in turn do not watch a pid that is not their parent.
    """
    value = os.environ.pop(PARENT_PID_ENV, "")
    lifeline_value = os.environ.pop(LIFELINE_FD_ENV, "")
    if not value.isdigit():
        return
    parent = int(value)
    lifeline = int(lifeline_value) if lifeline_value.isdigit() else None

    def watch() -> None:
        asked = _wait_for_stop(lifeline, parent)
        deadline = time.monotonic() + (asked if asked is not None else grace)
        if drain is not None:
            drain(deadline - WARM_SHUTDOWN)
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(max(deadline - time.monotonic(), 0.0))
        # Our own group only when we lead it (the command starts us so); never the
        # group of a shell that happens to have set the variable.
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# A drained worker's warm shutdown (no task left to wait for) takes 2-3 s: draining stops
# this long before the deadline to leave it the time.
WARM_SHUTDOWN = 5.0
