"""The broker transport (workers/worker/broker.py) against a real Redis: a message popped
from its queue whose delivery a lost connection cuts off before it is recorded as
unacknowledged is not lost."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport.redis import QoS as RedisQoS
from support.faults import PrivateRedis, needs_redis_server

from workers.worker.broker import Transport


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
        with connection.Consumer(queue, callbacks=[lambda body, message: received.append(body)]):
            with pytest.raises(redis.ConnectionError):
                connection.drain_events(timeout=5)
        assert cut and not received
        # Popped and recorded nowhere: without the transport's care it would be gone.
        assert client.llen("work") == 0 and client.hlen("unacked") == 0
    with Connection(private_redis.url, transport=Transport) as connection:
        with connection.Consumer(
            queue, callbacks=[lambda body, message: (received.append(body), message.ack())]
        ):
            for _ in range(10):
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    continue
                if received:
                    break
    assert received == [{"n": 1}]
    assert client.llen("work") == 0 and client.hlen("unacked") == 0
    client.close()
