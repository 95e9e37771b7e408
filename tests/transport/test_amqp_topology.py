"""Declarations on RabbitMQ are not repeated behind the caller's back after a reconnection."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from aioqueue.transport.base import Envelope, QueueSpec
from tests.helpers import eventually
from tests.processes import ONE_LOOP

from ._support import needs_rabbitmqctl, queue_names, reconnected
from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


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
    await reconnected(amqp_url, transport)
    kept = f"{queue_name}.kept"
    await transport.declare_queue(QueueSpec(kept))
    await transport.publish(Envelope(body=b"x"), routing_key=kept)
    # Queues declared again would expire again a second later: look several times.
    for _ in range(4):
        left = await asyncio.to_thread(queue_names, amqp_url) & set(expiring + deleted)
        assert not left, f"declared again after the reconnection: {sorted(left)[:3]}..."
    await transport.delete_queue(kept)


@ONE_LOOP  # what it measures does not depend on the loop
async def test_memory_does_not_grow_with_queues(make_amqp: MakeTransport, queue_name: str) -> None:
    # Chord queues are declared once and expire on their own, never deleted: what the
    # transport keeps per declared queue must stay bounded. Measured from the outside,
    # as the memory that 300 more such queues leave behind once the bookkeeping is full.
    transport = await make_amqp()
    declared = 0

    async def declare(count: int) -> None:
        nonlocal declared
        for _ in range(count):
            name = f"{queue_name}.{declared}"
            declared += 1
            await transport.declare_queue(QueueSpec(name, arguments={"x-expires": 5_000}))

    await declare(1_100)  # past the transport's bound on remembered declarations
    tracemalloc.start()
    try:
        # Traced from here: what is dropped in the measured window was allocated while
        # tracing, so its release counts too.
        await declare(300)
        gc.collect()
        before = tracemalloc.take_snapshot()
        await declare(300)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # pamqp keeps a bounded cache of the strings it looks its field types up with.
    codec = [tracemalloc.Filter(False, "*/pamqp/*")]
    changes = after.filter_traces(codec).compare_to(before.filter_traces(codec), "filename")
    grown = sum(change.size_diff for change in changes)
    # Bounded bookkeeping and the AMQP library's own come to ~80 KB here; a queue object
    # kept for every queue ever declared (re-declared after each reconnection, as
    # aio-pika's robust channels do) came to ~700 KB.
    assert grown < 400_000, f"{grown} bytes kept after 300 more queues"
