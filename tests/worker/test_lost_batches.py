"""Backfill batches whose message was lost on its way to a worker (workers/worker/lost.py):
found by the workers' sweep and sent again, and only those.

The sweep's rules are checked against a real Redis holding messages written by kombu's
own producer, with the clock passed in; the whole path with two real workers whose
connection to Redis is cut just as a BRPOP reply carries a batch to one of them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisTarget, cli_env, run_cli
from kombu import Connection, Exchange, Queue
from support.faults import (
    BrpopReplyCutter,
    JobLogs,
    PrivateRedis,
    check_accounting,
    enqueue,
    job_settled,
    needs_redis_server,
    running_workers,
    wait_until,
    worker_logs,
    write_inputs,
)
from support.loopback import LoopbackServer

from workers.index.keys import Keys
from workers.ingest.plan import Plan, plan_backfill
from workers.ops.connection import broker_for
from workers.worker import lost
from workers.worker.app import FETCH_QUEUE, INGEST_QUEUE
from workers.worker.broker import Transport
from workers.worker.jobs import (
    Sending,
    batch_of_task_id,
    batch_task_id,
    new_job_id,
    plan_entry,
    read_progress,
    record_job,
    spec_of_plan_entry,
)
from workers.worker.lost import LostBatchSweep, LostPolls, Watch, observe, unseen_twice

AFTER = 60.0
T0 = time.time()  # the sweeps' clock starts now (jobs are kept for a week), passed in


# ------------------------------------------------------------------------------ pure parts


@pytest.mark.unit
def test_batch_task_ids_name_their_job_and_batch() -> None:
    job = "20261207T010203-a1b2c3"
    assert batch_task_id(job, 7) == f"{job}/7"
    assert batch_task_id(job, 7, 2) == f"{job}/7/r2"
    assert batch_of_task_id(batch_task_id(job, 7)) == (job, 7)
    assert batch_of_task_id(batch_task_id(job, 7, 2)) == (job, 7)
    for other in ("9f1c5e0e-3b9a-4c47-8a55-0d4c2b8f1e11", f"{job}/x", "", "a/b/c/d"):
        assert batch_of_task_id(other) is None


@pytest.mark.unit
def test_the_plan_keeps_a_batch_of_single_files_in_a_fraction_of_its_message() -> None:
    paths = [{"path": f"2026/12/07/world/article-{n:05d}.html"} for n in range(200)]
    spec = {"root": "/data/archive/ممتلكات", "inputs": 200, "locations": paths}
    entry = plan_entry(spec)
    assert spec_of_plan_entry(entry) == spec
    assert len(entry) < len(json.dumps(spec)) / 5


@pytest.mark.unit
def test_the_clock_restarts_on_progress_and_only_twice_unseen_batches_are_lost() -> None:
    first = observe(None, (10, 1), T0)
    assert first == Watch((10, 1), T0)
    assert observe(first, (10, 1), T0 + 5) is first  # no progress: the clock runs on
    assert observe(first, (11, 1), T0 + 5) == Watch((11, 1), T0 + 5)
    assert observe(first, (10, 2), T0 + 5) == Watch((10, 2), T0 + 5)
    # Not found at the previous look and not now: lost. Found now, or ended: not.
    watch = Watch((10, 1), T0, unseen=(2, 3, 4))
    assert unseen_twice(watch.unseen, due={2, 3, 5}, in_broker={3}) == [2]
    assert unseen_twice((), due={2}, in_broker=set()) == []
    assert Watch.from_json(watch.to_json()) == watch


# ------------------------------------------------------------------------------ the sweep


@dataclass
class Job:
    id: str
    plan: Plan
    keys: Keys
    client: redis.Redis
    broker_url: str
    sent: list[tuple[str, int, dict[str, Any], str | None, str]]

    def sweep(self, after: float = AFTER) -> LostBatchSweep:
        def send(job: str, index: int, spec: dict[str, Any], source: str | None, tid: str) -> None:
            self.sent.append((job, index, spec, source, tid))

        client = redis.Redis.from_url(self.broker_url.replace("redis+socket://", "unix://"))
        return LostBatchSweep(self.client, client, self.keys, (INGEST_QUEUE,), after, send)

    def queue_message(self, task_index: int) -> bytes:
        """A message of the batch, queued by kombu's own producer, as Celery sends it;
        returns it as stored."""
        queue = Queue(INGEST_QUEUE, Exchange(INGEST_QUEUE, type="direct"), INGEST_QUEUE)
        options = {"global_keyprefix": self.keys.prefix}
        with Connection(self.broker_url, transport=Transport, transport_options=options) as conn:
            conn.Producer().publish(
                {"args": [self.id, task_index]},
                exchange=queue.exchange,
                routing_key=INGEST_QUEUE,
                declare=[queue],
                headers={"id": batch_task_id(self.id, task_index), "task": "x"},
            )
        raw: bytes = self.client.lindex(self.keys.prefix + INGEST_QUEUE, 0)  # type: ignore[assignment]
        return raw

    def deliver_unacknowledged(self, task_index: int) -> None:
        """The batch's message taken by a worker and not acknowledged: in kombu's unacked
        hash, as its QoS records it."""
        raw = self.queue_message(task_index)
        self.client.lrem(self.keys.prefix + INGEST_QUEUE, 1, raw)
        message = json.loads(raw)
        tag = message["properties"]["delivery_tag"]
        entry = json.dumps([message, INGEST_QUEUE, INGEST_QUEUE])
        self.client.hset(self.keys.prefix + "unacked", tag, entry)

    def end(self, task_index: int) -> None:
        """The batch ended, as BatchRun.finish records it."""
        pipe = self.client.pipeline()
        pipe.sadd(self.keys.job_tasks(self.id), task_index)
        pipe.hdel(self.keys.job_plan(self.id), str(task_index))
        pipe.execute()


def make_job(tmp_path: Path, target: RedisTarget, prefix: str, *, sent: bool = True) -> Job:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        (folder / f"{n}.txt").write_text(f"Article {n}\n\nIts text, number {n}.\n", "utf-8")
    plan = plan_backfill([folder], batch_size=1)
    assert len(plan.tasks) == 3
    keys, job_id = Keys(prefix), new_job_id()
    record_job(target.client, keys, job_id, plan, [str(folder)], "backfill", "my source")
    if sent:
        sending = Sending(target.client, keys, job_id)
        sending.sent(len(plan.tasks))
        sending.finished()
    return Job(job_id, plan, keys, target.client, broker_for(target.url), [])


@pytest.fixture
def job(tmp_path: Path, redis_target: RedisTarget, prefix: str) -> Iterator[Job]:
    yield make_job(tmp_path, redis_target, prefix)


def test_batches_found_nowhere_are_sent_again_after_the_stall(job: Job) -> None:
    sweep = job.sweep()
    assert sweep.sweep(T0) == []  # the clock starts
    assert sweep.sweep(T0 + AFTER - 1) == []  # not stalled long enough
    assert sweep.sweep(T0 + AFTER) == []  # stalled: batches not found, noted
    assert sweep.sweep(T0 + AFTER + 1) == [(job.id, 0), (job.id, 1), (job.id, 2)]
    assert [(index, spec, source, tid) for _, index, spec, source, tid in job.sent] == [
        (i, job.plan.tasks[i].to_json(), "my source", f"{job.id}/{i}/r{i + 1}") for i in range(3)
    ]
    assert read_progress(job.client, job.keys, job.id).resent_tasks == 3
    # Sent: they get a new stall period to run in before they are looked for again.
    assert sweep.sweep(T0 + AFTER + 2) == []
    assert sweep.sweep(T0 + 2 * AFTER + 1) == []
    assert len(job.sent) == 3


def test_batches_queued_held_or_ended_are_never_sent_again(job: Job) -> None:
    job.queue_message(0)
    job.deliver_unacknowledged(1)
    job.end(2)
    sweep = job.sweep()
    for now in (T0, T0 + AFTER, T0 + AFTER + 1, T0 + 3 * AFTER):
        assert sweep.sweep(now) == []
    assert job.sent == []


def test_progress_restarts_the_clock(job: Job) -> None:
    sweep = job.sweep()
    sweep.sweep(T0)
    sweep.sweep(T0 + AFTER)  # stalled, batches noted as not found
    job.client.hincrby(job.keys.job(job.id), "published", 1)  # then the job moves
    assert sweep.sweep(T0 + AFTER + 1) == []
    assert sweep.sweep(T0 + 2 * AFTER) == []
    assert sweep.sweep(T0 + 2 * AFTER + 1) == []  # noted again
    assert len(sweep.sweep(T0 + 2 * AFTER + 2)) == 3


def test_a_job_still_being_sent_is_left_alone(
    tmp_path: Path, redis_target: RedisTarget, prefix: str
) -> None:
    job = make_job(tmp_path, redis_target, prefix, sent=False)
    sweep = job.sweep()
    for now in (T0, T0 + AFTER, T0 + AFTER + 1, T0 + 3 * AFTER):
        assert sweep.sweep(now) == []


def test_one_worker_sweeps_at_a_time(job: Job) -> None:
    other = job.client.lock(job.keys.sweep_lock, timeout=60)
    assert other.acquire(blocking=False)
    try:
        sweep = job.sweep()
        for now in (T0, T0 + AFTER, T0 + AFTER + 1):
            assert sweep.sweep(now) == []
        assert job.client.get(job.keys.job_watch(job.id)) is None
    finally:
        other.release()


def test_with_no_worker_a_batch_found_nowhere_is_sent_again_at_once(
    tmp_path: Path, redis_target: RedisTarget, prefix: str, job: Job
) -> None:
    """The embedded server's only user (no worker runs): one look, no stall, no second
    look, and no sweep lock (a killed worker may have left it held); batches queued, held
    or ended, and jobs still being sent, are left alone."""
    job.queue_message(0)
    job.deliver_unacknowledged(1)
    (tmp_path / "unsent").mkdir()
    make_job(tmp_path / "unsent", redis_target, prefix, sent=False)  # still being sent
    killed_worker = job.client.lock(job.keys.sweep_lock, timeout=60)
    assert killed_worker.acquire(blocking=False)
    sweep = job.sweep()
    try:
        assert sweep.sweep_with_no_worker() == [(job.id, 2)]
    finally:
        sweep.stop()
    assert [(j, index, tid) for j, index, _, _, tid in job.sent] == [(job.id, 2, f"{job.id}/2/r1")]
    job.end(2)
    assert job.sweep().sweep_with_no_worker() == []


def test_a_queue_too_long_to_read_defers_the_look(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    job.queue_message(0)
    monkeypatch.setattr(lost, "SCAN_LIMIT", 0)
    sweep = job.sweep()
    for now in (T0, T0 + AFTER, T0 + AFTER + 1):
        assert sweep.sweep(now) == []
    monkeypatch.setattr(lost, "SCAN_LIMIT", 10)
    assert sweep.sweep(T0 + AFTER + 2) == []  # read now: 1 and 2 noted
    assert sweep.sweep(T0 + AFTER + 3) == [(job.id, 1), (job.id, 2)]


def test_a_waited_on_poll_is_sent_again_only_when_the_broker_holds_it_nowhere(
    redis_target: RedisTarget, prefix: str
) -> None:
    queue = Queue(FETCH_QUEUE, Exchange(FETCH_QUEUE, type="direct"), FETCH_QUEUE)
    options = {"global_keyprefix": prefix}
    url = broker_for(redis_target.url)
    with Connection(url, transport=Transport, transport_options=options) as conn:
        conn.Producer().publish(
            {}, exchange=queue.exchange, routing_key=FETCH_QUEUE, declare=[queue],
            headers={"id": "queued-poll", "task": "newsdedup.poll_feed"},
        )  # fmt: skip
    now = [T0]
    resent: list[str] = []
    broker = redis.Redis.from_url(url.replace("redis+socket://", "unix://"))
    polls = LostPolls(broker, prefix, (FETCH_QUEUE,), AFTER, resent.append, lambda: now[0])
    waiting = {"queued-poll", "lost-poll"}
    for now[0] in (T0, T0 + polls.every, T0 + AFTER):  # sent; not yet due; due: noted
        assert polls.check(waiting) == []
    now[0] = T0 + AFTER + polls.every
    assert polls.check(waiting) == ["lost-poll"] and resent == ["lost-poll"]
    now[0] += polls.every
    assert polls.check(waiting) == []  # sent again: due again only after AFTER
    polls.close()


# ------------------------------------------------------------------------------ end to end


@needs_redis_server
def test_a_batch_whose_delivery_the_network_cut_off_is_run(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    """Redis pops a batch's message for a worker and the connection is cut before the reply
    arrives: the message is in no queue and no unacked hash. Without the sweep the job
    would wait for ever; with it, the batch runs and every input is accounted for once."""
    cutter = BrpopReplyCutter(private_redis.port)
    prefix = "lost:"
    keys = Keys(prefix)
    env = cli_env(
        redis_url=cutter.url,
        prefix=prefix,
        NEWSDEDUP_INGEST__BATCH_SIZE="50",
        NEWSDEDUP_WORKER__LOST_BATCH_AFTER="5",
    )
    client = redis.Redis.from_url(private_redis.url)
    logs = JobLogs(client, keys, tmp_path)
    try:
        with running_workers(env, tmp_path, 2, "WARNING"):
            inputs = write_inputs(tmp_path / "in", 1000, seed=3)
            cutter.armed = 1
            job_id = logs.job_id = enqueue(inputs, env)
            wait_until(lambda: job_settled(client, keys, job_id), 120, "the job settled", logs)
            assert cutter.cut == 1
            progress = read_progress(client, keys, job_id)
            assert progress.resent_tasks == 1, logs()
            check_accounting(client, keys, job_id, inputs, env)
            assert "1 batch lost on the way to a worker" in worker_logs(tmp_path)
            assert client.hlen(keys.job_plan(job_id)) == 0  # every batch ended
    finally:
        client.close()
        cutter.close()


FEED = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Wire</title><link>https://example.com/</link>
<item><title>Port reopens after the storm</title><link>https://example.com/a/1</link>
<guid>https://example.com/a/1</guid><description>The port reopened on Monday after three
days of closure, the authority said, and the first ships were unloading by noon.
</description></item>
<item><title>Council approves the budget</title><link>https://example.com/a/2</link>
<guid>https://example.com/a/2</guid><description>The city council approved next year's
budget by nine votes to four after a debate that lasted into the night.</description></item>
</channel></rss>"""


@needs_redis_server
def test_a_poll_whose_delivery_the_network_cut_off_is_sent_again(
    tmp_path: Path, private_redis: PrivateRedis, loopback: LoopbackServer
) -> None:
    """`newsdedup poll --wait` against running workers: the poll's message is popped for
    the worker and the reply cut. The command sends it again under the same task id, and
    its report comes back with every entry published once."""
    cutter = BrpopReplyCutter(private_redis.port)
    loopback.serve("/feed.xml", FEED)
    env = cli_env(
        redis_url=cutter.url,
        prefix="lostpoll:",
        NEWSDEDUP_ALLOW_PRIVATE_NETWORKS="1",
        NEWSDEDUP_FEEDS__HOST_DELAY="0",
        NEWSDEDUP_WORKER__LOST_BATCH_AFTER="3",
    )
    try:
        with running_workers(env, tmp_path, 1, "WARNING"):
            cutter.armed = 1
            args = ["poll", loopback.url("/feed.xml"), "--fetch-article", "never", "--json"]
            result = run_cli([*args, "--wait", "--timeout", "120"], env, timeout=180)
        assert result.returncode == 0, result.stderr + worker_logs(tmp_path)
        assert cutter.cut == 1
        assert "the poll's message was lost on the way to a worker; sent again" in result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert (report["outcome"], report["new"], report["published"]) == ("polled", 2, 2)
        assert len(loopback.requests("/feed.xml")) == 1  # the lost message never ran
    finally:
        cutter.close()
