"""A backfill stopped while it sends its batches (Ctrl-C, SIGTERM, killed) leaves a job
that says so, and `backfill --resume JOB` sends the rest.

Before, a backfill interrupted while sending exited without a word and its job read
`running` for good: `job --wait` waited for batches nobody would send.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisTarget, cli_env, run_cli, start_cli
from support import faults

from workers.index.keys import Keys
from workers.worker import jobs
from workers.worker.jobs import read_progress


@contextlib.contextmanager
def backfill_process(
    folder: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`newsdedup backfill FOLDER` running beside the test, killed if the test leaves it
    running."""
    sender = start_cli(["backfill", str(folder)], env, log)
    try:
        yield sender
    finally:
        if sender.poll() is None:
            sender.kill()


def caught_sending(sender: subprocess.Popen[bytes], broker: redis.Redis, prefix: str) -> None:
    """Wait until a backfill of 3,000 one-input batches has sent 100 of them (they take it
    a few seconds): it is caught sending."""
    deadline = time.monotonic() + 120
    while broker.llen(f"{prefix}ingest") < 100:
        assert sender.poll() is None and time.monotonic() < deadline, "not caught sending"
        time.sleep(0.005)


@pytest.mark.unit
def test_a_job_counts_as_stopped_only_when_its_backfill_said_so_or_went_silent() -> None:
    now = time.time()
    stopped = jobs._sending_stopped  # the rule read_progress applies
    assert not stopped({"sending_at": str(now - 5)})  # still sending
    assert stopped({"sending_at": str(now - jobs.SENDER_GONE_AFTER - 5)})  # gone silent
    assert stopped({"sending_at": str(now), "sending_stopped_at": str(now)})  # said so
    assert not stopped({"sending_at": str(now - 999), "sent_at": str(now)})  # all sent
    assert not stopped({})  # recorded by an older version: never judged


def test_an_interrupted_backfill_is_resumed_with_nothing_lost_or_twice(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    keys = Keys(prefix)
    client = redis_target.client
    env = cli_env(redis_url=redis_target.url, prefix=prefix, NEWSDEDUP_INGEST__BATCH_SIZE="1")
    inputs = faults.write_inputs(tmp_path / "in", 3000, seed=11)
    with backfill_process(inputs.folder, env, tmp_path / "backfill.log") as sender:
        caught_sending(sender, client, prefix)
        os.kill(sender.pid, signal.SIGSTOP)
        job_id = client.zrange(keys.jobs, -1, -1)[0].decode()
        assert client.hget(keys.job(job_id), "sent_at") is None, "sent everything already"
        # Noted after every batch: killed now, at most the one being sent is not counted.
        queued = client.llen(f"{prefix}ingest")
        noted = int(client.hget(keys.job(job_id), "sent_tasks") or 0)
        assert queued - 1 <= noted <= queued, (noted, queued)
        # Paused, not gone: resuming it now would send its batches twice over.
        early = run_cli(["backfill", "--resume", job_id], env)
        assert early.returncode == 1, early.stdout
        assert f"job {job_id} is still being sent by its backfill" in early.stderr
        os.kill(sender.pid, signal.SIGINT)
        os.kill(sender.pid, signal.SIGCONT)
        sender.wait(timeout=60)
    said = (tmp_path / "backfill.log").read_text()
    assert sender.returncode == 130, said
    assert said.startswith(f"newsdedup: error: interrupted while sending job {job_id}: "), said
    assert f"`newsdedup backfill --resume {job_id}` sends the rest" in said
    assert "Traceback" not in said
    progress = read_progress(client, keys, job_id)
    # The batch whose sending the signal cut short may be sent but not counted.
    assert progress.sending_stopped and queued - 1 <= progress.sent_tasks < 3000, progress

    shown = run_cli(["job", job_id, "--json"], env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["sending_stopped"] is True
    with faults.running_workers(env, tmp_path, 1, "WARNING"):
        # What was sent runs; then `job --wait` says why the job goes no further.
        waited = run_cli(["job", job_id, "--wait"], env, timeout=300)
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert f"job {job_id}: its backfill stopped after sending " in waited.stderr
        stopped = run_cli(["job", job_id], env)
        assert stopped.stdout.startswith(f"stopped job {job_id}: 3000 inputs, "), stopped.stdout
        resumed = run_cli(["backfill", "--resume", job_id, "--wait"], env, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert resumed.stdout.startswith(f"job {job_id}: 3000 inputs, "), resumed.stdout
        again = run_cli(["backfill", "--resume", job_id], env)
        assert again.returncode == 1 and "sent every batch" in again.stderr, again.stderr
        faults.wait_until(
            lambda: faults.job_settled(client, keys, job_id),
            120,
            "the job settled",
            faults.JobLogs(client, keys, tmp_path, job_id),
        )
    faults.check_accounting(client, keys, job_id, inputs, env)


def job_state_once(
    sender: subprocess.Popen[bytes], env: dict[str, str], reached: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """`job --json` of the latest job once it has `reached` a state, while the backfill
    `sender` still runs (within two minutes)."""
    deadline = time.monotonic() + 120
    while True:
        assert sender.poll() is None and time.monotonic() < deadline, "the state never came"
        shown = run_cli(["job", "--json"], env)
        if shown.returncode == 0:
            state: dict[str, Any] = json.loads(shown.stdout)
            if reached(state):
                return state
        time.sleep(0.05)


def test_an_embedded_backfill_interrupted_while_waiting_is_finished_by_resume(
    tmp_path: Path,
) -> None:
    """On the embedded server the backfill runs the worker: interrupted after sending
    every batch, it leaves them queued with no worker. `job` says how to go on, and
    `backfill --resume` runs a worker that finishes the job (it refused: "sent every
    batch"), with every input accounted for once."""
    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_INGEST__BATCH_SIZE="1")
    inputs = faults.write_inputs(tmp_path / "in", 600, seed=5)
    with backfill_process(inputs.folder, env, tmp_path / "backfill.log") as sender:
        state = job_state_once(sender, env, lambda job: job["sent_tasks"] == job["tasks_total"])
        os.kill(sender.pid, signal.SIGINT)
        sender.wait(timeout=120)
    job_id = state["job_id"]
    left = json.loads(run_cli(["job", job_id, "--json"], env).stdout)
    assert left["processed"] < left["total"] == 600, left
    waited = run_cli(["job", job_id, "--wait", "--timeout", "3"], env, timeout=60)
    assert f"`newsdedup backfill --resume {job_id}` runs one" in waited.stderr, waited.stderr
    resumed = run_cli(["backfill", "--resume", job_id, "--json"], env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["processed"] == report["total"] == 600, report
    counts = [len(stream(env, name)) for name in ("docs", "duplicates", "dead")]
    assert sum(counts) == 600, counts


def stream(env: dict[str, str], name: str) -> list[str]:
    done = run_cli(["tail", "--stream", name, "--from-start", "--json"], env)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_two_resumes_of_one_job_cannot_both_send(redis_target: RedisTarget, prefix: str) -> None:
    """Two `backfill --resume` of a stopped job started at the same moment both read it
    stopped: one takes the sending over, the other is refused (both sent every unsent
    batch)."""
    from workers.worker.jobs import Sending

    keys = Keys(prefix)
    client = redis_target.client
    job_id = "20261207T000000-resume"
    client.hset(
        keys.job(job_id),
        mapping={"kind": "backfill", "tasks_total": 10, "sent_tasks": 4, "sending_at": 1.0},
    )
    first, second = (Sending(client, keys, job_id) for _ in range(2))
    assert read_progress(client, keys, job_id).sending_stopped
    assert first.take_over()
    assert not second.take_over()
    assert not read_progress(client, keys, job_id).sending_stopped


def test_a_broker_lost_while_sending_is_named_as_the_broker(
    tmp_path: Path, redis_target: RedisTarget, prefix: str, private_redis: faults.PrivateRedis
) -> None:
    """The data Redis fine, the separate broker gone mid-send: the backfill waits, saying
    that the broker is unreachable (it said "Redis")."""
    env = cli_env(
        redis_url=redis_target.url,
        prefix=prefix,
        BROKER_URL=private_redis.url,
        NEWSDEDUP_INGEST__BATCH_SIZE="1",
    )
    inputs = faults.write_inputs(tmp_path / "in", 3000, seed=13)
    broker = redis.Redis.from_url(private_redis.url)
    with backfill_process(inputs.folder, env, tmp_path / "backfill.log") as sender:
        caught_sending(sender, broker, prefix)
        private_redis.stop(signal.SIGKILL)
        faults.wait_until(
            lambda: "blocked:" in (tmp_path / "backfill.log").read_text(),
            60,
            "the backfill said it is blocked",
            lambda: (tmp_path / "backfill.log").read_text(),
        )
        os.kill(sender.pid, signal.SIGINT)
        sender.wait(timeout=60)
    said = (tmp_path / "backfill.log").read_text()
    assert "blocked: the Celery broker is unreachable" in said, said


def _lose_one_message(data_dir: Path, job_id: str) -> None:
    """One batch's message gone from the broker, as when the worker was killed between
    Redis popping it (BRPOP) and recording it unacknowledged: a message the killed worker
    held (else a queued one) of a batch that has not ended (one that ended before its
    acknowledgement needs nothing more)."""
    from workers.config import Settings
    from workers.ops.embedded import EmbeddedRedis
    from workers.worker.jobs import batch_of_task_id

    prefix = Settings.model_fields["prefix"].default  # cli_env sets none
    server = EmbeddedRedis(data_dir)
    try:
        client = redis.Redis(unix_socket_path=server.socket_path)
        pending = {int(i) for i in client.hkeys(Keys(prefix).job_plan(job_id))}

        def unended(message: dict[str, Any]) -> bool:
            return batch_of_task_id(message["headers"]["id"]) in {(job_id, i) for i in pending}

        held = {
            tag: json.loads(entry)[0] for tag, entry in client.hgetall(f"{prefix}unacked").items()
        }
        queued = [(raw, json.loads(raw)) for raw in client.lrange(f"{prefix}ingest", 0, -1)]
        tag = next((tag for tag, message in held.items() if unended(message)), None)
        if tag is not None:
            client.hdel(f"{prefix}unacked", tag)
            client.zrem(f"{prefix}unacked_index", tag)
        else:
            raw = next(raw for raw, message in queued if unended(message))
            assert client.lrem(f"{prefix}ingest", 1, raw) == 1
        client.close()
    finally:
        server.close()


def test_an_embedded_job_whose_worker_was_killed_resumes_at_once(tmp_path: Path) -> None:
    """A backfill killed with its worker (SIGKILL: a crash, the machine lost) leaves the
    batches that worker held in the broker's unacknowledged hash, and may lose the one it
    was taking (popped by Redis, not yet recorded as held). The next command that finds
    itself the embedded server's only user knows no worker holds them, and puts them
    back, and sends the lost one again, at once: `backfill --resume` finishes long
    before the visibility timeout (15 minutes), or the lost-batch sweep's stall
    (`worker.lost_batch_after`, 2 minutes), would have brought them back."""
    import psutil

    env = cli_env(data_dir=tmp_path / "data", NEWSDEDUP_INGEST__BATCH_SIZE="5")
    inputs = faults.write_inputs(tmp_path / "in", 2000, seed=7)
    with backfill_process(inputs.folder, env, tmp_path / "backfill.log") as sender:
        state = job_state_once(
            sender,
            env,
            lambda job: job["sent_tasks"] == job["tasks_total"] and job["processed"] >= 100,
        )
        workers = psutil.Process(sender.pid).children()
        assert workers, "the backfill runs no worker"
        for worker in workers:
            os.killpg(worker.pid, signal.SIGKILL)
        sender.kill()
        sender.wait(timeout=60)
    job_id = state["job_id"]
    left = json.loads(run_cli(["job", job_id, "--json"], env).stdout)
    assert left["processed"] < left["total"] == 2000, left
    _lose_one_message(tmp_path / "data", job_id)
    started = time.monotonic()
    resumed = run_cli(["backfill", "--resume", job_id, "--json"], env, timeout=300)
    took = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["processed"] == report["total"] == 2000, report
    assert report["resent_tasks"] >= 1, report  # the one lost here, and any the kill lost
    assert took < 100, f"the resume took {took:.0f} s: it waited for the held or lost batches"
    counts = [len(stream(env, name)) for name in ("docs", "duplicates", "dead")]
    assert sum(counts) == 2000, counts
