"""The embedded Redis from the outside: one server per data dir, shared by the commands
that use it at the same time, and nothing left running once they have ended, however
they end (SIGKILL, SIGTERM while a worker is stuck).

Real CLI processes (`python -m workers.cli`), their real Celery workers and redis-server;
processes are found with psutil. Zombies count as gone: they hold nothing, and where PID
1 reaps orphans late they stay visible for a while.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from conftest import ROOT, cli_env, run_cli
from support import faults
from support.faults import servers_on

from workers.config import Settings

# What a SIGKILLed command may leave running, and for how long: its worker sees it gone
# at once (its lifeline pipe closes), drains and shuts down warm within 10 s
# (EXIT_WITH_COMMAND_GRACE), then the supervisor stops the server within 0.25 s of the
# last user.
GONE_AFTER_SIGKILL = 15.0
# A command stopped with SIGTERM while its worker is stuck: 10 s in all for draining and
# the warm shutdown (WORKER_STOP_GRACE_INTERRUPTED), then SIGKILL for the worker's
# process group.
EXIT_AFTER_SIGTERM = 20.0
SUPERVISOR_GONE_AFTER = 5.0


def write_records(folder: Path, count: int, seed: int) -> Path:
    """`count` distinct articles in one JSONL file (random words, so no two are copies)."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(3000)
    ]
    folder.mkdir(parents=True)
    with (folder / "records.jsonl").open("w", encoding="utf-8") as out:
        for i in range(count):
            text = "\n".join(" ".join(rng.choices(vocabulary, k=40)) for _ in range(4))
            record = {"id": f"r{seed}-{i}", "title": f"story {seed} {i}", "text": text}
            out.write(json.dumps(record) + "\n")
    return folder


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def job_progress(env: dict[str, str], job_id: str | None = None) -> dict[str, object]:
    result = run_cli(["job", *([job_id] if job_id else []), "--json"], env, timeout=120)
    assert result.returncode == 0, result.stderr
    progress: dict[str, object] = json.loads(result.stdout)
    return progress


def wait_for_progress(env: dict[str, str], cli: subprocess.Popen[str], at_least: int) -> int:
    """Wait until the running backfill has processed `at_least` inputs (read by another
    command, attached to the same server); its processed count."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert cli.poll() is None, cli.communicate()
        result = run_cli(["job", "--json"], env, timeout=120)
        if result.returncode == 0:
            processed = int(json.loads(result.stdout)["processed"])
            if processed >= at_least:
                return processed
        time.sleep(0.5)
    raise AssertionError("the backfill made no progress")


def family(cli: subprocess.Popen[str], data_dir: Path) -> list[psutil.Process]:
    """The command, the worker tree it started, the server and the server's supervisor."""
    record = json.loads((data_dir / "redis.json").read_text())
    command = psutil.Process(cli.pid)
    return [
        command,
        *command.children(recursive=True),
        psutil.Process(record["pid"]),
        psutil.Process(record["supervisor"]),
    ]


def wait_all_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [proc for proc in processes if alive(proc)]
        if not left:
            return []
        time.sleep(0.2)
    return [proc for proc in processes if alive(proc)]


@pytest.fixture
def reaper() -> Iterator[list[psutil.Process]]:
    """Processes a test saw; any still running after it (a failed test) are killed."""
    seen: list[psutil.Process] = []
    yield seen
    for proc in seen:
        if alive(proc):
            proc.kill()


def check_data_kept(env: dict[str, str], job_id: str, processed_before: int) -> None:
    """A new command starts a new server on the same files: what the interrupted job
    processed is there (the AOF was written out whole), and a new backfill works."""
    after = job_progress(env, job_id)
    assert int(str(after["processed"])) >= processed_before
    stats = json.loads(run_cli(["stats", "--json"], env, timeout=120).stdout)
    assert stats["seen"] >= processed_before
    assert stats["streams"]["docs"] == after["published"]
    again = run_cli(["backfill", "seeds/"], env)
    assert again.returncode == 0, again.stderr
    assert "5 inputs, 5 published" in again.stdout


def test_two_backfills_at_once_share_one_server(tmp_path: Path) -> None:
    """Issue 15 item 3: two embedded backfills started together on one data dir run on
    one server; both complete with their own counts and both jobs stay readable."""
    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    folders = [write_records(tmp_path / name, 1500, seed) for name, seed in (("a", 1), ("b", 2))]
    commands = [start_cli(["backfill", str(folder)], env) for folder in folders]
    servers: set[int] = set()
    while any(cli.poll() is None for cli in commands):
        running = servers_on(data_dir)
        assert len(running) <= 1, f"two servers on one data dir: {running}"
        servers.update(running)
        time.sleep(0.1)
    outputs = [cli.communicate(timeout=60) for cli in commands]
    job_ids = []
    for cli, (stdout, stderr) in zip(commands, outputs, strict=True):
        assert cli.returncode == 0, stderr
        assert "1500 inputs, 1500 published, 0 exact duplicates, 0 near duplicates, 0 dead" in (
            stdout
        ), stdout
        job_ids.append(stdout.split()[1].rstrip(":"))
    assert len(servers) == 1
    assert job_ids[0] != job_ids[1]
    for job_id in job_ids:
        progress = job_progress(env, job_id)
        assert progress["finished"] is True
        assert (progress["processed"], progress["published"]) == (1500, 1500)
    stats = json.loads(run_cli(["stats", "--json"], env).stdout)
    assert (stats["seen"], stats["published"], stats["streams"]["docs"]) == (3000, 3000, 3000)
    assert servers_on(data_dir) == []
    # Each command's worker ran the other's tasks too; stopping one left no message
    # unacknowledged (it would sit there for the visibility timeout) or queued.
    from workers.ops.embedded import EmbeddedRedis

    server = EmbeddedRedis(data_dir)
    try:
        client = redis.Redis(unix_socket_path=server.socket_path)
        prefix = Settings.model_fields["prefix"].default  # cli_env sets none
        assert client.hlen(f"{prefix}unacked") == 0
        assert client.llen(f"{prefix}ingest") == 0
        client.close()
    finally:
        server.close()


@pytest.mark.slow
def test_sigkill_of_backfill_leaves_nothing_running(
    tmp_path: Path, reaper: list[psutil.Process]
) -> None:
    """Issue 15 item 8: after SIGKILL of `backfill`, its worker tree, the server and the
    server's supervisor are gone within GONE_AFTER_SIGKILL seconds; nothing is lost."""
    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    folder = write_records(tmp_path / "in", 12_000, seed=3)
    cli = start_cli(["backfill", str(folder)], env)
    wait_for_progress(env, cli, at_least=400)
    processes = family(cli, data_dir)
    reaper.extend(processes)
    assert any("celery" in " ".join(proc.cmdline()) for proc in processes[1:])
    job_id = str(job_progress(env)["job_id"])

    cli.kill()
    cli.communicate(timeout=30)
    killed_at = time.monotonic()
    left = wait_all_gone(processes, GONE_AFTER_SIGKILL)
    assert left == [], [(proc.pid, proc.cmdline()) for proc in left]
    print(f"everything gone {time.monotonic() - killed_at:.1f} s after the SIGKILL")
    assert not (data_dir / "redis.json").exists()
    assert servers_on(data_dir) == []

    processed = int(str(job_progress(env, job_id)["processed"]))
    assert 400 <= processed < 12_000
    check_data_kept(env, job_id, processed)


@pytest.mark.slow
def test_sigterm_while_the_worker_is_stuck_stops_everything(
    tmp_path: Path, reaper: list[psutil.Process]
) -> None:
    """Issue 15 item 8: SIGTERM while every pool process is stuck (SIGSTOPped): the
    command exits 130 within EXIT_AFTER_SIGTERM seconds, its worker tree killed, and the
    server is stopped with it."""
    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    folder = write_records(tmp_path / "in", 12_000, seed=4)
    cli = start_cli(["backfill", str(folder)], env)
    wait_for_progress(env, cli, at_least=400)
    processes = family(cli, data_dir)
    reaper.extend(processes)
    (worker,) = [p for p in psutil.Process(cli.pid).children() if "celery" in " ".join(p.cmdline())]
    pool = worker.children()
    assert pool
    for proc in pool:
        proc.send_signal(signal.SIGSTOP)
    job_id = str(job_progress(env)["job_id"])
    processed = int(str(job_progress(env, job_id)["processed"]))

    started = time.monotonic()
    cli.send_signal(signal.SIGTERM)
    _, stderr = cli.communicate(timeout=EXIT_AFTER_SIGTERM + 30)
    took = time.monotonic() - started
    assert cli.returncode == 130, stderr
    assert stderr.strip().endswith("newsdedup: error: interrupted"), stderr
    assert took < EXIT_AFTER_SIGTERM, took
    # The command stopped its worker tree and then the server before it exited; the
    # server's supervisor notices within its poll (0.25 s; seconds on a loaded machine).
    left = wait_all_gone(processes, SUPERVISOR_GONE_AFTER)
    assert left == [], [(proc.pid, proc.cmdline()) for proc in left]
    assert not (data_dir / "redis.json").exists()
    print(f"the command and everything it started gone {took:.1f} s after the SIGTERM")

    check_data_kept(env, job_id, processed)


def test_stale_record_is_replaced(tmp_path: Path) -> None:
    """A record whose server and supervisor are dead (their machine rebooted, say) is
    removed, and a new server is started on the same files."""
    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    assert run_cli(["backfill", "seeds/"], env).returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = {"pid": dead.pid, "supervisor": dead.pid, "socket": str(tmp_path / "gone.sock")}
    (data_dir / "redis.json").write_text(json.dumps(stale))
    stats = run_cli(["stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["published"] == 5
    assert not (data_dir / "redis.json").exists()
    assert servers_on(data_dir) == []


def test_server_no_record_names_is_stopped_before_starting_another(tmp_path: Path) -> None:
    """A redis-server already running on the data dir's files without a record (left by
    an older version, which daemonized it) is stopped, saving, before a new one starts:
    two servers on one AOF would lose writes."""
    from workers.ops.embedded import redis_executable

    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    assert run_cli(["backfill", "seeds/"], env).returncode == 0
    orphan = subprocess.Popen(
        [redis_executable(), "--port", "0", "--unixsocket", str(tmp_path / "orphan.sock"),
         "--dir", str(data_dir.resolve()), "--dbfilename", "redis.db", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while servers_on(data_dir) != [orphan.pid] and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = run_cli(["stats", "--json"], env)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["published"] == 5
        assert orphan.wait(timeout=30) == 0  # a clean shutdown on SIGTERM
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
    assert servers_on(data_dir) == []


def test_server_ends_with_its_supervisor(tmp_path: Path) -> None:
    """The supervisor killed (SIGKILL) while a command uses the server: the server gets
    SIGTERM from Linux, saves and exits; the next command starts a new one on the same
    files and finds the data."""
    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    assert run_cli(["backfill", "seeds/"], env).returncode == 0
    follower = start_cli(["tail", "--follow"], env)
    try:
        deadline = time.monotonic() + 60
        while not (data_dir / "redis.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        record = json.loads((data_dir / "redis.json").read_text())
        server = psutil.Process(record["pid"])
        psutil.Process(record["supervisor"]).kill()
        assert wait_all_gone([server], 30) == []
    finally:
        follower.kill()
        follower.communicate(timeout=30)
    stats = run_cli(["stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["published"] == 5
    assert servers_on(data_dir) == []


# ------------------------------------------------------------------- the AOF's size


def aof_files(data_dir: Path) -> list[Path]:
    """The server's multi-part AOF: a base file (an RDB image after a rewrite), the
    commands appended since, and a manifest naming them."""
    return sorted((data_dir / "appendonlydir").iterdir())


def aof_size(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in aof_files(data_dir))


def test_the_last_user_compacts_the_aof_and_nothing_is_lost(tmp_path: Path) -> None:
    """The AOF stays proportional to the live data. Churn (values
    written and deleted) grows it; the last user's stop rewrites it down to the data,
    and the next start has every live key."""
    import redis

    from workers.ops.embedded import AOF_COMPACT_TAIL, EmbeddedRedis

    data_dir = tmp_path / "data"
    server = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(server.url)
    live = {f"live:{i}": f"value {i}" for i in range(100)}
    client.mset(live)
    junk = b"x" * 100_000
    for i in range(60):  # 6 MB written, none of it live
        client.set(f"junk:{i % 3}", junk)
    client.delete("junk:0", "junk:1", "junk:2")
    grown = aof_size(data_dir)
    assert grown > 5_000_000
    client.close()
    server.close()
    assert servers_on(data_dir) == []
    compacted = aof_size(data_dir)
    assert compacted < 100_000, f"{grown} -> {compacted} bytes"
    (base,) = [path for path in aof_files(data_dir) if ".base." in path.name]
    assert base.read_bytes().startswith((b"REDIS", b"VALKEY"))  # an RDB image
    assert not (data_dir / "redis.db").exists()  # no RDB snapshots: the AOF is the data

    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.url, decode_responses=True)
    try:
        assert client.mget(list(live)) == list(live.values())
        client.set("one:more", "small")
    finally:
        client.close()
        again.close()
    # A stop with little appended leaves the file as it is.
    assert aof_size(data_dir) - compacted < AOF_COMPACT_TAIL


def test_a_backfill_leaves_an_aof_the_size_of_its_data(tmp_path: Path) -> None:
    """A backfill leaves an AOF no larger than a rewrite of its data (an RDB image, which
    loads about ten times faster than replaying the commands that made it)."""
    import redis

    from workers.ops.embedded import AOF_COMPACT_TAIL, EmbeddedRedis

    data_dir = tmp_path / "data"
    env = cli_env(data_dir=data_dir)
    result = run_cli(["backfill", str(write_records(tmp_path / "in", 1500, 7))], env)
    assert result.returncode == 0, result.stderr
    after_backfill = aof_size(data_dir)
    # What a rewrite of the same data gives, for comparison.
    server = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(server.url)
    try:
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
    finally:
        client.close()
        server.close()
    rewritten = aof_size(data_dir)
    assert after_backfill <= rewritten + AOF_COMPACT_TAIL, (after_backfill, rewritten)


def test_a_data_dir_of_the_older_single_file_aof_is_read(tmp_path: Path) -> None:
    """A data dir an older newsdedup wrote (Redis 6.2: one `appendonly.aof` of commands)
    keeps its data: the embedded server takes the file into its multi-part AOF."""
    import redis

    from workers.ops.embedded import EmbeddedRedis

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    commands = [["SELECT", "0"], ["SET", "kept", "yes"], ["XADD", "docs", "1-1", "id", "a"]]
    (data_dir / "appendonly.aof").write_bytes(
        b"".join(
            f"*{len(c)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in c)
            for c in commands
        )
    )
    server = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(server.url)
    try:
        assert client.get("kept") == b"yes" and client.xlen("docs") == 1
    finally:
        client.close()
        server.close()
    assert (data_dir / "appendonlydir").is_dir() and not (data_dir / "appendonly.aof").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB file system of its own (tmpfs), to fill up; unmounted afterwards."""
    with faults.small_file_system(tmp_path / "disk", "16m") as mount_point:
        try:
            yield mount_point
        finally:
            # A test that failed with the disk full leaves a server its supervisor keeps
            # running until it can write: give it room, then stop whatever is left.
            for filler in mount_point.glob("filler*"):
                filler.unlink()
            for pid in faults.servers_left(mount_point / "data", within=20):
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()


def test_writes_a_full_disk_kept_out_of_the_aof_are_not_lost_at_stop(small_disk: Path) -> None:
    """A write whose AOF write fails (the disk full) is acknowledged all the same: Redis
    keeps it in memory and tries the file again every second. The last user's stop then
    leaves the server running with one line that says why (a command: exit 1), and its
    supervisor stops it once the writes are on disk: the next start has every one."""
    import redis

    from workers.ops.connection import RedisUnavailable
    from workers.ops.embedded import EmbeddedRedis

    data_dir = small_disk / "data"
    server = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(server.url)
    client.set("before", "on disk")
    filler = small_disk / "filler"
    faults.fill(filler)
    acknowledged: list[str] = []
    for i in range(100):
        try:
            client.set(f"after:{i}", "x" * 10_000)
        except redis.ResponseError as exc:
            assert "MISCONF" in str(exc)
            break
        acknowledged.append(f"after:{i}")
    assert acknowledged, "no write acknowledged once the disk was full"
    client.close()
    with pytest.raises(RedisUnavailable, match=r"cannot write its AOF .*no space left on the disk"):
        server.close()
    time.sleep(1.0)  # the supervisor looks for users every 0.25 s
    assert servers_on(data_dir) != [], "stopped while holding writes it could not save"

    # A command that ends as the server's last user says so too, in one line, after
    # whatever it printed while it ran (its notice that Redis refuses writes).
    stats = run_cli(["stats"], cli_env(data_dir=data_dir), timeout=60)
    assert stats.returncode == 1, stats.stderr
    assert "cannot write its AOF: No space left on device" in stats.stderr
    last = stats.stderr.strip().splitlines()[-1]
    assert last.startswith("newsdedup: error: the embedded Redis cannot write its AOF"), last

    filler.unlink()
    assert faults.servers_left(data_dir, within=20) == [], "not stopped once its writes were saved"

    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.url, decode_responses=True)
    try:
        assert client.get("before") == "on disk"
        missing = [key for key in acknowledged if not client.exists(key)]
        assert missing == [], f"acknowledged, then lost at the stop: {missing}"
    finally:
        client.close()
        again.close()


def test_an_aof_with_a_hole_a_full_disk_left_is_mended_at_start(tmp_path: Path) -> None:
    """After an AOF rewrite the server appends to a file not opened for appending; a write
    a full disk cut short is truncated away, but the offset stays past the end, so the
    next write, once there is room, leaves zeros before itself, and the server refuses
    the file ("Bad file format"). The next start takes the zeros out and has every key."""
    import redis

    from workers.ops.embedded import EmbeddedRedis

    data_dir = tmp_path / "data"
    server = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.set("before", "1")
    client.close()
    server.close()
    manifest = (data_dir / "appendonlydir" / "appendonly.aof.manifest").read_text()
    incr = [line.split()[1] for line in manifest.splitlines() if line.endswith(" type i")]
    with open(data_dir / "appendonlydir" / incr[-1], "r+b") as tail:
        tail.seek(0, os.SEEK_END)
        tail.seek(3 << 20, os.SEEK_CUR)  # what the short writes' retries moved the offset by
        tail.write(b"*3\r\n$3\r\nSET\r\n$5\r\nafter\r\n$1\r\n2\r\n")

    again = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(again.url, decode_responses=True)
    try:
        assert client.mget("before", "after") == ["1", "2"]
    finally:
        client.close()
        again.close()
    log = (data_dir / "redis.log").read_text()
    assert "Bad file format" in log
    assert f"newsdedup: mended {incr[-1]}: {3 << 20} bytes of zeros" in log
