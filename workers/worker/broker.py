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
        except self.channel.connection_errors as exc:
            _unsent_acks.add((self.unacked_key, self.unacked_index_key, delivery_tag))
            virtual.QoS.ack(self, delivery_tag)  # this consumer is done with it either way
            log.warning("ack of %s cut off (%s): sent again once reconnected", delivery_tag, exc)

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
                if not is_outage(exc):
                    raise
                if tries % 10 == 0:
                    log.warning(
                        "Redis is %s: holding a delivered message until it can be recorded",
                        outage_reason(exc),
                    )
                tries += 1
                time.sleep(min(DELIVERY_PAUSE_MAX, 0.1 * 2 ** min(tries, 6)))

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
            if not is_outage(exc) or isinstance(exc, self.channel.connection_errors):
                raise
            log.warning(
                "Redis is %s: the message stays unacknowledged and comes back after the "
                "visibility timeout",
                outage_reason(exc),
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


class Transport(RedisTransport):
    Channel = Channel


def restore_unacknowledged(app: Any) -> int:
    """Push every message the broker holds unacknowledged back onto its queue, now; how
    many. Only for a caller that knows no live worker holds one (the embedded server's
    only user: `Endpoints.alone`): their worker was killed with the command that started
    it, and the visibility timeout would hold them back for up to
    `worker.visibility_timeout` (a message that some worker does hold would run twice,
    which publishes nothing twice)."""
    with app.connection_for_write() as connection:
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
