"""The Celery application. Every setting here is deliberate (docs/operations.md, "Worker
settings").

Documents never travel in messages: a task carries a job id and the locations of a batch
of inputs (paths, line ranges), so messages stay small and a redelivered task re-reads
the same inputs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from functools import cache
from types import FrameType
from typing import TYPE_CHECKING, Any

import kombu.transport
from celery import Celery, signals
from kombu.entity import Exchange, Queue

from workers.config import Settings, process_settings, use_settings
from workers.ops.connection import (
    RedisUnavailable,
    broker_for,
    broker_ssl_options,
    located_settings,
)
from workers.ops.processes import exit_with_parent, set_parent_death_signal

if TYPE_CHECKING:
    app: Celery
    from workers.worker.lost import LostBatchSweep, SendBatch

INGEST_QUEUE = "ingest"
FETCH_QUEUE = "fetch"


# A Redis broker keeps every message while Redis refuses writes (workers/worker/broker.py).
kombu.transport.TRANSPORT_ALIASES.update(
    redis="workers.worker.broker:Transport", rediss="workers.worker.broker:Transport"
)


def make_app(settings: Settings) -> Celery:
    """The app on `settings`' Redis and broker (`settings.redis_url` is set)."""
    assert settings.redis_url, "locate Redis first (located_settings)"
    broker = settings.broker_url or broker_for(settings.redis_url)
    app = Celery("newsdedup", broker=broker, include=["workers.worker.tasks"])
    limits = settings.worker
    app.conf.update(
        # JSON only: a broker message can never make a worker unpickle anything.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        event_serializer="json",
        # Progress and outcomes live in Redis (job hashes, streams), not in a result backend.
        task_ignore_result=True,
        # Ack after the task ran: a worker killed mid-task leaves the message to be
        # redelivered; tasks are idempotent per input (the job's done set), so that is safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: long batches are not hoarded by one worker.
        worker_prefetch_multiplier=1,
        task_time_limit=limits.task_time_limit,
        task_soft_time_limit=limits.task_soft_time_limit,
        task_default_queue=INGEST_QUEUE,
        # Each queue bound to its own exchange and key: declared bare, both took the
        # default exchange's key ("ingest"), so a message published to that exchange and
        # key would have landed in both.
        task_queues=tuple(
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (INGEST_QUEUE, FETCH_QUEUE)
        ),
        task_routes={
            "newsdedup.ingest_batch": {"queue": INGEST_QUEUE},
            "newsdedup.poll_feed": {"queue": FETCH_QUEUE},
        },
        # The schedule is built from config/feeds.toml and kept in memory (no shelve file,
        # so nothing is pickled); a Redis lock refuses a second beat (workers/feeds/schedule.py).
        beat_scheduler="workers.feeds.schedule:FeedScheduler",
        beat_max_loop_interval=15,
        # Redis restarting or failing over (docs/operations.md, "Faults and persistence"): a
        # worker that loses the broker reconnects (2 s, 4 s, ... then every 30 s) and never
        # gives up, however long Redis is away; exiting after Celery's default 100 attempts
        # (about 45 minutes) would leave the queue to whatever restarts workers.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # Tasks running when the connection drops finish and are acknowledged on the new
        # connection. Cancelling them instead (Celery 6's default) would leave their
        # messages in Redis's unacked hash until the visibility timeout, an hour.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Sending waits for the broker for about two minutes, not Celery's 0.6 s: a task's
        # autoretry sends its retry while Redis may still be down, and a retry that cannot
        # be sent makes Celery drop the message (Reject, requeue=False) and its inputs.
        task_publish_retry_policy={
            "max_retries": 30,
            "interval_start": 0,
            "interval_step": 1,
            "interval_max": 5,
        },
        # rediss://: TLS options from the URL's ssl_* parameters, the certificate checked
        # unless ssl_cert_reqs says otherwise (kombu alone would not check it).
        broker_use_ssl=broker_ssl_options(broker),
        broker_transport_options={
            # Longer than the hard time limit, or Redis would hand a running task to a
            # second worker.
            "visibility_timeout": limits.visibility_timeout,
            # Look for messages whose visibility timeout has passed every 10 s, not
            # kombu's default of every 10th 10-second tick (100 s).
            "unacked_restore_throttle": 1,
            # Queue keys live under our prefix so `newsdedup reset` and tests stay scoped.
            "global_keyprefix": settings.prefix,
        },
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return app


def _app_settings() -> Settings:
    """This process's settings on the Redis it is to use. A worker a `newsdedup` command
    started was told (REDIS_URL); `celery -A workers ...` run by hand finds it the same
    way the commands do, or ends with one line, never trying a server nobody named."""
    try:
        return use_settings(located_settings(process_settings()))
    except RedisUnavailable as exc:
        raise SystemExit(f"newsdedup: error: {exc}") from None


@cache
def _the_app() -> Celery:
    return make_app(_app_settings())


def __getattr__(name: str) -> Any:
    # `app` is built on first use, not on import: importing this module for make_app or
    # the queue names must not need a Redis.
    if name == "app":
        return _the_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A worker started by a command (`backfill` and `poll` on the embedded Redis) ends with that
# command, even one killed with SIGKILL: a warm shutdown, then after this many seconds
# SIGKILL for its process group. Celery already gives each pool process SIGKILL when
# its main process dies.
EXIT_WITH_COMMAND_GRACE = 10.0


# The worker's consumer, once it consumes (`_remember_consumer`): draining stops it.
_consumer: Any = None


@signals.worker_ready.connect
def _remember_consumer(sender: Any = None, **_: Any) -> None:
    global _consumer
    _consumer = sender


def _drain(until: float) -> None:
    """Stop taking messages, then wait (up to the monotonic time `until`) until every task
    this worker received has finished and been acknowledged.

    A warm shutdown alone is not enough for a worker that holds messages: Celery discards
    a received task the pool has not yet accepted, billiard's pool process runs it anyway
    and then waits 30 s for the main process to read its result, and a worker killed in
    that time leaves the message unacknowledged in Redis until the visibility timeout. When
    two commands share the embedded server, that message may be another command's, which
    then waits for it."""
    try:
        _stop_taking_and_wait(until)
    finally:
        _drained.set()


# Set once a drain has run: a stop signal after it goes to Celery's handler at once.
_drained = threading.Event()

_LOOP_RESPONDS_WITHIN = 3.0


def _stop_taking_and_wait(until: float) -> None:
    from celery.worker import state

    consumer = _consumer
    if consumer is None:  # not consuming yet: nothing received
        return
    cancelled = threading.Event()

    def cancel() -> None:
        # On the worker's event loop, which owns the consumer (call_soon is thread-safe).
        try:
            for queue in [queue.name for queue in consumer.task_consumer.queues]:
                consumer.cancel_task_queue(queue)
        finally:
            cancelled.set()

    consumer.call_soon(cancel)
    # An event loop that does not run the cancel within seconds is not running (the
    # broker is away and the consumer reconnecting): nothing can be finished through it,
    # so the drain ends and the warm shutdown follows at once, as it would without it.
    if not cancelled.wait(max(min(until - time.monotonic(), _LOOP_RESPONDS_WITHIN), 0.0)):
        return
    # A request leaves reserved_requests once it has run, in the call that acknowledges it.
    while state.reserved_requests and time.monotonic() < until:
        time.sleep(0.05)


@signals.worker_init.connect
def _end_with_the_command(**_: Any) -> None:
    exit_with_parent(EXIT_WITH_COMMAND_GRACE, _drain)


SignalHandler = Callable[[int, FrameType | None], Any]


class _DrainThenStop:
    """SIGTERM and Ctrl-C in a worker's main process: drain first (`_drain`, in a thread,
    while the event loop goes on reading results and acknowledging), then hand the same
    signal to Celery's handler, whose warm shutdown finds nothing left to wait for.

    Celery's warm shutdown alone, on a signal that lands as a message is received, leaves
    that task to billiard's 30 s wait for a result nobody reads: the stop takes over 30 s
    (past docker's 10 s grace) and the message waits unacknowledged until it is restored.
    A second signal while draining goes to Celery's handler at once (warm shutdown now; a
    third Ctrl-C is its cold shutdown), as does a signal after a drain that already ran
    (`exit_with_parent` drains, then sends SIGTERM)."""

    def __init__(self, celery_handlers: Mapping[int, SignalHandler], limit: float):
        self._celery_handlers = celery_handlers
        self._limit = limit
        self._draining = False
        self._handed_over = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._draining or _drained.is_set():
            self._handed_over = True
            self._celery_handlers[signum](signum, frame)
            return
        self._draining = True
        threading.Thread(
            target=self._drain_then_stop, args=(signum,), name="drain-then-stop", daemon=True
        ).start()

    def _drain_then_stop(self, signum: int) -> None:
        logging.getLogger(__name__).warning(
            "stopping: no more messages; finishing the tasks received (again to stop now)"
        )
        try:
            _drain(time.monotonic() + self._limit)
        finally:
            if not self._handed_over:
                os.kill(os.getpid(), signum)


@signals.worker_ready.connect
def _drain_on_stop_signals(**_: Any) -> None:
    celery_handlers: dict[int, SignalHandler] = {}
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(stop_signal)
        # Not our own again, should the consumer report ready once more.
        if callable(handler) and not isinstance(handler, _DrainThenStop):
            celery_handlers[stop_signal] = handler
    if not celery_handlers or threading.current_thread() is not threading.main_thread():
        return
    # Running tasks end within the hard time limit; a drain that cannot finish (the
    # broker gone, so nothing can be acknowledged) leaves the rest to the warm shutdown.
    stop = _DrainThenStop(
        celery_handlers, process_settings().worker.task_time_limit + _DRAIN_PAST_TIME_LIMIT
    )
    for signum in celery_handlers:
        signal.signal(signum, stop)


# Past the hard time limit, a killed task's request is acknowledged within about a second.
_DRAIN_PAST_TIME_LIMIT = 5.0


# Each worker's heartbeat in the data Redis (workers/worker/presence.py), so that a command
# waiting for its tasks can say when no worker consumes their queue.
_heartbeat: Any = None


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    global _heartbeat
    from workers.index.keys import Keys
    from workers.worker.presence import Heartbeat, heartbeat_client, worker_info
    from workers.worker.runtime import worker_redis_url

    settings = process_settings()
    try:
        queues = [queue.name for queue in sender.task_consumer.queues]
    except AttributeError:  # no task consumer (yet): the queues it was told to consume
        queues = list(sender.app.amqp.queues.consume_from or ())
    client = heartbeat_client(worker_redis_url(settings))
    _heartbeat = Heartbeat(client, Keys(settings.prefix), worker_info(sender.hostname, queues))
    _heartbeat.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


# Each worker's sweep for backfill batches whose message was lost on its way to a worker
# (workers/worker/lost.py); only with a Redis broker, the one transport with that window.
_lost_sweep: Any = None


def send_batch_again(
    job_id: str,
    task_index: int,
    spec: dict[str, Any],
    default_source: str | None,
    task_id: str,
    *,
    connection: Any = None,
) -> None:
    """Send a backfill batch's task again (`SendBatch`), through the app's producer pool
    or the given broker connection."""
    from workers.worker.tasks import ingest_batch

    ingest_batch.apply_async(
        args=(job_id, task_index, spec, default_source), task_id=task_id, connection=connection
    )


def lost_batch_sweep(
    settings: Settings, data_url: str, send: SendBatch = send_batch_again
) -> LostBatchSweep | None:
    """The lost-batch sweep for the data Redis at `data_url` and the settings' broker (its
    own clients, closed by `stop`), sending with `send`; None when the broker is not
    Redis."""
    from workers.index.keys import Keys
    from workers.worker.broker import broker_redis_url
    from workers.worker.lost import LostBatchSweep
    from workers.worker.presence import heartbeat_client

    broker_url = broker_redis_url(settings.broker_url or data_url)
    if broker_url is None:
        return None
    return LostBatchSweep(
        heartbeat_client(data_url),
        heartbeat_client(broker_url),
        Keys(settings.prefix),
        (INGEST_QUEUE,),
        settings.worker.lost_batch_after,
        send,
    )


@signals.worker_ready.connect
def _start_lost_sweep(sender: Any = None, **_: Any) -> None:
    global _lost_sweep
    from workers.worker.runtime import worker_redis_url

    settings = process_settings()
    _lost_sweep = lost_batch_sweep(settings, worker_redis_url(settings))
    if _lost_sweep is not None:
        _lost_sweep.start()


@signals.worker_shutdown.connect
def _stop_lost_sweep(**_: Any) -> None:
    global _lost_sweep
    if _lost_sweep is not None:
        _lost_sweep.stop()
        _lost_sweep = None


# A soft time limit is for the task that is running. Celery's timer for it runs in the
# worker's main process, which hears that a task ended only while its event loop runs:
# after the broker connection was down past a task's soft limit (Redis refusing even PING
# on a full disk when the network dropped it), the timer fires on reconnecting for a task
# that has ended, and billiard's handler raises in the idle pool process, which exits with
# a traceback and is replaced. Between tasks that signal is passed over.
_task_running = False
_own_soft_limit_handler = False
_main_pid = os.getpid()  # a pool process forked from the worker inherits it


@signals.task_prerun.connect
def _task_starts(**_: Any) -> None:
    global _task_running, _own_soft_limit_handler
    if not _own_soft_limit_handler and os.getpid() != _main_pid:
        # In place of billiard's, which a pool process installs once it has run its
        # initializer (worker_process_init would be too early). Not in the main process
        # (a solo or threads pool): SIGUSR1 is Celery's there.
        from billiard.pool import SIG_SOFT_TIMEOUT

        if SIG_SOFT_TIMEOUT is not None:
            signal.signal(SIG_SOFT_TIMEOUT, _soft_time_limit)
        _own_soft_limit_handler = True
    _task_running = True


@signals.task_postrun.connect
def _task_ends(**_: Any) -> None:
    global _task_running
    _task_running = False


def _soft_time_limit(signum: int, frame: Any) -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    if _task_running:
        raise SoftTimeLimitExceeded()
    logging.getLogger(__name__).info("a soft time limit came after its task ended: ignored")


@signals.beat_embedded_init.connect
def _end_with_the_worker(**_: Any) -> None:
    # `newsdedup run`: the beat runs in a child of the worker's main process and must not
    # go on sending polls when that process is killed.
    set_parent_death_signal(signal.SIGKILL)
