"""The memory transport's own promises, beyond the conformance suite."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue.exceptions import BrokerConnectionError, BrokerError
from aioqueue.transport.base import Delivery, Envelope, QueueSpec
from aioqueue.transport.memory import MemoryTransport

pytestmark = pytest.mark.anyio


class _Hold:
    def __init__(self) -> None:
        self.items: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        self.items.append(delivery)


async def test_state_and_topology_outlive_a_closed_connection() -> None:
    transport = MemoryTransport()
    await transport.connect()
    await transport.declare_queue(QueueSpec("q"))
    await transport.state_put("s", "k", b"v")
    generation = transport.generation
    await transport.aclose()
    await transport.connect()
    assert transport.generation > generation
    assert await transport.state_read("s") == {"k": b"v"}
    assert transport.queue_length("q") == 0


async def test_closing_loses_leases_and_gives_back_batches() -> None:
    first = MemoryTransport()
    second = first.new_connection()
    await first.declare_queue(QueueSpec("q"))
    await first.publish(Envelope(body=b"part"), routing_key="q")
    lease = await first.acquire_lease("leader")
    batch = await first.take_all("q", min_count=1)
    assert lease is not None and batch is not None and len(batch.envelopes) == 1
    assert await second.acquire_lease("leader") is None
    assert await second.take_all("q", min_count=0) is None
    await first.aclose()
    assert not lease.held
    again = await second.take_all("q", min_count=1)
    assert again is not None and [e.body for e in again.envelopes] == [b"part"]
    await again.release()
    assert await second.acquire_lease("leader") is not None


async def test_a_closed_consumer_cancels_its_handlers_and_refuses_late_acks() -> None:
    transport = MemoryTransport()
    await transport.declare_queue(QueueSpec("q"))
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    await transport.publish(Envelope(body=b"slow"), routing_key="q")
    consumer = await transport.consume("q", slow, prefetch=1)
    await started.wait()
    await consumer.close()
    assert cancelled == [True]
    assert transport.queue_length("q") == 1, "the interrupted delivery went back"

    held = _Hold()
    consumer = await transport.consume("q", held, prefetch=1)
    await asyncio.sleep(0)
    (delivery,) = held.items
    await consumer.close()
    with pytest.raises(BrokerConnectionError):
        await delivery.ack()
    assert transport.queue_length("q") == 1


async def test_deleting_a_queue_loses_the_consumers_of_every_connection() -> None:
    first = MemoryTransport()
    second = first.new_connection()
    await first.declare_queue(QueueSpec("q"))
    consumers = [
        await first.consume("q", _Hold(), prefetch=1),
        await second.consume("q", _Hold(), prefetch=1),
    ]
    await second.delete_queue("q")
    for consumer in consumers:
        error = await asyncio.wait_for(consumer.wait_lost(), 1)
        assert isinstance(error, BrokerError) and "'q'" in str(error)
