"""The broker transport (workers/worker/broker.py) against a real Redis, when the
connection is lost: a message popped from its queue before it is recorded as
unacknowledged is not lost, and one taken and not started comes back at once."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import QoS as RedisQoS
from support.faults import PrivateRedis, needs_redis_server

from workers.worker.broker import Transport


def drain_until_received(connection: Connection, queue: Queue, received: list[Any]) -> None:
    """Consume, acknowledging, for up to 15 s or until a message arrives (the transport's
    checks run between reads: kombu's idle `maybe_restore_messages`)."""
    with connection.Consumer(
        queue, callbacks=[lambda body, message: (received.append(body), message.ack())]
    ):
        for _ in range(15):
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=1)
            if received:
                return


@needs_redis_server
def test_a_delivery_cut_off_by_a_lost_connection_goes_back_on_its_queue(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
    cut: list[str] = []
    recording = RedisQoS.append

    def cut_off_once(self: RedisQoS, message: Any, delivery_tag: str) -> None:
        # As when Redis stops between BRPOP's reply and the write to the unacked hash.
        if not cut:
            cut.append(delivery_tag)
            raise redis.ConnectionError("Connection closed by server.")
        recording(self, message, delivery_tag)

    monkeypatch.setattr(RedisQoS, "append", cut_off_once)
    client = redis.Redis.from_url(private_redis.url)
    received: list[Any] = []
    with Connection(private_redis.url, transport=Transport) as connection:
        connection.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key="work", declare=[queue]
        )
        taking = connection.Consumer(queue, callbacks=[lambda body, message: received.append(body)])
        with taking, pytest.raises(redis.ConnectionError):
            connection.drain_events(timeout=5)
        assert cut and not received
        # Popped and recorded nowhere: without the transport's care it would be gone.
        assert client.llen("work") == 0 and client.hlen("unacked") == 0
    with Connection(private_redis.url, transport=Transport) as connection:
        drain_until_received(connection, queue, received)
    assert received == [{"n": 1}]
    assert client.llen("work") == 0 and client.hlen("unacked") == 0
    client.close()


@needs_redis_server
def test_messages_taken_and_not_started_come_back_on_the_next_connection(
    private_redis: PrivateRedis,
) -> None:
    """Redis goes away while a consumer holds a message it has not started: kombu's push
    back at the channel's close fails, and the message would wait in the unacked hash for
    the visibility timeout (an hour here)."""
    queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
    options = {"visibility_timeout": 3600}
    held: list[Any] = []
    connection = Connection(private_redis.url, transport=Transport, transport_options=options)
    connection.Producer().publish(
        {"n": 2}, exchange=queue.exchange, routing_key="work", declare=[queue]
    )
    consumer = connection.Consumer(queue, callbacks=[lambda body, message: held.append(body)])
    consumer.consume()
    connection.drain_events(timeout=5)
    assert held == [{"n": 2}]  # taken, recorded as unacknowledged, never acknowledged
    private_redis.stop(signal.SIGTERM)
    with contextlib.suppress(Exception):
        connection.release()  # closes the channel: kombu's push back fails
    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    assert client.hlen("unacked") == 1 and client.llen("work") == 0

    received: list[Any] = []
    with Connection(private_redis.url, transport=Transport, transport_options=options) as again:
        drain_until_received(again, queue, received)
    assert received == [{"n": 2}]
    assert client.hlen("unacked") == 0 and client.llen("work") == 0
    client.close()
