"""Soak test: a large backfill through real worker processes while one of them is killed.

N inputs (default 100,000: the ../shared corpus once, then lightly edited and exact
copies of its records, with new ids, up to the count) go through `--workers` Celery
workers (`newsdedup worker --concurrency 1`, each its own process group) on a private
Redis started here (bench/_redis.py). At 1/3 and 2/3 of the job (for `--kills 2`) worker
w1's whole process group gets SIGKILL and w1 is started again under the same name.

When the job is done and the broker drained, the three output streams are read back from
Redis and checked: docs + duplicates + dead == inputs, no id twice in docs, every input in
exactly one stream exactly once, the job's own counters agree. The table goes to stdout,
progress to stderr; the exit code is 0 when every check holds, 1 otherwise.

Run from the repository root: `.venv/bin/python bench/soak.py [--quick]`.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from _redis import RedisServer, _die_with_parent

from workers.index.keys import STREAM_NAMES, Keys
from workers.ingest.spec import TaskSpec
from workers.ops.connection import broker_for
from workers.ops.stats import write_refusal
from workers.ops.streams import iter_range
from workers.worker.jobs import JobProgress, read_progress

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = ROOT.parent / "shared"
CORPUS_FILES = (
    "corpus/saudinewsnet.jsonl.gz",
    "corpus/ant_multisource_v2.1.jsonl.gz",
    "corpus/ant_jawharafm_v1.1.jsonl.gz",
)
FULL_DOCS = 100_000
QUICK_DOCS = 5_000
FILE_RECORDS = 500  # records per generated JSONL file
BLOCK = 250  # originals written before their copies: a copy is 1-2 batches behind them
EXACT_SHARE = 10  # 1 copy in EXACT_SHARE repeats its original exactly (same text and URL)
PREFIX = "soak:"
RESTART_PAUSE = 2.0  # seconds between a kill and the restart
BUSY_WAIT = 30.0  # longest a due kill waits for every worker to hold a batch
PROGRESS_EVERY = 15.0

Edit = Callable[[str, int], str]


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


@dataclass(slots=True)
class Inputs:
    folder: Path
    kinds: dict[str, str] = field(default_factory=dict)  # input_ref -> original/edited/exact
    copy_of: dict[str, str] = field(default_factory=dict)  # a copy's input_ref -> original's
    files: int = 0

    @property
    def total(self) -> int:
        return len(self.kinds)

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kinds.values() if k == kind)


class PartWriter:
    """JSONL files of FILE_RECORDS records; remembers each record's input_ref
    (`<file>:<line>`, as the backfill loader names it) and what kind of input it is."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.handle: IO[str] | None = None
        self.name = ""
        self.lines = 0

    def write(self, record: dict[str, Any], kind: str) -> str:
        if self.handle is None or self.lines == FILE_RECORDS:
            self.close()
            self.name = f"part-{self.inputs.files:05d}.jsonl"
            self.handle = (self.inputs.folder / self.name).open("w", encoding="utf-8")
            self.inputs.files += 1
            self.lines = 0
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.lines += 1
        ref = f"{self.name}:{self.lines}"
        self.inputs.kinds[ref] = kind
        return ref

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def corpus_records(shared: Path) -> Iterator[dict[str, Any]]:
    """Every corpus record with the fields the backfill reads, in file order."""
    for name in CORPUS_FILES:
        with gzip.open(shared / name, "rt", encoding="utf-8") as handle:
            for line in handle:
                raw = json.loads(line)
                yield {
                    "id": raw.get("id"),
                    "source": raw.get("source"),
                    "url": raw.get("url") or "",
                    "title": raw.get("title") or "",
                    "time": raw.get("time") or raw.get("date_extracted") or "",
                    "text": raw.get("text"),
                }


def count_records(shared: Path) -> int:
    total = 0
    for name in CORPUS_FILES:
        with gzip.open(shared / name, "rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def make_copy(record: dict[str, Any], copy_pass: int, edit: Edit) -> tuple[dict[str, Any], str]:
    """Copy `copy_pass` of a record: a new id, and either the same text and URL (an exact
    repeat) or lightly edited text without the URL (a near-duplicate reprint)."""
    new_id = f"{record['id']}~r{copy_pass}"
    seed = zlib.crc32(new_id.encode("utf-8"))
    copy = dict(record, id=new_id)
    if seed % EXACT_SHARE == 0:
        return copy, "exact"
    text = record["text"]
    if isinstance(text, str) and text.strip():
        copy["text"] = edit(text, seed)
    copy["url"] = ""
    return copy, "edited"


def generate(shared: Path, folder: Path, docs: int, edit: Edit) -> Inputs:
    """`docs` inputs: corpus records (all of them for 100,000 or more; an even sample for
    fewer, so a quick run has the full run's share of copies), each block of BLOCK
    originals followed by the copies of some of them, spread evenly."""
    available = count_records(shared)
    originals = min(available, max(1, round(docs * available / FULL_DOCS)))
    chosen = {round(j * available / originals) for j in range(originals)}
    copies_left = docs - originals
    # copies[p] = how many originals get a copy in pass p + 1
    per_pass: list[int] = []
    while copies_left > 0:
        per_pass.append(min(originals, copies_left))
        copies_left -= per_pass[-1]

    def gets_copy(j: int, count: int) -> bool:
        return (j + 1) * count // originals > j * count // originals

    inputs = Inputs(folder)
    writer = PartWriter(inputs)
    block: list[tuple[int, dict[str, Any]]] = []

    def flush() -> None:
        refs = [writer.write(record, "original") for _, record in block]
        for copy_pass, count in enumerate(per_pass, start=1):
            for (j, record), original in zip(block, refs, strict=True):
                if gets_copy(j, count):
                    inputs.copy_of[writer.write(*make_copy(record, copy_pass, edit))] = original
        block.clear()

    j = 0
    for i, record in enumerate(corpus_records(shared)):
        if i not in chosen:
            continue
        block.append((j, record))
        j += 1
        if len(block) == BLOCK:
            flush()
    flush()
    writer.close()
    return inputs


def load_edit() -> Edit:
    """tests/support/edit_copies.lightly_edit, the edits the copy tests use."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.edit_copies import lightly_edit

    edit: Edit = lightly_edit
    return edit


# --------------------------------------------------------------------------- workers


@dataclass(slots=True)
class Worker:
    """One `newsdedup worker --concurrency 1` in its own process group."""

    name: str
    env: dict[str, str]
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_path: Path | None = None

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.logs / f"{self.name}.{self.starts}.log"
        command = [
            sys.executable, "-m", "workers.cli", "worker",
            "--concurrency", "1",
            "--loglevel", "WARNING",
            "--hostname", f"{self.name}@%h",
        ]  # fmt: skip
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: main and pool child die together
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group(self) -> list[Any]:
        """psutil processes of the worker: main and pool children."""
        import psutil

        if not self.alive or self.proc is None:
            return []
        try:
            main = psutil.Process(self.proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill_group(self) -> int:
        """SIGKILL main and pool child at once; wait until they are gone. Returns how many."""
        import psutil

        assert self.proc is not None
        members = self.group()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        _wait_gone(members, psutil)
        return len(members)

    def kill_child(self) -> int:
        """SIGKILL only the pool child(ren): the main process requeues the task at once."""
        import psutil

        children = self.group()[1:]
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
        _wait_gone(children, psutil)
        return len(children)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        import psutil

        members = self.group()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for member in members[1:]:  # a pool child left behind (is_running checks the pid's age)
            with contextlib.suppress(psutil.NoSuchProcess):
                if member.is_running():
                    member.kill()

    def log_tail(self, lines: int = 12) -> str:
        if self.log_path is None:
            return "(not started)"
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text[-lines:]) or "    (empty log)"

    def all_logs(self) -> list[Path]:
        return sorted(self.logs.glob(f"{self.name}.*.log"))


def _wait_gone(processes: list[Any], psutil: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for proc in processes:
        while time.monotonic() < deadline:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)


# --------------------------------------------------------------------------- the run


@dataclass(slots=True)
class HeldBatch:
    """A batch taken from the queue and not acknowledged when a kill came."""

    task_index: int
    spec: TaskSpec
    before: int = 0  # its inputs accounted for before the kill
    after: int = 0  # ... after it
    first_after: float | None = None  # seconds from the kill to the first of those


@dataclass(slots=True)
class Kill:
    number: int
    at: float  # seconds since the backfill started
    server_time: int  # Redis clock at the kill (stream entry ids use it)
    processed: int
    total: int
    processes: int  # processes killed
    held: list[HeldBatch]  # every worker's unacknowledged batches at the kill
    restarted_after: float | None = None


@dataclass(slots=True)
class FullPhase:
    """Redis made full part way (--full): maxmemory set just above what it holds."""

    at: float  # seconds since the backfill started
    processed: int  # inputs accounted for then
    refused_at: float | None = None  # when the workers' writes were first refused
    refused: str = ""  # what `stats` said then
    released_at: float | None = None  # when maxmemory was lifted
    processed_released: int = 0


@dataclass(slots=True)
class RunResult:
    job_id: str
    progress: JobProgress
    wall: float  # backfill start to the last input accounted for
    drained: float  # ... to queue empty, nothing unacked, every task done
    drained_ok: bool
    kills: list[Kill]
    unexpected_exits: list[str]
    enqueue_seconds: float
    attempts: dict[int, int] | None  # task index -> starts, when the workers count them
    full: FullPhase | None = None


class Stuck(Exception):
    """The job made no progress, or did not finish in time."""


def soak_env(url: str, data_dir: Path, visibility: int) -> dict[str, str]:
    limit = visibility - 10
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": url,
            "BROKER_URL": broker_for(url),
            "NEWSDEDUP_PREFIX": PREFIX,
            "NEWSDEDUP_DATA_DIR": str(data_dir),
            # A message taken by a worker that died reappears after this many seconds
            # (plus kombu's restore sweep); the task limits stay below it.
            "NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT": str(visibility),
            "NEWSDEDUP_WORKER__TASK_TIME_LIMIT": str(limit),
            "NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT": str(limit - 5),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"newsdedup {args[0]} exited with {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def held_batches(client: redis.Redis) -> list[HeldBatch]:
    """The ingest batches in kombu's unacked hash (JSON [message, exchange, routing key];
    the message body is Celery's [args, kwargs, embed], base64 encoded)."""
    held = []
    for raw in client.hvals(f"{PREFIX}unacked"):
        try:
            message = json.loads(raw)[0]
            if message.get("headers", {}).get("task") != "newsdedup.ingest_batch":
                continue
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            task_args = json.loads(body)[0]
            held.append(HeldBatch(int(task_args[1]), TaskSpec.from_json(task_args[2])))
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return sorted(held, key=lambda b: b.task_index)


def batch_refs(spec: TaskSpec) -> list[str]:
    """The batch's inputs' refs (path:line, as the output records name them)."""
    return [
        f"{loc.path}:{line + 1}"
        for loc in spec.locations
        for line in range(loc.start, loc.start + loc.count)
    ]


def accounted_at(client: redis.Redis) -> dict[str, float]:
    """When each input was accounted for (server clock, seconds): the time of its first
    entry in docs, duplicates or dead (a stream entry's id is its server time in ms)."""
    keys = Keys(PREFIX)
    first: dict[str, float] = {}
    for stream in STREAM_NAMES:
        for entry_id, fields in iter_range(client, keys.stream(stream), limit=None, page=5000):
            at = int(entry_id.split("-")[0]) / 1000
            ref = fields.get("input_ref", "")
            if ref and (ref not in first or at < first[ref]):
                first[ref] = at
    return first


def time_held_batches(client: redis.Redis, kills: list[Kill]) -> None:
    """When each held batch's inputs were accounted for, from the output streams."""
    if not any(kill.held for kill in kills):
        return
    first = accounted_at(client)
    for kill in kills:
        for batch in kill.held:
            times = [first[ref] for ref in batch_refs(batch.spec) if ref in first]
            batch.before = sum(1 for t in times if t <= kill.server_time)
            later = [t - kill.server_time for t in times if t > kill.server_time]
            batch.after = len(later)
            batch.first_after = min(later) if later else None


def broker_state(client: redis.Redis) -> tuple[int, int]:
    """(messages waiting in the ingest queue, messages taken and not acknowledged)."""
    pipe = client.pipeline(transaction=False)
    pipe.llen(f"{PREFIX}ingest")
    pipe.hlen(f"{PREFIX}unacked")
    waiting, unacked = pipe.execute()
    return int(waiting), int(unacked)


def kill_now(
    number: int,
    victim: Worker,
    mode: str,
    client: redis.Redis,
    at: float,
    progress: JobProgress,
    held: list[HeldBatch],
) -> Kill:
    server_time = int(client.time()[0])
    killed = victim.kill_group() if mode == "group" else victim.kill_child()
    log(
        f"kill {number}: SIGKILL to {killed} process(es) of {victim.name} ({mode}) at "
        f"{at:.1f}s, {progress.processed:,}/{progress.total:,} inputs accounted for, "
        f"batches held: {[b.task_index for b in held]}"
    )
    return Kill(number, at, server_time, progress.processed, progress.total, killed, held)


def run_job(
    args: argparse.Namespace,
    inputs: Inputs,
    client: redis.Redis,
    env: dict[str, str],
    workers: list[Worker],
) -> RunResult:
    keys = Keys(PREFIX)
    for worker in workers:
        worker.start()
    started = time.monotonic()
    out = cli(env, "backfill", "--json", str(inputs.folder))
    enqueue_seconds = time.monotonic() - started
    try:
        enqueued = json.loads(out)
    except ValueError:
        raise RuntimeError(f"unexpected backfill output: {out.strip()!r}") from None
    if enqueued.get("outcome") != "enqueued":
        raise RuntimeError(f"unexpected backfill output: {out.strip()!r}")
    job_id, planned = enqueued["job_id"], int(enqueued["total"])
    if planned != inputs.total:
        raise RuntimeError(f"backfill planned {planned} inputs, {inputs.total} were written")
    tasks = enqueued["tasks_total"]
    log(f"job {job_id}: {planned:,} inputs in {tasks} tasks ({enqueue_seconds:.1f}s)")

    victim = workers[0]
    marks = [inputs.total * (k + 1) / (args.kills + 1) for k in range(args.kills)]
    kills: list[Kill] = []
    unexpected: list[str] = []
    pending_restart: tuple[Kill, float] | None = None
    due_since: float | None = None  # when the next kill came due
    last_processed, last_change, last_report = -1, started, started
    stall = max(600.0, 5.0 * args.visibility)
    full: FullPhase | None = None

    def stuck(reason: str, progress: JobProgress) -> Stuck:
        waiting, unacked = broker_state(client)
        tails = "\n".join(f"  {w.name} ({w.log_path}):\n{w.log_tail()}" for w in workers)
        return Stuck(
            f"{reason}: {progress.processed}/{progress.total} inputs accounted for "
            f"({progress.published} published, {progress.exact} exact, {progress.near} near, "
            f"{progress.dead} dead), {progress.tasks_done}/{progress.tasks_total} tasks done, "
            f"{waiting} messages queued, {unacked} unacked\n{tails}"
        )

    while True:
        progress = read_progress(client, keys, job_id)
        now = time.monotonic()
        if progress.processed != last_processed:
            last_processed, last_change = progress.processed, now
        if pending_restart is not None and now >= pending_restart[1]:
            victim.start()
            kill = pending_restart[0]
            kill.restarted_after = now - started - kill.at
            pending_restart = None
            log(f"kill {kill.number}: {victim.name} started again")
        if (
            len(kills) < args.kills
            and pending_restart is None
            and not progress.finished
            and progress.processed >= marks[len(kills)]
        ):
            # Batches still held since an earlier kill are that kill's, not this one's.
            earlier = {b.task_index for k in kills for b in k.held}
            held = [b for b in held_batches(client) if b.task_index not in earlier]
            due_since = now if due_since is None else due_since
            # Kill mid-batch: wait (at most BUSY_WAIT) until every worker holds a batch, so
            # that the kill does not land on a w1 still starting up after the last one.
            if len(held) >= len(workers) or now - due_since >= BUSY_WAIT:
                due_since = None
                kill = kill_now(
                    len(kills) + 1, victim, args.kill, client, now - started, progress, held
                )
                kills.append(kill)
                if args.kill == "group":
                    pending_restart = (kill, now + RESTART_PAUSE)
        if args.full is not None:
            full = full_phase(args, client, keys, full, progress, now - started)
            if full is not None and full.released_at is None:
                last_change = now  # a full Redis stalls the job on purpose
        for worker in workers:
            if (
                worker.proc is not None
                and not worker.alive
                and not (worker is victim and pending_restart is not None)
            ):
                code = worker.proc.returncode
                unexpected.append(f"{worker.name} exited with {code} (see {worker.log_path})")
                log(f"{worker.name} exited on its own with code {code}; starting it again")
                worker.start()
        if progress.finished and pending_restart is None:
            break
        if progress.abandoned_tasks:
            raise stuck(f"{progress.abandoned_tasks} batch(es) given up by the workers", progress)
        if now - started > args.timeout:
            raise stuck(f"job not finished after {args.timeout:.0f}s", progress)
        if now - last_change > stall:
            raise stuck(f"no progress for {stall:.0f}s", progress)
        if now - last_report >= PROGRESS_EVERY:
            last_report = now
            elapsed = now - started
            log(
                f"{elapsed:7.1f}s  {progress.processed:,}/{progress.total:,} "
                f"({progress.processed / max(elapsed, 1e-6):.0f}/s)  "
                f"published {progress.published:,}  dup {progress.duplicates:,}  "
                f"dead {progress.dead:,}  tasks {progress.tasks_done}/{progress.tasks_total}"
            )
        time.sleep(0.5)
    wall = time.monotonic() - started
    log(f"every input accounted for after {wall:.1f}s; waiting for the broker to drain")

    # A task killed after its last input but before its ack comes back after the
    # visibility timeout (plus kombu's restore sweep, up to 100 s) and must change nothing.
    deadline = time.monotonic() + 2 * args.visibility + 240
    drained_ok = False
    while time.monotonic() < deadline:
        progress = read_progress(client, keys, job_id)
        waiting, unacked = broker_state(client)
        if waiting == 0 and unacked == 0 and progress.tasks_done == progress.tasks_total:
            drained_ok = True
            break
        time.sleep(0.5)
    drained = time.monotonic() - started
    progress = read_progress(client, keys, job_id)
    time_held_batches(client, kills)
    # The workers count each batch's starts (a redelivered one shows 2 or more).
    raw_attempts: dict[Any, Any] = client.hgetall(keys.job_attempts(job_id))
    attempts = {int(k): int(v) for k, v in raw_attempts.items()} if raw_attempts else None
    return RunResult(
        job_id,
        progress,
        wall,
        drained,
        drained_ok,
        kills,
        unexpected,
        enqueue_seconds,
        attempts,
        full,
    )


FULL_HEADROOM = 4 * 2**20  # maxmemory above used_memory when Redis is made full


def full_phase(
    args: argparse.Namespace,
    client: redis.Redis,
    keys: Keys,
    full: FullPhase | None,
    progress: JobProgress,
    elapsed: float,
) -> FullPhase | None:
    """--full AT:SECONDS: at AT of the job, maxmemory just above what Redis holds; once the
    workers' writes are refused, SECONDS more; then no limit."""
    at, seconds = args.full
    if full is None:
        if progress.processed < at * progress.total or progress.finished:
            return None
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + FULL_HEADROOM)
        log(f"full: maxmemory {used + FULL_HEADROOM:,} at {elapsed:.1f}s")
        return FullPhase(elapsed, progress.processed)
    if full.released_at is not None:
        return full
    if full.refused_at is None:
        refusal = write_refusal(client, keys)
        if refusal is not None:
            full.refused_at, full.refused = elapsed, refusal
            log(f"full: refused at {elapsed:.1f}s, {progress.processed:,} inputs: {refusal}")
        elif progress.finished:
            full.released_at, full.processed_released = elapsed, progress.processed
        return full
    if elapsed - full.refused_at >= seconds:
        client.config_set("maxmemory", 0)
        full.released_at, full.processed_released = elapsed, progress.processed
        log(f"full: maxmemory lifted at {elapsed:.1f}s, {progress.processed:,} inputs")
    return full


# --------------------------------------------------------------------------- checks


@dataclass(slots=True)
class StreamContents:
    docs: int = 0
    duplicates: int = 0
    dead: int = 0
    doc_ids: Counter[str] = field(default_factory=Counter)
    refs: Counter[str] = field(default_factory=Counter)
    ref_stream: dict[str, list[str]] = field(default_factory=dict)
    ref_entry: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref -> id, dup of
    dup_kinds: Counter[str] = field(default_factory=Counter)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    dangling: list[str] = field(default_factory=list)  # duplicates of no published doc


def read_streams(client: redis.Redis) -> StreamContents:
    keys = Keys(PREFIX)
    found = StreamContents()
    dup_of: list[tuple[str, str]] = []
    for stream in ("docs", "duplicates", "dead"):
        for _, fields in iter_range(client, keys.stream(stream), limit=None, page=1000):
            ref = fields.get("input_ref", "")
            found.refs[ref] += 1
            found.ref_stream.setdefault(ref, []).append(stream)
            found.ref_entry[ref] = (fields.get("id", ""), fields.get("duplicate_of", ""))
            if stream == "docs":
                found.docs += 1
                found.doc_ids[fields.get("id", "")] += 1
            elif stream == "duplicates":
                found.duplicates += 1
                found.dup_kinds[fields.get("kind", "?")] += 1
                dup_of.append((fields.get("id", ""), fields.get("duplicate_of", "")))
            else:
                found.dead += 1
                found.dead_reasons[fields.get("reason", "?")] += 1
    found.dangling = [f"{d} -> {o}" for d, o in dup_of if o not in found.doc_ids]
    return found


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    examples: list[str] = field(default_factory=list)


def examples(items: Sequence[str], limit: int = 8) -> list[str]:
    shown = list(items[:limit])
    if len(items) > limit:
        shown.append(f"... {len(items) - limit} more")
    return shown


def run_checks(
    args: argparse.Namespace, inputs: Inputs, found: StreamContents, result: RunResult
) -> list[Check]:
    checks: list[Check] = []
    total = found.docs + found.duplicates + found.dead
    checks.append(
        Check(
            "docs + duplicates + dead == inputs",
            total == inputs.total,
            f"{found.docs:,} + {found.duplicates:,} + {found.dead:,} = {total:,}, "
            f"inputs {inputs.total:,}",
        )
    )
    twice = [f"{i} x{n}" for i, n in found.doc_ids.items() if n > 1]
    checks.append(
        Check(
            "no id twice in docs",
            not twice,
            f"{len(found.doc_ids):,} distinct ids in {found.docs:,} entries"
            + (f", {len(twice)} ids more than once" if twice else ""),
            examples(twice),
        )
    )
    expected = inputs.kinds
    missing = [r for r in expected if r not in found.refs]
    repeated = [f"{r} in {', '.join(found.ref_stream[r])}" for r, n in found.refs.items() if n > 1]
    unknown = [r for r in found.refs if r not in expected]
    bad = missing or repeated or unknown
    checks.append(
        Check(
            "every input exactly once across the streams",
            not bad,
            f"{len(missing)} missing, {len(repeated)} more than once, {len(unknown)} unknown refs",
            examples([f"missing {r} ({expected[r]})" for r in missing])
            + examples(repeated)
            + examples([f"unknown ref {r!r}" for r in unknown]),
        )
    )
    p = result.progress
    job_mismatch = []
    for what, mine, theirs in (
        ("total", p.total, inputs.total),
        ("processed", p.processed, inputs.total),
        ("published", p.published, found.docs),
        ("exact", p.exact, found.dup_kinds.get("exact", 0)),
        ("near", p.near, found.dup_kinds.get("near", 0)),
        ("dead", p.dead, found.dead),
    ):
        if mine != theirs:
            job_mismatch.append(f"job {what} {mine:,} != {theirs:,}")
    if p.dead_reasons != dict(found.dead_reasons):
        job_mismatch.append(f"job dead reasons {p.dead_reasons} != {dict(found.dead_reasons)}")
    checks.append(
        Check(
            "job counters agree with the streams",
            not job_mismatch,
            "; ".join(job_mismatch) or f"job {result.job_id}",
        )
    )
    checks.append(
        Check(
            "every duplicate points at a published doc",
            not found.dangling,
            f"{len(found.dangling)} duplicates of ids not in docs",
            examples(found.dangling),
        )
    )
    checks.append(
        Check(
            "broker drained, every task done",
            result.drained_ok and p.tasks_done == p.tasks_total,
            f"{p.tasks_done}/{p.tasks_total} tasks done",
        )
    )
    checks.append(
        Check(
            "no batch given up",
            not p.abandoned_tasks,
            f"{p.abandoned_tasks} abandoned (too many starts)",
        )
    )
    checks.append(
        Check(
            "kills happened while the job ran",
            len(result.kills) == args.kills,
            f"{len(result.kills)}/{args.kills}",
        )
    )
    if args.full is not None:
        checks.append(
            Check(
                "Redis refused writes while the job ran (--full)",
                result.full is not None and result.full.refused_at is not None,
                full_detail(result.full),
            )
        )
    checks.append(
        Check(
            "no worker exited on its own",
            not result.unexpected_exits,
            f"{len(result.unexpected_exits)} unexpected exits",
            examples(result.unexpected_exits),
        )
    )
    return checks


# --------------------------------------------------------------------------- report


def copy_outcomes(inputs: Inputs, found: StreamContents) -> str:
    """Where the copies went: a copy in docs was seen before its original (which is then
    the duplicate), or was not similar enough after its edits."""
    parts = []
    for kind in ("edited", "exact"):
        where: Counter[str] = Counter()
        for ref, k in inputs.kinds.items():
            if k == kind:
                where.update(found.ref_stream.get(ref, ["nowhere"]))
        if where:
            detail = ", ".join(f"{n:,} {stream}" for stream, n in where.most_common())
            parts.append(f"{kind} {sum(where.values()):,}: {detail}")
    return "; ".join(parts) or "no copies"


def full_detail(full: FullPhase | None) -> str:
    if full is None:
        return "the job finished before Redis was made full"
    if full.refused_at is None:
        return f"made full at {full.at:.1f}s, but no write was refused"
    released = (
        f"; lifted at {full.released_at:.1f}s ({full.processed_released:,} inputs done)"
        if full.released_at is not None
        else ""
    )
    return (
        f"made full at {full.at:.1f}s ({full.processed:,} inputs done), writes refused from "
        f"{full.refused_at:.1f}s{released}: {full.refused}"
    )


def held_detail(kill: Kill) -> str:
    """Each batch taken and not acknowledged at the kill: its inputs accounted for before
    and after the kill, and when the first one after came. The killed worker's batch
    resumes only when the broker hands it out again (after the visibility timeout with
    `--kill group`); another worker's goes on at once."""
    parts = []
    for batch in kill.held:
        resumed = f" from +{batch.first_after:.0f}s" if batch.first_after is not None else ""
        parts.append(
            f"task {batch.task_index} ({batch.before} inputs before, {batch.after} after{resumed})"
        )
    return ", ".join(parts) or "none"


def attempts_detail(result: RunResult) -> str:
    if result.attempts is None:
        return "not recorded"
    again = {task: n for task, n in result.attempts.items() if n > 1}
    if not again:
        return f"none of {len(result.attempts)}"
    listed = ", ".join(f"task {task} x{n}" for task, n in sorted(again.items()))
    return f"{len(again)}: {listed}"


def published_copies(inputs: Inputs, found: StreamContents) -> str:
    """Why copies ended in docs: seen before their original (which is then their
    duplicate), or published next to an original also in docs (a copy the engine did not
    recognise: edits too heavy for a short text, or for an exact copy, a miss)."""
    parts = []
    for kind in ("edited", "exact"):
        why: Counter[str] = Counter()
        for copy, original in inputs.copy_of.items():
            if inputs.kinds[copy] != kind or found.ref_stream.get(copy) != ["docs"]:
                continue
            copy_id = found.ref_entry[copy][0]
            where = found.ref_stream.get(original, ["nowhere"])
            if where == ["duplicates"] and found.ref_entry[original][1] == copy_id:
                why["before its original"] += 1
            elif where == ["docs"]:
                why["original in docs too"] += 1
            else:
                why[f"original in {'/'.join(where)}, not a duplicate of the copy"] += 1
        if why:
            parts.append(f"{kind}: " + ", ".join(f"{n:,} {r}" for r, n in why.most_common()))
    return "; ".join(parts) or "none"


def error_lines(workers: list[Worker]) -> int:
    count = 0
    for worker in workers:
        for path in worker.all_logs():
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace")
                count += sum(1 for line in text.splitlines() if "ERROR" in line)
    return count


def render(
    args: argparse.Namespace,
    inputs: Inputs,
    found: StreamContents,
    result: RunResult,
    checks: list[Check],
    workers: list[Worker],
    memory: int,
) -> str:
    rows: list[tuple[str, str]] = []
    rows.append(
        (
            "inputs",
            f"{inputs.total:,} ({inputs.count('original'):,} corpus records, "
            f"{inputs.count('edited'):,} edited copies, {inputs.count('exact'):,} exact "
            f"copies; {inputs.files} files)",
        )
    )
    rows.append(("docs", f"{found.docs:,}"))
    kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(found.dup_kinds.items()))
    rows.append(("duplicates", f"{found.duplicates:,}" + (f" ({kinds})" if kinds else "")))
    reasons = ", ".join(f"{k} {n:,}" for k, n in sorted(found.dead_reasons.items()))
    rows.append(("dead", f"{found.dead:,}" + (f" ({reasons})" if reasons else "")))
    rows.append(("docs+dups+dead", f"{found.docs + found.duplicates + found.dead:,}"))
    rows.append(("copies", copy_outcomes(inputs, found)))
    rows.append(("copies in docs", published_copies(inputs, found)))
    for kill in result.kills:
        restart = (
            f", started again {kill.restarted_after:.1f}s later"
            if kill.restarted_after is not None
            else ""
        )
        rows.append(
            (
                f"kill {kill.number}",
                f"at {kill.at:.1f}s, {kill.processed:,}/{kill.total:,} inputs done "
                f"({100 * kill.processed / max(kill.total, 1):.1f}%), {kill.processes} "
                f"process(es){restart}; batches held then: {held_detail(kill)}",
            )
        )
    if result.full is not None:
        rows.append(("full Redis", full_detail(result.full)))
    rows.append(
        (
            "wall time",
            f"{result.wall:.1f}s from backfill start to the last input "
            f"({inputs.total / max(result.wall, 1e-6):.1f} docs/s); drained at "
            f"{result.drained:.1f}s; enqueue {result.enqueue_seconds:.1f}s",
        )
    )
    rows.append(
        (
            "setup",
            f"{args.workers} workers x concurrency 1 on {os.cpu_count()} CPUs, kill mode "
            f"{args.kill}, visibility {args.visibility}s, task limit {args.visibility - 10}s, "
            f"Redis used_memory {memory / 2**20:,.0f} MiB",
        )
    )
    rows.append(("batches started twice+", attempts_detail(result)))
    rows.append(("worker log ERROR lines", str(error_lines(workers))))
    width = max(len(name) for name, _ in rows)
    lines = [f"newsdedup soak, job {result.job_id}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    lines.append("  checks")
    for check in checks:
        lines.append(f"    [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        if not check.ok:
            lines += [f"           {line}" for line in check.examples]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, help=f"inputs ({FULL_DOCS:,}; --quick {QUICK_DOCS:,})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_DOCS:,} inputs")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--kills", type=int, default=2, help="kills of worker w1 (2)")
    parser.add_argument(
        "--kill",
        choices=("group", "child"),
        default="group",
        help="SIGKILL w1's whole process group and start it again (group), or only its "
        "pool child, which Celery replaces and whose task it requeues (child)",
    )
    parser.add_argument(
        "--visibility",
        type=int,
        default=60,
        help="broker visibility timeout, seconds (60); task limits are 10 and 15 s below",
    )
    parser.add_argument(
        "--full",
        type=_full_arg,
        metavar="AT:SECONDS",
        help="at AT (a share of the job, e.g. 0.5) set Redis's maxmemory just above what it "
        "holds; once writes are refused keep it so SECONDS, then lift it",
    )
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs and logs")
    args = parser.parse_args(argv)
    if args.docs is None:
        args.docs = QUICK_DOCS if args.quick else FULL_DOCS
    if args.docs < 1 or args.workers < 1 or args.kills < 0:
        parser.error("--docs and --workers must be positive, --kills not negative")
    if args.visibility < 30:
        parser.error("--visibility must be at least 30 seconds")
    if args.timeout is None:
        args.timeout = max(1800.0, args.docs * 0.1)
    return args


def _full_arg(text: str) -> tuple[float, float]:
    at, _, seconds = text.partition(":")
    try:
        share, hold = float(at), float(seconds or "60")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AT:SECONDS, got {text!r}") from None
    if not 0 < share < 1 or hold < 0:
        raise argparse.ArgumentTypeError("AT must be between 0 and 1, SECONDS not negative")
    return share, hold


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: workers stopped, Redis stopped, files removed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = args.shared.resolve()
    if not shared.is_dir():
        print(f"soak: error: shared data folder {shared} not found", file=sys.stderr)
        return 2
    missing = [name for name in CORPUS_FILES if not (shared / name).exists()]
    if missing:
        print(f"soak: error: missing {', '.join(missing)} in {shared}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)

    work = Path(tempfile.mkdtemp(prefix="ndsoak-"))
    folder, logs = work / "inputs", work / "logs"
    folder.mkdir()
    logs.mkdir()
    failed = True
    try:
        generated = time.monotonic()
        inputs = generate(shared, folder, args.docs, load_edit())
        log(
            f"{inputs.total:,} inputs in {inputs.files} files under {folder} "
            f"({time.monotonic() - generated:.0f}s)"
        )
        with RedisServer("--maxmemory-policy", "noeviction") as server:
            env = soak_env(server.url, work / "data", args.visibility)
            workers = [Worker(f"w{i + 1}", env, logs) for i in range(args.workers)]
            try:
                try:
                    result = run_job(args, inputs, server.client, env, workers)
                except Stuck as exc:
                    print(f"soak: error: {exc}", file=sys.stderr)
                    return 1
                found = read_streams(server.client)
                memory = int(server.client.info("memory")["used_memory"])
            finally:
                for worker in workers:
                    worker.stop()
        checks = run_checks(args, inputs, found, result)
        print(render(args, inputs, found, result, checks, workers, memory), flush=True)
        for check in checks:
            if not check.ok:
                print(f"soak: FAIL: {check.name}: {check.detail}", file=sys.stderr)
        failed = not all(check.ok for check in checks)
        return 1 if failed else 0
    except RuntimeError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("soak: interrupted; workers and Redis stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            log(f"kept {work} (inputs/, logs/)")
        elif failed:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(work / "data", ignore_errors=True)
            log(f"worker logs kept in {logs}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
