"""A quorum queue works end to end, and what it dead-letters reaches its .dlq."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue import App, Queue
from aioqueue.transport import Delivery, Envelope

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


async def test_quorum_queue(amqp_url: str, queue_name: str) -> None:
    quorum = Queue(queue_name, arguments={"x-queue-type": "quorum"})
    app = App("quorum", broker=amqp_url, queues=[quorum])

    @app.task(queue=queue_name)
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        async with app.worker(queues=[queue_name]):
            assert await (await add.delay(2, 3)).get(timeout=10) == 5
        rejected = asyncio.Event()

        async def reject(delivery: Delivery) -> None:
            await delivery.reject(requeue=False)
            rejected.set()

        await app.transport.publish(Envelope(body=b"unwanted"), routing_key=queue_name)
        consumer = await app.transport.consume(queue_name, reject, prefetch=1)
        await asyncio.wait_for(rejected.wait(), 10)
        await consumer.cancel()
        for _ in range(100):  # dead-lettering is asynchronous
            batch = await app.transport.take_all(f"{queue_name}.dlq", min_count=1)
            assert batch is not None
            bodies = [e.body for e in batch.envelopes]
            await batch.release()
            if bodies:
                break
            await asyncio.sleep(0.05)
        assert bodies == [b"unwanted"]
        for name in (queue_name, f"{queue_name}.dlq"):
            await app.transport.delete_queue(name)
        await app.transport.delete_exchange(queue_name)
