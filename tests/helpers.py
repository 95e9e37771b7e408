"""Small helpers shared by the test suites."""

from __future__ import annotations

import subprocess
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio

from aioqueue.topology import dlq_name
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Delivery, Envelope, Transport

__all__ = ("close_connections", "delete_topology", "eventually", "receive")


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (only against hangs).

    For state that has no event to wait on (a counter, a result's status, files).
    """
    with anyio.fail_after(timeout):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await anyio.sleep(0.01)


async def receive(
    transport: Transport, queue: str, count: int = 1, timeout: float = 20
) -> list[Envelope]:
    """The next ``count`` messages of ``queue``, acked, through the public transport API."""
    got: list[Envelope] = []
    enough = anyio.Event()

    async def collect(delivery: Delivery) -> None:
        got.append(delivery.envelope)
        await delivery.ack()
        if len(got) >= count:
            enough.set()

    consumer = await transport.consume(queue, collect, prefetch=count)
    try:
        with anyio.fail_after(timeout):
            await enough.wait()
    finally:
        await consumer.close()
    return got[:count]


async def delete_topology(amqp_url: str, queue: str) -> None:
    """Delete ``queue``, its ``.dlq`` and its exchange from RabbitMQ."""
    transport = AmqpTransport(amqp_url)
    await transport.connect()
    try:
        for name in (queue, dlq_name(queue)):
            await transport.delete_queue(name)
        await transport.delete_exchange(queue)
    finally:
        await transport.aclose()


def close_connections(amqp_url: str) -> None:
    """Make RabbitMQ drop every connection of ``amqp_url``'s vhost (blocking)."""
    vhost = urlsplit(amqp_url).path.lstrip("/") or "/"
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "-p", vhost, "test: broker drops connections"],
        check=True,
        capture_output=True,
        timeout=60,
    )
