"""Leases and state queues on RabbitMQ across reconnections and connections."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue.exceptions import BrokerError
from tests.helpers import close_connections, eventually

from ._support import needs_rabbitmqctl, queue_names
from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


@needs_rabbitmqctl
@pytest.mark.timeout(120)
async def test_a_lease_is_lost_with_its_connection_and_not_taken_again(
    amqp_url: str, make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(reconnect_interval=0.2)
    lease = await transport.acquire_lease(queue_name)
    assert lease is not None and lease.held
    generation = transport.generation
    await asyncio.to_thread(close_connections, amqp_url)
    async with asyncio.timeout(10):
        await lease.wait_lost()
    assert not lease.held
    await eventually(lambda: transport.generation > generation)
    await asyncio.sleep(0.5)
    other = await make_amqp()
    taken = await other.acquire_lease(queue_name)
    assert taken is not None, "the old holder declared its lease again after reconnecting"
    assert await transport.acquire_lease(queue_name) is None
    await taken.release()
    again = await transport.acquire_lease(queue_name)
    assert again is not None
    await again.release()


async def test_a_lease_queue_deleted_by_someone_else_is_a_lost_lease(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    lease = await transport.acquire_lease(queue_name)
    assert lease is not None
    await transport.delete_queue(f"aioqueue.lease.{queue_name}")
    async with asyncio.timeout(10):
        await lease.wait_lost()
    await lease.release()


@needs_rabbitmqctl
@pytest.mark.timeout(120)
async def test_state_outlives_connections(
    amqp_url: str, make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(reconnect_interval=0.2)
    store = queue_name
    for i in range(5):
        await transport.state_put(store, "last-run", str(i).encode())
    await transport.state_put(store, "gone", b"x")
    await transport.state_delete(store, "gone")
    generation = transport.generation
    await asyncio.to_thread(close_connections, amqp_url)
    await eventually(lambda: transport.generation > generation)
    assert await transport.state_read(store) == {"last-run": b"4"}
    other = await make_amqp()
    assert await other.state_read(store) == {"last-run": b"4"}
    assert f"aioqueue.state.{store}" in queue_names(amqp_url)


async def test_state_compaction_keeps_puts_that_race_with_it(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    writers = [await make_amqp() for _ in range(3)]
    reader = await make_amqp()
    store = queue_name

    async def write(transport_index: int, keys: range) -> None:
        transport = writers[transport_index]
        for value in range(8):
            for key in keys:
                await transport.state_put(store, f"k{key}", str(value).encode())

    async def read_while_writing(done: asyncio.Event) -> int:
        reads = 0
        while not done.is_set():
            await reader.state_read(store)
            reads += 1
        return reads

    done = asyncio.Event()
    reading = asyncio.create_task(read_while_writing(done))
    await asyncio.gather(*(write(i, range(i * 10, i * 10 + 10)) for i in range(3)))
    done.set()
    assert await reading > 0
    expected = {f"k{key}": b"7" for key in range(30)}
    assert await reader.state_read(store) == expected
    # Compacted: one message per live key is left.
    batch = await reader.take_all(f"aioqueue.state.{store}", min_count=0)
    assert batch is not None
    await batch.release()
    assert len(batch.envelopes) == 30


async def test_state_read_gives_up_on_a_lock_held_elsewhere(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp(publish_timeout=1.0)
    other = await make_amqp()
    await transport.state_put(queue_name, "k", b"v")
    holder = await other.acquire_lease(f"state.{queue_name}")
    assert holder is not None
    with pytest.raises(BrokerError, match=repr(queue_name)):
        await transport.state_read(queue_name)
    await holder.release()
    assert await transport.state_read(queue_name) == {"k": b"v"}
    await transport.delete_queue(f"aioqueue.state.{queue_name}")
