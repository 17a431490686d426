"""Poison inputs: a batch whose worker hits a time limit or dies loses none of its inputs.

Real worker processes on the test Redis, with time limits lowered so that one giant
document (about 20 MB of text: far more work than a few seconds) is the poison. The other
inputs of its batch must still be published, the giant must end in `dead` with a reason,
and the job must finish with every input accounted for exactly once.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from conftest import SEEDS, RedisTarget, cli_env, run_cli, start_worker, stop_workers
from support.settings import settings_for

from workers.index.keys import Keys
from workers.ingest.plan import plan_backfill
from workers.ops.connection import as_text
from workers.worker.batches import MAX_ATTEMPTS, BatchRun, Suspect
from workers.worker.jobs import read_progress
from workers.worker.runtime import Runtime, build_runtime


def make_folder(folder: Path) -> int:
    """The five seeds and one giant article between them; returns the number of inputs."""
    folder.mkdir()
    for path in sorted(SEEDS.glob("*.txt")):
        shutil.copy(path, folder / path.name)
    words = " ".join(p.read_text("utf-8") for p in SEEDS.glob("*.txt")).split()
    rng = random.Random(7)
    lines = (" ".join(rng.choice(words) for _ in range(30)) for _ in range(120_000))
    (folder / "3_giant.txt").write_text("عنوان طويل جدا\n" + "\n".join(lines), "utf-8")
    return 6


def stream_entries(target: RedisTarget, prefix: str, name: str) -> list[dict[str, str]]:
    raw = target.client.xrange(Keys(prefix).stream(name))
    return [{as_text(k): as_text(v) for k, v in fields.items()} for _, fields in raw]


def run_poisoned_backfill(
    tmp_path: Path, target: RedisTarget, prefix: str, **limits: str
) -> tuple[dict[str, object], str]:
    inputs = make_folder(tmp_path / "in")
    env = cli_env(redis_url=target.url, prefix=prefix, NEWSDEDUP_INGEST__BATCH_SIZE="3", **limits)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "poison", log)
    try:
        enqueued = run_cli(["backfill", str(tmp_path / "in")], env)
        assert enqueued.returncode == 0, enqueued.stderr
        assert f"enqueued {inputs} inputs" in enqueued.stdout
        waited = run_cli(["job", "--wait"], env, timeout=240)
        assert waited.returncode == 0, waited.stderr + log.read_text()
        progress = json.loads(run_cli(["job", "--json"], env).stdout)
    finally:
        stop_workers([worker])
    return progress, log.read_text()


def check_accounting(
    target: RedisTarget, prefix: str, progress: dict[str, object]
) -> dict[str, str]:
    docs = stream_entries(target, prefix, "docs")
    dead = stream_entries(target, prefix, "dead")
    assert progress["total"] == 6
    assert (progress["published"], progress["dead"]) == (5, 1), progress
    assert len(docs) == 5 and len({d["id"] for d in docs}) == 5
    assert not any("giant" in d["input_ref"] for d in docs)
    assert len(dead) == 1 and dead[0]["input_ref"].endswith("3_giant.txt"), dead
    return dead[0]


def test_soft_time_limit_sends_the_slow_input_to_dead_and_keeps_the_rest(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    progress, log = run_poisoned_backfill(
        tmp_path,
        redis_target,
        prefix,
        NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT="3",
        NEWSDEDUP_WORKER__TASK_TIME_LIMIT="60",
        NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT="120",
    )
    dead = check_accounting(redis_target, prefix, progress)
    assert dead["reason"] == "time_limit", dead
    assert progress["dead_reasons"] == {"time_limit": 1}
    assert "3_giant.txt -> dead (time_limit)" in log, log[-2000:]


def test_worker_killed_on_the_same_input_twice_sends_it_to_dead(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    """The OOM killer (or a hard time limit, or a crash in C code) takes the worker process
    down in the middle of the giant, three times: once in the fast run, then in two careful
    runs that name it in the job's cursor. The next run sends it to dead; nothing else of
    its batch is lost or published twice."""
    inputs = make_folder(tmp_path / "in")
    env = cli_env(
        redis_url=redis_target.url,
        prefix=prefix,
        NEWSDEDUP_INGEST__BATCH_SIZE="3",
        NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT="120",
        NEWSDEDUP_WORKER__TASK_TIME_LIMIT="150",
        NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT="300",
    )
    log = tmp_path / "worker.log"
    worker = start_worker(env, "victim", log)
    client, keys = redis_target.client, Keys(prefix)
    kills: list[str] = []
    try:
        enqueued = run_cli(["backfill", str(tmp_path / "in")], env)
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = enqueued.stdout.split()[1].rstrip(":")
        cursor_key = keys.job_cursor(job_id)

        def kill_pool_child() -> None:
            children = psutil.Process(worker.pid).children()
            assert children, "the worker has no pool process"
            for child in children:
                child.send_signal(signal.SIGKILL)

        # Fast run: the first batch (three seeds) is done, the giant's batch is under way.
        deadline = time.monotonic() + 120
        while int(client.hget(keys.job(job_id), "published") or 0) < 3:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        time.sleep(3)
        kill_pool_child()
        kills.append("fast")
        # Careful runs: kill whenever the cursor names the giant.
        while len(kills) < 3:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            named = client.hget(cursor_key, "1")
            if named and "3_giant.txt" in as_text(named):
                time.sleep(1)
                kill_pool_child()
                kills.append(as_text(named))
                while client.hget(cursor_key, "1") == named:  # the next start moves it on
                    time.sleep(0.1)
            time.sleep(0.1)
        waited = run_cli(["job", "--wait"], env, timeout=240)
        assert waited.returncode == 0, waited.stderr + log.read_text()[-3000:]
        progress = json.loads(run_cli(["job", "--json"], env).stdout)
    finally:
        stop_workers([worker])
    assert inputs == 6
    dead = check_accounting(redis_target, prefix, progress)
    assert dead["reason"] == "worker_lost", (dead, kills)
    assert progress["dead_reasons"] == {"worker_lost": 1}
    assert "3_giant.txt -> dead (worker_lost)" in log.read_text()


def test_hard_time_limit_puts_the_batch_back_and_the_input_goes_to_dead(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    # Soft and hard limits together: the pool process is killed at the limit (the hard
    # limit wins), and Celery puts the message back rather than acknowledging it.
    progress, log = run_poisoned_backfill(
        tmp_path,
        redis_target,
        prefix,
        NEWSDEDUP_WORKER__TASK_SOFT_TIME_LIMIT="4",
        NEWSDEDUP_WORKER__TASK_TIME_LIMIT="4",
        NEWSDEDUP_WORKER__VISIBILITY_TIMEOUT="60",
    )
    dead = check_accounting(redis_target, prefix, progress)
    assert dead["reason"] in ("worker_lost", "time_limit"), dead
    assert "Hard time limit" in log, log[-3000:]


# In-process: the careful run's bookkeeping, without Celery.


@dataclass
class Careful:
    """A runtime on the test Redis and a folder of the five seeds, one of them `victim`."""

    runtime: Runtime
    keys: Keys
    client: redis.Redis
    folder: Path
    victim: str

    def left_behind(self, job_id: str, attempts: int, cursor: Suspect | None = None) -> None:
        """What earlier starts of task 0 left: their count and the cursor."""
        self.client.hset(self.keys.job_attempts(job_id), "0", attempts)
        if cursor is not None:
            self.client.hset(self.keys.job_cursor(job_id), "0", cursor.to_json())

    def start(self, job_id: str, retries: int = 0) -> BatchRun:
        (task,) = plan_backfill([self.folder], batch_size=100).tasks
        batch = BatchRun(self.runtime, job_id, 0, task, None, retries=retries)
        batch.begin()
        return batch


@pytest.fixture
def careful(tmp_path: Path, redis_target: RedisTarget, prefix: str) -> Careful:
    folder = tmp_path / "seeds"
    folder.mkdir()
    for path in sorted(SEEDS.glob("*.txt")):
        shutil.copy(path, folder / path.name)
    runtime = build_runtime(settings_for(prefix), redis_target.url)
    victim = sorted(p.name for p in folder.iterdir())[2]
    return Careful(runtime, Keys(prefix), redis_target.client, folder, victim)


def test_a_second_start_runs_carefully_and_redoes_nothing(careful: Careful) -> None:
    first = careful.start("j1")
    assert (first.attempt, first.careful) == (1, False)
    assert first.run().counts() == {"published": 5}
    again = careful.start("j1")
    assert (again.attempt, again.careful) == (2, True)
    assert again.run().outcomes == []  # every input found in the done set, none re-read
    assert careful.client.hget(careful.keys.job_cursor("j1"), "0") is None
    assert careful.client.xlen(careful.keys.docs) == 5


def test_an_ended_batch_leaves_the_done_set_and_is_not_run_again(careful: Careful) -> None:
    first = careful.start("j6")
    assert first.run().counts() == {"published": 5}
    done = careful.keys.job_done("j6")
    assert careful.client.zcard(done) == 5  # guarded input by input while it runs
    first.finish()
    assert careful.client.zcard(done) == 0  # the ended batch guards them now
    assert careful.client.sismember(careful.keys.job_tasks("j6"), "0")
    again = careful.start("j6")  # a delivery whose ack a crash cut off
    assert (again.ended, again.careful) == (True, True)
    assert again.run().outcomes == []
    again.finish()
    assert careful.client.xlen(careful.keys.docs) == 5
    assert careful.client.zcard(done) == 0


def test_a_careful_run_takes_what_it_skipped_out_of_the_done_set(careful: Careful) -> None:
    careful.start("j7").run()  # died before its end: every input in the done set
    again = careful.start("j7")
    assert again.run().outcomes == []
    again.finish()
    assert careful.client.zcard(careful.keys.job_done("j7")) == 0


def test_the_input_named_by_the_cursor_twice_goes_to_dead(careful: Careful) -> None:
    # Two earlier starts: the second, careful, died with the cursor on `victim`, which a
    # careful start before it had also died on once.
    careful.left_behind("j2", 2, Suspect(careful.victim, "", "", 1))
    batch = careful.start("j2")
    assert batch.suspect == Suspect(careful.victim, "", "", 2)
    assert batch.run().counts() == {"published": 4, "dead": 1}
    (dead,) = careful.client.xrange(careful.keys.stream("dead"))
    assert as_text(dead[1][b"input_ref"]) == careful.victim
    assert as_text(dead[1][b"reason"]) == "worker_lost"


def test_one_death_on_an_input_gives_it_another_chance(careful: Careful) -> None:
    careful.left_behind("j3", 1, Suspect(careful.victim, "", "", 0))
    assert careful.start("j3").run().counts() == {"published": 5}


def test_a_batch_started_too_often_is_given_up_and_says_so(careful: Careful) -> None:
    careful.client.hset(careful.keys.job("j4"), mapping={"total": 5, "tasks_total": 1})
    careful.left_behind("j4", MAX_ATTEMPTS)
    assert careful.start("j4").run().outcomes == []
    progress = read_progress(careful.client, careful.keys, "j4")
    assert (progress.abandoned_tasks, progress.tasks_done, progress.finished) == (1, 1, False)


def test_a_run_that_ended_in_a_retry_is_no_strike(careful: Careful) -> None:
    # The careful run before this one was at retry 1 and ended by sending retry 2 (Redis
    # went away under it): the input its cursor names did not kill it.
    careful.left_behind("j5", 3, Suspect(careful.victim, "", "", 1, retries=1))
    batch = careful.start("j5", retries=2)
    assert batch.suspect == Suspect(careful.victim, "", "", 1, retries=2)
    assert batch.run().counts() == {"published": 5}


@pytest.mark.parametrize("late_began", ["first", "second"])
def test_a_copy_still_running_when_its_batch_ends_accounts_for_nothing(
    careful: Careful, late_began: str
) -> None:
    """Two deliveries of one batch at once (a redelivery or a resend beside the first
    delivery, two `backfill --resume` of one job): the copy that ends first accounts for
    every input and takes them out of the done set; the other, begun before that end (at
    full speed or carefully), finds the batch ended, not its inputs new: nothing is
    published, counted or sent anywhere twice."""
    job = f"j-race-{late_began}"
    if late_began == "first":
        late, ending = careful.start(job), careful.start(job)
    else:
        ending, late = careful.start(job), careful.start(job)
    assert not late.ended
    assert ending.run().counts() == {"published": 5}
    ending.finish()
    assert late.run().counts() in ({}, {"already": 5})
    late.finish()
    keys = careful.keys
    assert careful.client.xlen(keys.docs) == 5
    assert careful.client.xlen(keys.duplicates) == 0
    assert careful.client.xlen(keys.stream("dead")) == 0
    counts = careful.client.hgetall(keys.job(job))
    assert int(counts[b"published"]) == 5
    assert not {b"exact", b"near", b"dead"} & set(counts)
