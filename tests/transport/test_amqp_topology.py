"""Declarations on RabbitMQ are not repeated behind the caller's back after a reconnection."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Binding, Envelope, ExchangeSpec, QueueSpec

from ._support import close_connections, eventually, needs_rabbitmqctl, queue_names
from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


async def _reconnected(amqp_url: str, transport: AmqpTransport) -> None:
    generation = transport.generation
    await asyncio.to_thread(close_connections, amqp_url)
    await eventually(lambda: transport.generation > generation)


@needs_rabbitmqctl
@pytest.mark.timeout(120)
async def test_gone_queues_stay_gone_after_a_reconnection(
    amqp_url: str, make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(reconnect_interval=0.2)
    expiring = [f"{queue_name}.expiring.{i}" for i in range(100)]
    deleted = [f"{queue_name}.deleted.{i}" for i in range(100)]
    for name in expiring:
        await transport.declare_queue(QueueSpec(name, arguments={"x-expires": 1000}))
    for name in deleted:
        await transport.declare_queue(QueueSpec(name))
    for name in deleted:
        await transport.delete_queue(name)
    await eventually(lambda: not set(expiring) & queue_names(amqp_url), timeout=30)
    await _reconnected(amqp_url, transport)
    kept = f"{queue_name}.kept"
    await transport.declare_queue(QueueSpec(kept))
    await transport.publish(Envelope(body=b"x"), routing_key=kept)
    # Queues declared again would expire again a second later: look several times.
    for _ in range(4):
        left = await asyncio.to_thread(queue_names, amqp_url) & set(expiring + deleted)
        assert not left, f"declared again after the reconnection: {sorted(left)[:3]}..."
    await transport.delete_queue(kept)


async def test_bookkeeping_does_not_grow_with_queues(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    # White-box: what the transport keeps per queue name must not outlive the queue.
    transport = await make_amqp()
    exchange = f"{queue_name}.x"
    await transport.declare_exchange(ExchangeSpec(exchange, "fanout"))
    for i in range(200):
        name = f"{queue_name}.{i}"
        await transport.declare_queue(QueueSpec(name))
        await transport.bind(Binding(name, exchange))
        batch = await transport.take_all(name, min_count=0)
        assert batch is not None
        await batch.release()
        await transport.delete_queue(name)
    assert len(transport._specs) == 0
    assert len(transport._bindings) == 0
    assert len(transport._holders) == 0
    await transport.delete_exchange(exchange)
