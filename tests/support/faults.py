"""A private redis-server and a backfill under real workers, for the fault tests
(Redis restarting under workers, Redis filling up): inputs written to files, workers started and
stopped, and the accounting checked afterwards (every input in exactly one stream, once)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from conftest import SEEDS, free_port, run_cli, start_cli, start_worker, stop_workers

from support.edit_copies import lightly_edit
from workers.index.keys import STREAM_NAMES, Keys
from workers.ops import streams
from workers.ops.embedded import SERVER_PROGRAM, redis_executable
from workers.worker.jobs import JobProgress, read_progress

# Dead-letter reasons that depend on an input's content only, never on a fault.
CONTENT_REASONS = {"missing_text", "all_boilerplate"}
# The machine's redis-server when there is one (the fault tests then also cover Redis
# itself), else the server the package embeds.
REDIS_SERVER = shutil.which("redis-server") or redis_executable()

# Worker settings under which Redis refusing writes soon outlasts a task's hold: a task
# holds its batch for 8 s (0.8 x the soft limit), then hands it back, and a batch left
# unacknowledged comes back after 25 s.
SHORT_HOLD = {
    "NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT": "10",
    "NEWSDEDUP_WORKER__TASK_TIME_LIMIT": "20",
    "NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT": "25",
}

needs_redis_server = pytest.mark.skipif(
    sys.platform != "linux", reason="needs Linux process semantics"
)


class PrivateRedis:
    """A redis-server of our own in `folder`, stopped and started again on the same port."""

    def __init__(self, folder: Path, appendfsync: str = "everysec") -> None:
        self.folder = folder
        self.port = free_port()
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                # PING answers LOADING while the AOF is replayed: wait for a real reply.
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start; see {self.folder}/redis.log"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Inputs:
    folder: Path
    refs: frozenset[str]  # input_ref of every input
    dead: frozenset[str]  # the inputs that are meant to be dead (records without text)


def write_inputs(folder: Path, count: int, *, seed: int, files: int = 4) -> Inputs:
    """`count` JSONL records over `files` files: new articles made of the seeds' words,
    exact and lightly edited copies of them and of the seeds, and every 97th record one
    without text (dead as missing_text, on purpose)."""
    seeds = [p.read_text("utf-8").partition("\n")[::2] for p in sorted(SEEDS.glob("*.txt"))]
    words = sorted({w for _, body in seeds for w in body.split() if len(w) > 2})
    rng = random.Random(seed)
    originals: list[tuple[str, str]] = []
    folder.mkdir(parents=True)
    handles = [(folder / f"part{k}.jsonl").open("w", encoding="utf-8") for k in range(files)]
    refs: set[str] = set()
    dead: set[str] = set()
    lines = [0] * files
    try:
        for i in range(count):
            k = i % files
            lines[k] += 1
            ref = f"part{k}.jsonl:{lines[k]}"
            refs.add(ref)
            record: dict[str, str] = {"id": f"s{seed}-{i}", "source": f"src{i % 3}"}
            if i % 97 == 96:
                dead.add(ref)
                record["title"] = "no text"
            else:
                kind = i % 4
                if kind == 0 or not originals:
                    paragraphs = [" ".join(rng.choices(words, k=60)) for _ in range(5)]
                    title, body = f"article {seed}-{i}", "\n".join(paragraphs)
                    originals.append((title, body))
                elif kind == 1:
                    title, body = rng.choice(originals)
                elif kind == 2:
                    title, text = seeds[i % len(seeds)]
                    body = lightly_edit(text, i)
                else:
                    title, text = rng.choice(originals)
                    body = lightly_edit(text, i)
                record.update(title=title, text=body)
            handles[k].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return Inputs(folder, frozenset(refs), frozenset(dead))


# ------------------------------------------------------------------------------ workers


def _descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@contextlib.contextmanager
def running_workers(
    env: dict[str, str], folder: Path, n: int, loglevel: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    workers = [start_worker(env, f"w{i}", folder / f"w{i}.log", loglevel) for i in range(n)]
    children: set[int] = set()
    try:
        yield workers
    finally:
        for w in workers:
            children.update(_descendants(w.pid))
        stop_workers(workers)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(pid) for pid in children):
            time.sleep(0.1)
        left = [pid for pid in children if running(pid)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"worker pool processes left running: {left}"


def worker_logs(folder: Path) -> str:
    return "".join(
        f"\n----- {p.name}\n" + p.read_text("utf-8", "replace")
        for p in sorted(folder.glob("w*.log"))
    )


@contextlib.contextmanager
def small_file_system(mount_point: Path, size: str) -> Iterator[Path]:
    """A file system of its own (tmpfs of `size`, "16m") at `mount_point`, to fill up;
    unmounted afterwards. Skips the test where it cannot be mounted (not root)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a small file system (mount tmpfs): {mounted.stderr}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write to `path` until its file system has no byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def servers_left(data_dir: Path, within: float) -> list[int]:
    """The embedded servers on `data_dir` (`servers_on`) still running after waiting up to
    `within` seconds for them to stop."""
    deadline = time.monotonic() + within
    while (left := servers_on(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def servers_on(data_dir: Path) -> list[int]:
    """Embedded server processes working on the files in `data_dir`; not the children a
    server forks to save or rewrite its AOF (same name, same folder), which are no
    second server."""
    found = []
    for proc in psutil.process_iter(["name", "ppid"]):
        try:
            if proc.info["name"] == SERVER_PROGRAM and proc.cwd() == str(data_dir.resolve()):
                found.append((proc.pid, proc.info["ppid"]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pids = {pid for pid, _ in found}
    return [pid for pid, parent in found if parent not in pids]


# ------------------------------------------------------------------------------ checks


def enqueue(inputs: Inputs, env: dict[str, str]) -> str:
    result = run_cli(["backfill", str(inputs.folder)], env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"enqueued {len(inputs.refs)} inputs" in result.stdout, result.stdout
    match = re.match(r"job (\S+): enqueued", result.stdout)
    assert match, result.stdout
    return match.group(1)


def progress_or_none(client: redis.Redis, keys: Keys, job_id: str) -> JobProgress | None:
    try:
        return read_progress(client, keys, job_id)
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return None


def processed_at_least(client: redis.Redis, keys: Keys, job_id: str, count: int) -> bool:
    """At least `count` inputs of the job processed; False while Redis is unreachable."""
    progress = progress_or_none(client, keys, job_id)
    return progress is not None and progress.processed >= count


def job_settled(client: redis.Redis, keys: Keys, job_id: str) -> bool:
    """Every input of the job counted, every task's end recorded, every message
    acknowledged and none left queued; False while Redis is unreachable."""
    progress = progress_or_none(client, keys, job_id)
    if progress is None or not progress.finished:
        return False
    if progress.tasks_done < progress.tasks_total:
        return False
    try:
        return not client.hlen(f"{keys.prefix}unacked") and not client.llen(f"{keys.prefix}ingest")
    except redis.ConnectionError:
        return False


def job_state(client: redis.Redis, keys: Keys, job_id: str) -> str:
    """What `job_settled` looks at, for a failure message: which part is not settled."""
    progress = progress_or_none(client, keys, job_id)
    try:
        unacked = client.hkeys(f"{keys.prefix}unacked")
        queued = client.llen(f"{keys.prefix}ingest")
    except redis.ConnectionError as exc:
        return f"\n----- job state: Redis unreachable ({exc})"
    tags = [tag.decode() if isinstance(tag, bytes) else tag for tag in unacked]
    return f"\n----- job state: {progress}; unacked messages {tags}; {queued} queued"


@dataclass
class JobLogs:
    """For a failure message: the job's state, once `job_id` is known, and the workers'
    logs in `folder`."""

    client: redis.Redis
    keys: Keys
    folder: Path
    job_id: str = ""

    def __call__(self) -> str:
        state = job_state(self.client, self.keys, self.job_id) if self.job_id else ""
        return state + worker_logs(self.folder)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]
) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not reached within {timeout:.0f}s" + logs())
        time.sleep(0.1)
    return time.monotonic() - started


def stream_refs(client: redis.Redis, keys: Keys) -> dict[str, list[dict[str, str]]]:
    return {
        name: [fields for _, fields in streams.iter_range(client, keys.stream(name), limit=None)]
        for name in STREAM_NAMES
    }


def check_accounting(
    client: redis.Redis,
    keys: Keys,
    job_id: str,
    inputs: Inputs,
    env: dict[str, str],
) -> None:
    """Every input in exactly one stream, once; the job's counters agree with the streams."""
    new = stream_refs(client, keys)
    seen = Counter(fields["input_ref"] for name in STREAM_NAMES for fields in new[name])
    twice = sorted(ref for ref, n in seen.items() if n > 1)
    assert not twice, f"{len(twice)} inputs accounted more than once, e.g. {twice[:5]}"
    missing = sorted(inputs.refs - set(seen))
    assert not missing, f"{len(missing)} inputs not accounted for, e.g. {missing[:5]}"
    assert set(seen) == inputs.refs
    ids = Counter(fields["id"] for fields in new["docs"])
    assert not [i for i, n in ids.items() if n > 1], "a document published twice"
    # The restart caused no dead letter: the records without text are dead, and besides
    # them at most a copy the boilerplate learner reads as nothing but learned lines (the
    # generated copies repeat their originals' paragraphs within a source).
    dead = {fields["input_ref"]: fields["reason"] for fields in new["dead"]}
    assert {r for r, why in dead.items() if why == "missing_text"} == inputs.dead
    assert set(dead.values()) <= CONTENT_REASONS, dead

    result = run_cli(["job", job_id, "--json"], env)
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["finished"] and job["total"] == job["processed"] == len(inputs.refs), job
    assert job["published"] == len(new["docs"]), job
    assert job["exact"] + job["near"] == len(new["duplicates"]), job
    assert job["dead"] == len(new["dead"]), job
    assert job["dead_reasons"] == dict(Counter(dead.values())), job
    assert job["tasks_done"] == job["tasks_total"], job
    # Every batch ended: the ended batches guard their inputs, the done set holds none.
    assert client.zcard(keys.job_done(job_id)) == 0


def held_mid_job(
    client: redis.Redis,
    keys: Keys,
    folder: Path,
    env: dict[str, str],
    inputs: Inputs,
    *,
    fault: Callable[[], None],
    repair: Callable[[], None],
    worker_says: str,
    backfill_says: str = "",
) -> None:
    """A fault under a running backfill that the workers must wait out: one worker and a
    `backfill --wait`; once 100 inputs are processed, `fault()`. The worker must log
    `worker_says` (and the backfill `backfill_says`), then process nothing for 6 s; after
    `repair()` the backfill must end well with every input accounted for once."""
    logs = JobLogs(client, keys, folder)
    with running_workers(env, folder, 1, "WARNING") as workers:
        log = folder / "backfill.log"
        backfill = start_cli(["backfill", "--wait", str(inputs.folder)], env, log)

        def all_logs() -> str:
            return logs() + "\n----- backfill\n" + log.read_text("utf-8", "replace")

        wait_until(lambda: client.zcard(keys.jobs) == 1, 60, "the job", all_logs)
        logs.job_id = client.zrange(keys.jobs, -1, -1)[0].decode()
        wait_until(
            lambda: processed_at_least(client, keys, logs.job_id, 100),
            120,
            "100 inputs processed",
            all_logs,
        )
        fault()
        wait_until(lambda: worker_says in worker_logs(folder), 60, "the worker's wait", all_logs)
        wait_until(
            lambda: backfill_says in log.read_text("utf-8", "replace"),
            60,
            "the backfill's line",
            all_logs,
        )
        # The batch under way at the fault may end; after that, nothing.
        held = progress_or_none(client, keys, logs.job_id)
        time.sleep(6)
        later = progress_or_none(client, keys, logs.job_id)
        assert held is not None and later is not None, all_logs()
        assert later.processed == held.processed < len(inputs.refs), (held, later)
        repair()
        # The worker must have lived through the fault: without it the backfill waits on.
        wait_until(
            lambda: backfill.poll() is not None or workers[0].poll() is not None,
            300,
            "the backfill's end",
            all_logs,
        )
        assert workers[0].poll() is None, "the worker exited" + all_logs()
        assert backfill.wait() == 0, all_logs()
        assert not unexpected_tracebacks(worker_logs(folder)), all_logs()
        check_accounting(client, keys, logs.job_id, inputs, env)


# Celery logs a task's Reject with its traceback: a batch handed back while Redis refuses
# writes (workers/worker/tasks.py), which is expected.
_HANDED_BACK = re.compile(r"Task \S+ reject requeue=True: ")
_LOG_RECORD = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: ", re.MULTILINE)


def unexpected_tracebacks(logs: str) -> list[str]:
    """The worker log records in `logs` that carry a traceback, but for handed-back batches."""
    records = _LOG_RECORD.split(logs)
    return [r for r in records if "Traceback" in r and not _HANDED_BACK.search(r.split("\n")[0])]


# ------------------------------------------------------------------------------ network


class BrpopReplyCutter:
    """A TCP proxy in front of a Redis server that forwards everything, except that while
    `armed` it cuts the connection instead of passing on a BRPOP reply carrying a
    message: Redis has popped the message and the worker never sees it, as when a network
    fault or a failover cuts the connection at that moment."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = 0  # BRPOP replies still to cut
        self.cut = 0  # BRPOP replies cut so far
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                continue
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _cut_this(self, reply: bytes, after_brpop: bool) -> bool:
        # A BRPOP reply with a message is a two-element array; a timeout is a null.
        if not (after_brpop and reply.startswith(b"*2\r\n")):
            return False
        with self._lock:
            if self.armed <= 0:
                return False
            self.armed -= 1
            self.cut += 1
            return True

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        after_brpop = False
        try:
            while True:
                readable, _, _ = select.select([client, server], [], [])
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        break
                    after_brpop = b"BRPOP" in data.upper()
                    server.sendall(data)
                if server in readable:
                    data = server.recv(65536)
                    if not data or self._cut_this(data, after_brpop):
                        break
                    client.sendall(data)
        except OSError:
            pass
        finally:
            for end in (client, server):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
