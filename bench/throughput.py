"""End-to-end throughput as a user sees it, against the stock datasketch script, one run.

On a private redis-server (the machine's redis-server 7 when there is one, else the
embedded valkey-server), on the same JSONL file of N SaudiNewsNet articles in date order
(default 10,000):

- the stock script (`../shared/bench/stock_datasketch.py`: datasketch MinHash +
  MinHashLSH on Redis, query then insert, XADD; no cleaning at all);
- `newsdedup worker --concurrency 1` (started and ready beforehand, as a user's worker
  runs continuously) plus `newsdedup backfill --wait FILE`, timed from the backfill
  command's start to its exit;

alternating, `--reps` times each (default 3), Redis emptied before every run; medians.
With `--gz`, each rep also backfills the same articles as one .jsonl.gz with one worker.
Then the same backfill with `--concurrency 2`, and the CPU-bound reference
(`../shared/bench/minhash_only.py`: datasketch's MinHash.update_batch over the same
texts, no Redis). For every run: Redis CPU per document (INFO cpu, user + sys, before
and after). After a newsdedup run: every key Redis holds but the three streams, by key
class, per published document.

Run from the repository root on a quiet machine: `.venv/bin/python bench/throughput.py`.
A ratio measured while something else loads the machine is noise, not a result.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._redis import RedisServer
from workers.index.keys import STREAM_NAMES

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = "corpus/saudinewsnet.jsonl.gz"
PREFIX = "newsdedup:"
GZ_LABEL = "newsdedup c1 .jsonl.gz"


def log(message: str) -> None:
    print(f"throughput: {message}", file=sys.stderr, flush=True)


def write_input(shared: Path, path: Path, count: int) -> int:
    """The first `count` SaudiNewsNet articles with text, in date order (their ids start
    with the date), as JSONL with the fields both sides read."""
    records = []
    with gzip.open(shared / CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            if isinstance(raw.get("text"), str) and raw["text"].strip():
                records.append(raw)
    records.sort(key=lambda r: (str(r.get("date_extracted") or ""), str(r["id"])))
    with path.open("w", encoding="utf-8") as out:
        for raw in records[:count]:
            record = {
                "id": raw["id"],
                "source": raw.get("source") or "",
                "url": raw.get("url") or "",
                "title": raw.get("title") or "",
                "date": raw.get("date_extracted") or "",
                "author": raw.get("author") or "",
                "text": raw["text"],
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return min(count, len(records))


def redis_executable() -> str | None:
    """The machine's redis-server when there is one (what users run), else None."""
    return shutil.which("redis-server")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_cpu(server: RedisServer) -> float:
    info = server.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass(slots=True)
class Run:
    label: str
    docs: int
    seconds: float
    redis_cpu_us: float  # Redis CPU per document, microseconds
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class Results:
    runs: dict[str, list[Run]] = field(default_factory=dict)
    memory: list[tuple[str, int, int]] = field(default_factory=list)  # class, keys, bytes
    published: int = 0
    minhash_only: list[float] = field(default_factory=list)  # docs/s
    commands: list[tuple[str, int, float]] = field(default_factory=list)  # name, calls, usec

    def add(self, run: Run) -> None:
        self.runs.setdefault(run.label, []).append(run)
        log(
            f"{run.label}: {run.docs:,} docs in {run.seconds:.2f}s = {run.rate:,.0f} docs/s, "
            f"Redis {run.redis_cpu_us:.0f} us/doc {run.detail}"
        )

    def median(self, label: str) -> Run:
        runs = sorted(self.runs[label], key=lambda r: r.rate)
        return runs[len(runs) // 2]


def run_stock(server: RedisServer, file: Path, shared: Path) -> Run:
    server.client.flushall()
    before = redis_cpu(server)
    out = subprocess.run(
        [sys.executable, str(shared / "bench" / "stock_datasketch.py"), str(server.tcp_port),
         "0", str(file)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = redis_cpu(server) - before
    docs = int(result["docs"])
    return Run("stock", docs, float(result["wall"]), cpu / docs * 1e6, f"({result['dups']} dups)")


class Worker:
    """`newsdedup worker` against the private server, started and ready before timing."""

    def __init__(self, env: dict[str, str], concurrency: int, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--concurrency", str(concurrency),
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log_path}")
            time.sleep(0.1)
        time.sleep(0.5)  # its pool processes finish importing

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def descendants(parent: int) -> list[int]:
    """Every process below `parent`: the worker's Celery process and its pool."""
    found = [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
    return found + [pid for child in found for pid in descendants(child)]


class Profiler:
    """py-spy sampling the worker's pool processes (not the main process, which only
    hands out messages) for the length of one backfill; `summary` ranks functions."""

    def __init__(self, pids: list[int], out: Path) -> None:
        self.out = out
        self.procs = [self._spy(pid) for pid in pids]
        time.sleep(1.0)  # py-spy attaches

    def _spy(self, pid: int) -> subprocess.Popen[bytes]:
        spy = str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
        return subprocess.Popen(
            [*command, "--output", f"{self.out}.{pid}.raw"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            proc.wait(timeout=60)

    def summary(self, top: int = 30) -> str:
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for raw in self.out.parent.glob(f"{self.out.name}.*.raw"):
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = stack.split(";")
                # Idle pool processes wait in a read; only time spent working counts.
                if any("_recv" in f or "poll (" in f or "select (" in f for f in frames[-2:]):
                    continue
                total += int(count)
                own[_frame(frames[-1])] += int(count)
                for frame in {_frame(f) for f in frames}:
                    inclusive[_frame(frame)] += int(count)
        lines = [f"{total} busy samples at 250 Hz (idle waits left out)", "", "self:"]
        lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
        lines += ["", "inclusive:"]
        lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
        return "\n".join(lines)


def _frame(frame: str) -> str:
    """ "function (path:line)" -> "function (path)": lines of one function together."""
    return re.sub(r":\d+\)$", ")", frame.replace(str(ROOT) + "/", ""))


def run_newsdedup(
    server: RedisServer,
    file: Path,
    env: dict[str, str],
    concurrency: int,
    logs: Path,
    profile: Path | None = None,
    label: str = "",
) -> Run:
    server.client.flushall()
    server.client.config_resetstat()
    worker = Worker(env, concurrency, logs / f"worker-c{concurrency}.log")
    profiler = Profiler(descendants(worker.proc.pid), profile) if profile else None
    try:
        before = redis_cpu(server)
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "workers.cli", "backfill", "--wait", "--json", str(file)],
            env=env, cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        cpu = redis_cpu(server) - before
    finally:
        if profiler:
            profiler.stop()
        worker.stop()
    if profiler and profile:
        profile.write_text(profiler.summary() + "\n")
        log(f"profile of the pool process: {profile}")
    if out.returncode != 0:
        raise RuntimeError(f"backfill failed: {out.stderr.strip()[-500:]}")
    try:
        report = json.loads(out.stdout)
    except ValueError:
        raise RuntimeError(f"unexpected backfill output: {out.stdout.strip()!r}") from None
    docs, published = int(report["total"]), int(report["published"])
    return Run(
        label or f"newsdedup c{concurrency}",
        docs,
        seconds,
        cpu / docs * 1e6,
        f"({published} published)",
    )


def key_class(name: str) -> str:
    """A key's family: its name under the prefix with the variable parts generalised."""
    name = re.sub(r"[0-9a-f]{32}", "<source>", name)
    name = re.sub(r"\d{8}T\d{6}-[0-9a-f]{6}", "<job>", name)
    return re.sub(r":\d+$", ":<n>", name)


def command_times(server: RedisServer) -> list[tuple[str, int, float]]:
    """(command, calls, microseconds) from INFO commandstats, most time first: what the
    Redis server's CPU went to, scripts' inner commands included (and in EVALSHA too)."""
    stats = server.client.info("commandstats")
    found = [
        (name.removeprefix("cmdstat_"), int(v["calls"]), float(v["usec"]))
        for name, v in stats.items()
    ]
    return sorted(found, key=lambda item: -item[2])


def memory_by_class(server: RedisServer) -> tuple[list[tuple[str, int, int]], int]:
    """(class, keys, bytes) of every key but the streams, and the documents published."""
    client = server.client
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    streams = {PREFIX + name for name in STREAM_NAMES}
    for raw in client.scan_iter(match="*", count=1000):
        key = raw.decode("utf-8", "replace")
        if key in streams:
            continue
        name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
        cls = key_class(name)
        sizes[cls] += int(client.memory_usage(raw, samples=0) or 0)
        counts[cls] += 1
    published = int(client.xlen(PREFIX + "docs"))
    return [(cls, counts[cls], size) for cls, size in sizes.most_common()], published


def run_minhash_only(file: Path, shared: Path) -> float:
    out = subprocess.run(
        [sys.executable, str(shared / "bench" / "minhash_only.py"), str(file)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["docs"]) / float(result["cpu"])


def render(results: Results, args: argparse.Namespace, version: str) -> str:
    stock = results.median("stock")
    one = results.median("newsdedup c1")
    two = results.median("newsdedup c2") if "newsdedup c2" in results.runs else None
    minhash = statistics.median(results.minhash_only) if results.minhash_only else 0.0
    lines = [
        f"bench/throughput.py: {args.docs:,} SaudiNewsNet articles in date order, redis "
        f"{version}, {os.cpu_count()} CPUs; medians of {args.reps} alternating reps",
        "",
        "| | docs/s | x stock | x MinHash-only | Redis CPU per doc | reps (docs/s) |",
        "|---|---|---|---|---|---|",
    ]

    def row(name: str, label: str) -> str:
        median = results.median(label)
        reps = ", ".join(f"{r.rate:,.0f}" for r in results.runs[label])
        vs_minhash = f"{median.rate / minhash:.2f}x" if minhash else "-"
        return (
            f"| {name} | {median.rate:,.0f} | {median.rate / stock.rate:.2f}x | {vs_minhash} "
            f"| {median.redis_cpu_us:.0f} us | {reps} |"
        )

    lines.append(row("stock script (datasketch MinHashLSH on Redis, no cleaning)", "stock"))
    lines.append(row("newsdedup worker --concurrency 1 + backfill --wait", "newsdedup c1"))
    if two is not None:
        lines.append(row("newsdedup worker --concurrency 2 + backfill --wait", "newsdedup c2"))
    if GZ_LABEL in results.runs:
        lines.append(row("the same, one worker, input as one .jsonl.gz", GZ_LABEL))
    if minhash:
        lines.append(
            f"| MinHash only (datasketch update_batch, one core, no Redis; CPU time) "
            f"| {minhash:,.0f} | | 1.00x | | "
            + ", ".join(f"{r:,.0f}" for r in results.minhash_only)
            + " |"
        )
    lines.append("")
    if two is not None:
        lines.append(f"two worker processes: {two.rate / one.rate:.2f}x one process")
    total = sum(size for _, _, size in results.memory)
    per_doc = total / results.published if results.published else 0.0
    lines.append(
        f"non-stream Redis memory after a newsdedup run: {total:,} B for "
        f"{results.published:,} published documents = {per_doc:,.0f} B per published document"
    )
    lines.append("")
    lines.append("| key class | keys | bytes | B per published doc |")
    lines.append("|---|---|---|---|")
    for cls, keys, size in results.memory:
        share = size / results.published if results.published else 0.0
        if share >= 0.5:
            lines.append(f"| {cls} | {keys:,} | {size:,} | {share:,.1f} |")
    if results.commands:
        docs = results.runs["newsdedup c1"][0].docs
        lines += ["", "Redis time by command in the first one-worker run (INFO commandstats;", ""]
        lines[-2] += " a script's commands are counted in it and again on their own):"
        lines += ["| command | calls per doc | us per doc |", "|---|---|---|"]
        for name, calls, usec in results.commands[:14]:
            lines.append(f"| {name} | {calls / docs:,.2f} | {usec / docs:,.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=10_000, help="articles (10,000)")
    parser.add_argument("--reps", type=int, default=3, help="alternating reps (3)")
    parser.add_argument("--no-two", action="store_true", help="skip the --concurrency 2 runs")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the worker's processes during the first one-worker run; summary here",
    )
    parser.add_argument(
        "--gz",
        action="store_true",
        help="each rep also backfills the same articles as one .jsonl.gz (one worker)",
    )
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--keep", action="store_true", help="keep the input file and logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    shared = args.shared.resolve()
    if not (shared / CORPUS).exists():
        print(f"throughput: error: {shared / CORPUS} not found", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ndthroughput-"))
    try:
        file = work / "articles.jsonl"
        args.docs = write_input(shared, file, args.docs)
        log(f"{args.docs:,} articles in {file}")
        gz_file = work / "gz" / "articles.jsonl.gz"
        if args.gz:
            gz_file.parent.mkdir()
            with file.open("rb") as plain, gzip.open(gz_file, "wb") as packed:
                shutil.copyfileobj(plain, packed)
        server = RedisServer(
            "--maxmemory-policy", "noeviction", tcp_port=free_port(), executable=redis_executable()
        )
        with server:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")},
                "REDIS_URL": server.tcp_url,
                "NEWSDEDUP_DATA_DIR": str(work / "data"),
            }
            env.pop("BROKER_URL", None)
            results = Results()
            for rep in range(args.reps):
                log(f"rep {rep + 1}/{args.reps}")
                results.add(run_stock(server, file, shared))
                profile = args.profile.resolve() if args.profile and rep == 0 else None
                results.add(run_newsdedup(server, file, env, 1, work, profile))
                if rep == 0:
                    results.commands = command_times(server)
                    server.drop_other_clients()
                    results.memory, results.published = memory_by_class(server)
                if args.gz:
                    results.add(run_newsdedup(server, gz_file, env, 1, work, label=GZ_LABEL))
            if not args.no_two:
                for _ in range(args.reps):
                    results.add(run_newsdedup(server, file, env, 2, work))
            for _ in range(args.reps):
                results.minhash_only.append(run_minhash_only(file, shared))
                log(f"MinHash only: {results.minhash_only[-1]:,.0f} docs/s (CPU time)")
            version = server.version()
        print(render(results, args, version), flush=True)
        return 0
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
