"""Queues declared with arguments (priority, quorum...): clients that know the
definition declare it alike; clients that do not still reach it; what a quorum queue
dead-letters reaches its ``.dlq``."""

from __future__ import annotations

import anyio
import pytest

from aioqueue import Queue
from aioqueue.topology import dlq_name
from aioqueue.transport import Delivery, Envelope
from tests.e2e.conftest import MakeApp
from tests.helpers import receive

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


async def test_priority_queue_reached_with_and_without_its_definition(
    make_app: MakeApp, queue_name: str
) -> None:
    definition = Queue(queue_name, arguments={"x-max-priority": 10})
    server = make_app("server", queues=[definition])
    knows = make_app("knows", queues=[definition])
    blind = make_app("blind")

    @server.task(name="defs.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with server, knows, blind, server.worker(queues=[queue_name]):
        sent = await knows.send_task("defs.add", args=[1, 2], queue=queue_name, priority=5)
        assert await sent.get(timeout=TIMEOUT) == 3
        # Its declaration is refused (other arguments): the queue is used as it is.
        sent = await blind.send_task("defs.add", args=[2, 3], queue=queue_name, priority=9)
        assert await sent.get(timeout=TIMEOUT) == 5
        again = await blind.send_task("defs.add", args=[3, 4], queue=queue_name)
        assert await again.get(timeout=TIMEOUT) == 7


async def test_quorum_queue(make_app: MakeApp, queue_name: str) -> None:
    quorum = Queue(queue_name, arguments={"x-queue-type": "quorum"})
    app = make_app("quorum", queues=[quorum])

    @app.task(queue=queue_name)
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        async with app.worker(queues=[queue_name]):
            assert await (await add.delay(2, 3)).get(timeout=TIMEOUT) == 5
        rejected = anyio.Event()

        async def reject(delivery: Delivery) -> None:
            await delivery.reject(requeue=False)
            rejected.set()

        await app.transport.publish(Envelope(body=b"unwanted"), routing_key=queue_name)
        consumer = await app.transport.consume(queue_name, reject, prefetch=1)
        try:
            with anyio.fail_after(TIMEOUT):
                await rejected.wait()
        finally:
            await consumer.close()
        # Dead-lettering is asynchronous: wait for it to arrive.
        (dead,) = await receive(app.transport, dlq_name(queue_name), 1, TIMEOUT)
        assert dead.body == b"unwanted"
