"""Consumers on RabbitMQ: restarted after a reconnection, reported when they cannot be."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from aioqueue.exceptions import BrokerConnectionError, BrokerError
from aioqueue.transport.base import (
    BindingSpec,
    Delivery,
    Envelope,
    ExchangeSpec,
    Publish,
    QueueSpec,
)
from tests.helpers import close_connections, eventually

from ._support import consumer_counts, needs_rabbitmqctl, reconnected
from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


class _Inbox:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.bodies.append(delivery.envelope.body)
        await delivery.ack()


@needs_rabbitmqctl
@pytest.mark.timeout(120)
async def test_consumers_resume_after_a_reconnection(
    amqp_url: str, make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(reconnect_interval=0.2)
    durable, exclusive = f"{queue_name}.durable", f"{queue_name}.exclusive"
    await transport.declare_queue(QueueSpec(durable))
    await transport.declare_queue(QueueSpec(exclusive, durable=False, exclusive=True))
    broadcast = f"{queue_name}.broadcast"
    await transport.declare_exchange(ExchangeSpec(broadcast, "fanout"))
    inbox, replies = _Inbox(), _Inbox()
    consumers = [
        await transport.consume(durable, inbox, prefetch=5),
        await transport.consume(exclusive, replies, prefetch=5, no_ack=True),
    ]
    # Bound after it is consumed: the binding is restored with the queue all the same.
    await transport.bind(BindingSpec(exclusive, broadcast))
    await reconnected(amqp_url, transport)
    # The exclusive queue went with the old connection; its consumer declared it again.
    await transport.publish(Envelope(body=b"after"), routing_key=durable, mandatory=True)
    await eventually(lambda: inbox.bodies == [b"after"])
    await transport.publish(Envelope(body=b"reply"), routing_key=exclusive, mandatory=True)
    await eventually(lambda: replies.bodies == [b"reply"])
    await transport.publish(Envelope(body=b"to all"), exchange=broadcast, routing_key="")
    await eventually(lambda: replies.bodies == [b"reply", b"to all"])
    for consumer in consumers:
        await consumer.close()
    await transport.delete_queue(durable)
    await transport.delete_exchange(broadcast)


@needs_rabbitmqctl
@pytest.mark.timeout(120)
async def test_a_consumer_that_cannot_resume_after_a_reconnection_is_lost(
    amqp_url: str, make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(reconnect_interval=4.0)
    await transport.declare_queue(QueueSpec(queue_name))
    consumer = await transport.consume(queue_name, _Inbox(), prefetch=1)
    await asyncio.to_thread(close_connections, amqp_url)
    # While it is away, another connection takes the queue for itself.
    other = await make_amqp()
    await other.delete_queue(queue_name)
    await other.declare_queue(QueueSpec(queue_name, durable=False, exclusive=True))
    async with asyncio.timeout(60):
        error = await consumer.wait_lost()
    assert isinstance(error, BrokerError)
    assert repr(queue_name) in str(error)


async def test_a_consumer_of_a_deleted_queue_is_lost(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    consumer = await transport.consume(queue_name, _Inbox(), prefetch=1)
    other = await make_amqp()
    await other.delete_queue(queue_name)
    async with asyncio.timeout(30):
        error = await consumer.wait_lost()
    assert repr(queue_name) in str(error)
    # Not brought back by the attempts to consume it again.
    batch = await other.take_all(queue_name, min_count=0)
    assert batch is not None and batch.envelopes == []
    await batch.release()


@needs_rabbitmqctl
async def test_closed_consumers_are_forgotten(
    make_amqp: MakeTransport, amqp_url: str, queue_name: str
) -> None:
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    for _ in range(20):
        consumer = await transport.consume(queue_name, _Inbox(), prefetch=1)
        await consumer.close()
        await consumer.close()
    kept = await transport.consume(queue_name, _Inbox(), prefetch=1)
    # After a reconnection only the consumer still open comes back.
    await reconnected(amqp_url, transport)

    async def consumers() -> int:
        counts = await asyncio.to_thread(consumer_counts, amqp_url)
        return counts.get(queue_name, 0)

    await eventually(lambda: _is(consumers(), 1))
    await asyncio.sleep(0.5)  # what would come back too comes back together with it
    assert await consumers() == 1
    await kept.close()
    await transport.delete_queue(queue_name)


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


@pytest.mark.timeout(60)
async def test_acks_sent_together_never_cover_a_delivery_still_running(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    """Deliveries acked in one turn of the loop go out as one ``multiple`` ack and single
    ones: the first delivery, still running, stays unacked and is the only one the broker
    delivers again; a rejected one is neither acked nor delivered again."""
    first = await make_amqp()
    await first.declare_queue(QueueSpec(queue_name))
    for n in range(10):
        await first.publish(Envelope(body=str(n).encode()), routing_key=queue_name)
    hold = asyncio.Event()
    settled: list[bytes] = []

    async def handle(delivery: Delivery) -> None:
        body = delivery.envelope.body
        if body == b"0":
            await hold.wait()  # running until the connection goes
            return
        if body == b"5":
            await delivery.reject(requeue=False)
        else:
            await delivery.ack()
        settled.append(body)

    await first.consume(queue_name, handle, prefetch=10)
    await eventually(lambda: len(settled) == 9)
    await first.aclose()

    second = await make_amqp()
    again = _Inbox()
    consumer = await second.consume(queue_name, again, prefetch=10)
    await eventually(lambda: again.bodies == [b"0"])
    await asyncio.sleep(0.3)  # nothing else comes
    assert again.bodies == [b"0"]
    hold.set()
    await consumer.close()
    await second.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_closing_a_consumer_with_acks_in_flight_keeps_the_connection(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    """The broker frees a channel as soon as it answers its close, and an ack written
    after the close reaches a freed channel, for which the broker closes the whole
    connection: closing a consumer sends its acks first and nothing after the close."""
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    for _ in range(10):
        await transport.publish_many(
            [Publish(Envelope(body=b"x"), routing_key=queue_name) for _ in range(60)]
        )
    seen: list[Delivery] = []
    everything = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery)
        if len(seen) == 600:
            everything.set()
        await delivery.ack()

    consumer = await transport.consume(queue_name, handle, prefetch=1000)
    await asyncio.wait_for(everything.wait(), 10)
    generation = transport.generation
    await consumer.close()
    await asyncio.sleep(0.5)
    assert transport.generation == generation, "the connection was lost"
    assert await transport.publish_many([Publish(Envelope(body=b"y"), routing_key=queue_name)]) == [
        None
    ]
    # Every ack reached the broker before the close: none of the 600 comes back.
    batch = await transport.take_all(queue_name, min_count=0)
    assert batch is not None
    await batch.release()
    assert [e.body for e in batch.envelopes] == [b"y"]
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_an_ack_after_its_consumer_closed_fails_and_the_message_comes_back(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.publish_many(
        [Publish(Envelope(body=body), routing_key=queue_name) for body in (b"acked", b"late")]
    )
    held: list[Delivery] = []
    both = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        held.append(delivery)
        if len(held) == 2:
            both.set()

    consumer = await transport.consume(queue_name, handle, prefetch=10)
    await asyncio.wait_for(both.wait(), 10)
    await held[0].ack()
    await consumer.close()
    with pytest.raises(BrokerConnectionError, match="closed"):
        await held[1].ack()
    batch = await transport.take_all(queue_name, min_count=0)
    assert batch is not None
    await batch.release()
    assert [e.body for e in batch.envelopes] == [b"late"]
    await transport.delete_queue(queue_name)
