"""The Celery broker on Redis: kombu's Redis transport, made to keep every message while
Redis refuses writes (full under `noeviction`, read-only, loading).

kombu's transport emulates acknowledgements with an "unacked" hash: a message popped from
its queue is written there before the worker runs it, removed on ack, and pushed back to
the queue on a requeue or after the visibility timeout. With Redis full, each of those
steps fails in the stock transport, and three of the failures lose or stall work:

- delivery: the message is already popped (BRPOP takes no memory, so a full Redis allows
  it) when writing it to the unacked hash is refused; the message is gone. Here the
  write is retried until Redis takes it: the worker waits, holding the one message. When
  the connection itself drops between the pop and that write (Redis stopping or
  crashing just then), the message is kept in memory and pushed back onto its queue on
  the next connection.
- ack: ZREM and HDEL take no memory, but kombu sends them in MULTI, which a full Redis
  refuses whole; the error stops the worker ("Unrecoverable error"). Here they go without
  MULTI, the hash entry first: a crash between the two leaves an index entry that names
  no message, which the restore skips.
- requeue: pushing the message back needs memory. Here a refused requeue leaves the
  message in the unacked hash, where the visibility-timeout restore finds it once Redis
  takes writes again, instead of stopping the worker.

A server that cannot write its AOF or snapshot (a full disk: MISCONF) refuses every
write and PING too, which no other outage does, and the stock transport stops the worker
on each refusal ("Unrecoverable error"). The worker waits instead, without reconnecting
(a new channel's first command is a PING, refused as well):

- its BRPOP is refused, nothing popped: the next one goes after a pause that grows while
  the refusals last;
- the broker's health-check PING on the fanout connection is refused: the subscription
  stands, and the refusal is passed over;
- an ack (or a reject without requeue) is refused: it is sent once Redis takes writes, as
  one a lost connection cut off;
- a new channel's PING is refused: Celery retries the connection, as for an unreachable
  server.

And two that only delay work, by the visibility timeout, when the connection is lost:
an ack cut off leaves a finished batch in the unacked hash, and the messages the worker
had taken but not started stay there too (kombu pushes them back when the old channel
closes, which fails while Redis is away). Here the worker sends such acks, and pushes
back such messages, on its next connection (the hash is the same for every connection).

`celery_app` makes this the transport for redis:// and rediss:// broker URLs.

One loss no transport-side care can prevent: BRPOP pops the message in Redis, and a
reply that never reaches the worker (a connection cut just then, or Redis killed after
its pop reached the AOF) leaves it nowhere. `broker_task_ids` lets the workers see which
messages the broker holds, so that the job a lost message belonged to sends that batch
again (workers/worker/lost.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from queue import Empty
from typing import Any

import redis
from kombu.transport import virtual
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from kombu.transport.redis import QoS as RedisQoS
from kombu.transport.redis import Transport as RedisTransport

from workers.messages import counted
from workers.ops.connection import is_outage, outage_reason

log = logging.getLogger(__name__)

# The longest pause between tries of a delivery that Redis refused.
DELIVERY_PAUSE_MAX = 5.0


def _pause(refusals: int) -> float:
    """Seconds to wait after `refusals` refusals in a row: doubling from 0.2 s, at most
    DELIVERY_PAUSE_MAX."""
    return min(DELIVERY_PAUSE_MAX, 0.1 * 2.0 ** min(refusals, 6))


def _refusal(error: BaseException, lost: tuple[type[BaseException], ...]) -> str | None:
    """Why Redis refused a command (`outage_reason`) when `error` is such a refusal on a
    connection that still stands; None for any other error, among them the `lost`
    connection errors, which kombu handles by reconnecting."""
    return None if isinstance(error, lost) else outage_reason(error)


# Acks a lost connection cut off: (unacked hash, its index, delivery tag). Process-wide,
# because the channel that took the message is gone by the time a new one can send them.
_unsent_acks: set[tuple[str, str, str]] = set()
# Messages popped from their queue whose delivery a lost connection cut off before they
# were recorded as unacknowledged: (payload, exchange, routing key), to push back.
_unrecorded: list[tuple[Any, str, str]] = []
# Delivery tags of messages taken and not started that a lost connection kept kombu from
# pushing back onto their queue when it closed the channel.
_unrestored: set[str] = set()


def _running_tags() -> set[str]:
    """Delivery tags of the tasks this worker is running (their own ack settles them)."""
    from celery.worker import state  # the worker's, in the process that consumes

    return {
        request.message.delivery_tag
        for request in list(state.active_requests)
        if getattr(request, "message", None) is not None
    }


class QoS(RedisQoS):
    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except Exception as exc:
            lost = isinstance(exc, self.channel.connection_errors)
            refused = _refusal(exc, self.channel.connection_errors)
            if not (lost or refused):
                raise
            _unsent_acks.add((self.unacked_key, self.unacked_index_key, delivery_tag))
            virtual.QoS.ack(self, delivery_tag)  # this consumer is done with it either way
            if lost:
                log.warning(
                    "ack of %s cut off (%s): sent again once reconnected", delivery_tag, exc
                )
            else:
                log.warning(
                    "ack of %s refused: Redis is %s; sent once it takes writes",
                    delivery_tag,
                    refused,
                )

    def _settle_cut_off(self) -> None:
        """Send the acks a lost connection cut off, and push back the messages whose
        delivery it cut off (called before each delivery and at each visibility-timeout
        check). Never raises: while Redis still refuses, they wait for the next call, and a
        delivery under way must not fail (and lose its message) on their account."""
        if not (_unsent_acks or _unrestored or _unrecorded):
            return
        try:
            with self.channel.conn_or_acquire() as client:
                if _unsent_acks:
                    pipe = client.pipeline(transaction=False)
                    sent = list(_unsent_acks)
                    for unacked, index, tag in sent:
                        pipe.hdel(unacked, tag).zrem(index, tag)
                    pipe.execute()
                    _unsent_acks.difference_update(sent)
                if _unrestored:
                    tags = list(_unrestored)
                    for tag in tags:
                        self.restore_by_tag(tag, client, leftmost=True)
                    _unrestored.difference_update(tags)
                    log.warning(
                        "%s taken and not started before the connection was lost: requeued",
                        counted(len(tags), "message"),
                    )
                if _unrecorded:
                    # A push cut off part way is pushed again: a second copy of a batch
                    # changes nothing (the done set, the ended batches).
                    pipe = client.pipeline(transaction=False)
                    pushed = list(_unrecorded)
                    for payload, exchange, routing_key in pushed:
                        self.channel._do_restore_message(
                            payload, exchange, routing_key, pipe, leftmost=True
                        )
                    pipe.execute()
                    del _unrecorded[: len(pushed)]
                    log.warning(
                        "%s whose delivery a lost connection cut off: requeued",
                        counted(len(pushed), "message"),
                    )
        except Exception as exc:
            if not (is_outage(exc) or isinstance(exc, self.channel.connection_errors)):
                raise
            log.debug("settling what a lost connection cut off, later: %s", exc)

    def append(self, message: Any, delivery_tag: str) -> None:
        self._settle_cut_off()
        tries = 0
        while True:
            try:
                super().append(message, delivery_tag)
                return
            except Exception as exc:
                if isinstance(exc, self.channel.connection_errors):
                    # Popped from its queue, not yet recorded anywhere in Redis: only this
                    # process holds it now. kombu drops it and reconnects; it goes back
                    # onto its queue on the next connection.
                    delivery = message.delivery_info
                    _unrecorded.append(
                        (message._raw, delivery["exchange"], delivery["routing_key"])
                    )
                    raise
                if (refused := outage_reason(exc)) is None:
                    raise
                if tries % 10 == 0:
                    log.warning(
                        "Redis is %s: holding a delivered message until it can be recorded",
                        refused,
                    )
                tries += 1
                time.sleep(_pause(tries))

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:  # restore_by_tag leaves a refused requeue to the visibility timeout
            super().reject(delivery_tag, requeue)
        else:
            self.ack(delivery_tag)  # the same two deletions: a refused one is sent later

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        if pipe is not None:  # within kombu's own transaction (a restore)
            return super()._remove_from_indices(delivery_tag, pipe)
        with self.channel.conn_or_acquire() as client:
            return (
                client.pipeline(transaction=False)
                .hdel(self.unacked_key, delivery_tag)
                .zrem(self.unacked_index_key, delivery_tag)
            )

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False) -> None:
        try:
            super().restore_by_tag(tag, client, leftmost)
        except Exception as exc:
            if (refused := _refusal(exc, self.channel.connection_errors)) is None:
                raise
            log.warning(
                "Redis is %s: the message stays unacknowledged and comes back after the "
                "visibility timeout",
                refused,
            )

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu's push back of the messages taken and not acknowledged, when the channel
        closes; when the connection is gone, done on the next one instead (for those not
        running: a running task's ack settles its message)."""
        try:
            return super().restore_unacked(client)
        except self.channel.connection_errors:
            _unrestored.update(set(self._delivered) - _running_tags())
            self._delivered.clear()
            raise

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            self._settle_cut_off()
            super().restore_visible(start, num, interval)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.debug("restoring messages past the visibility timeout: %s", exc)


class Channel(RedisChannel):
    QoS = QoS

    # When the next BRPOP may go, after one that Redis refused (time.monotonic()), and how
    # many were refused in a row.
    _consume_after = 0.0
    _refusals = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A new channel's first command is a PING, which a server refusing writes (MISCONF)
        # refuses too: Celery then retries the connection, as for an unreachable server.
        try:
            super().__init__(*args, **kwargs)
        except Exception as exc:
            if (refused := _refusal(exc, (redis.ConnectionError,))) is None:
                raise
            raise redis.ConnectionError(f"Redis is {refused}") from exc

    def _brpop_start(self, timeout: int | None = None) -> None:
        # kombu's event loop asks on every tick (at least once a second): a BRPOP held back
        # goes on the first tick past the pause.
        if time.monotonic() < self._consume_after:
            return
        try:
            super()._brpop_start(timeout)
        except Exception as exc:
            # The connection's health-check PING, sent before the BRPOP, was refused.
            if (refused := _refusal(exc, self.connection_errors)) is None:
                raise
            self._in_poll = False  # nothing sent: no reply to wait for
            self._refused(refused)

    def _brpop_read(self, **options: Any) -> Any:
        try:
            delivered = super()._brpop_read(**options)
        except Exception as exc:
            if (refused := _refusal(exc, self.connection_errors)) is None:
                raise
            self._refused(refused)  # before it popped anything: no message is lost
            raise Empty() from None
        self._refusals = 0
        return delivered

    def _refused(self, reason: str) -> None:
        """Redis refused to hand out a message: wait a while, longer as refusals go on."""
        self._refusals += 1
        self._consume_after = time.monotonic() + _pause(self._refusals)
        if self._refusals % 10 == 1:
            log.warning("Redis is %s: taking no message until it takes writes", reason)

    def maybe_refresh_binding_expiry(self) -> None:
        # kombu logs a refusal with its traceback and tries again a second later.
        try:
            super().maybe_refresh_binding_expiry()
        except Exception as exc:
            if (refused := _refusal(exc, self.connection_errors)) is None:
                raise
            log.debug("broker bindings not refreshed: Redis is %s", refused)

    def _receive_one(self, c: Any) -> Any:
        try:
            return super()._receive_one(c)
        except Exception as exc:
            if (refused := _refusal(exc, self.connection_errors)) is None:
                raise
            # The reply to a health-check PING (the only command sent on a subscribed
            # connection after it subscribed): the subscription stands, and the server
            # answered, so the PING counts as answered (kombu drops a connection that
            # leaves two unanswered, and its new one could not connect: HELLO is
            # preceded by a PING too).
            if c.health_check_response_counter > 0:
                c.health_check_response_counter -= 1
            log.debug("broker health check refused: Redis is %s", refused)
            return None


class Transport(RedisTransport):
    Channel = Channel


def restore_unacknowledged(connection: Any) -> int:
    """Push every message the broker (through the kombu `connection`) holds
    unacknowledged back onto its queue, now; how many. Only for a caller that knows no
    live worker holds one (the embedded server's only user: `Endpoints.alone`): their
    worker was killed with the command that started it, and the visibility timeout would
    hold them back for up to `worker.visibility_timeout` (a message that some worker does
    hold would run twice, which publishes nothing twice)."""
    channel = connection.default_channel
    qos = channel.qos
    with channel.conn_or_acquire() as client:
        tags = client.zrange(qos.unacked_index_key, 0, -1)
        for tag in tags:
            qos.restore_by_tag(tag, client)
    return len(tags)


def queue_keys(prefix: str, queue: str) -> list[str]:
    """The lists kombu keeps a queue in: one per priority step (the queue's own name for
    step 0, then the name, kombu's separator and the step)."""
    sep = RedisChannel.sep
    return [prefix + queue + (f"{sep}{step}" if step else "") for step in PRIORITY_STEPS]


def _task_id(message: Any) -> str | None:
    try:
        task_id = message["headers"]["id"]
    except (KeyError, TypeError):
        return None
    return task_id if isinstance(task_id, str) else None


def broker_task_ids(
    client: redis.Redis, prefix: str, queues: Iterable[str], limit: int
) -> set[str] | None:
    """The task ids of every message the broker holds for `queues`: queued, or delivered and
    not acknowledged (the unacked hash, whichever worker took them). One transaction, so a
    message moving between the two in the meantime is seen in one of them. None when the
    queues hold more than `limit` messages: reading them all is then not worth it."""
    keys = [key for queue in queues for key in queue_keys(prefix, queue)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    if sum(int(n) for n in pipe.execute()) > limit:
        return None
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.lrange(key, 0, -1)
    pipe.hvals(prefix + "unacked")
    *queued, unacked = pipe.execute()
    messages = [_json_or_none(raw) for raw in (m for messages in queued for m in messages)]
    for raw in unacked:
        entry = _json_or_none(raw)  # [message, exchange, routing key]
        messages.append(entry[0] if isinstance(entry, list) and entry else None)
    return {task_id for task_id in map(_task_id, messages) if task_id is not None}


def _json_or_none(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def broker_redis_url(broker_url: str) -> str | None:
    """The redis-py URL of a Redis broker (kombu spells a Unix socket redis+socket://), or
    None for any other broker."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url[len("redis+socket://") :]
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return broker_url
    return None
