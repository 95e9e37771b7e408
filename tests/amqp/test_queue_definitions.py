"""Queues declared with arguments (priority, quorum...): clients that know the
definition declare it alike; clients that do not still reach it."""

from __future__ import annotations

import pytest

from aioqueue import App, Queue

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


async def test_priority_queue_reached_with_and_without_its_definition(
    amqp_url: str, queue_name: str
) -> None:
    definition = Queue(queue_name, arguments={"x-max-priority": 10})
    server = App("server", broker=amqp_url, queues=[definition])
    knows = App("knows", broker=amqp_url, queues=[definition])
    blind = App("blind", broker=amqp_url)

    @server.task(name="defs.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with server, knows, blind, server.worker(queues=[queue_name]):
        sent = await knows.send_task("defs.add", args=[1, 2], queue=queue_name, priority=5)
        assert await sent.get(timeout=10) == 3
        # Its declaration is refused (other arguments): the queue is used as it is.
        sent = await blind.send_task("defs.add", args=[2, 3], queue=queue_name, priority=9)
        assert await sent.get(timeout=10) == 5
        again = await blind.send_task("defs.add", args=[3, 4], queue=queue_name)
        assert await again.get(timeout=10) == 7
        for name in (queue_name, f"{queue_name}.dlq"):
            await server.transport.delete_queue(name)
        await server.transport.delete_exchange(queue_name)
