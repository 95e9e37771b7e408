"""Connecting: one connection however many callers, and again in another event loop."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Envelope, QueueSpec

from ._support import connection_names, needs_rabbitmqctl

pytestmark = [pytest.mark.amqp]


@needs_rabbitmqctl
@pytest.mark.anyio
async def test_concurrent_connects_open_one_connection(amqp_url: str) -> None:
    name = f"test-connect-{uuid.uuid4().hex[:8]}"
    transport = AmqpTransport(amqp_url, connection_name=name)
    try:
        await asyncio.gather(*(transport.connect() for _ in range(5)))
        names = await asyncio.to_thread(connection_names, amqp_url)
        assert names.count(name) == 1, names
    finally:
        await transport.aclose()


@needs_rabbitmqctl
@pytest.mark.anyio
async def test_concurrent_first_publishes_open_one_connection(
    amqp_url: str, queue_name: str
) -> None:
    name = f"test-connect-{uuid.uuid4().hex[:8]}"
    transport = AmqpTransport(amqp_url, connection_name=name)
    try:
        await asyncio.gather(
            *(transport.publish(Envelope(body=b"x"), routing_key=queue_name) for _ in range(5))
        )
        names = await asyncio.to_thread(connection_names, amqp_url)
        assert names.count(name) == 1, names
    finally:
        await transport.aclose()


def test_connect_again_in_another_event_loop(amqp_url: str, queue_name: str) -> None:
    transport = AmqpTransport(amqp_url)

    async def session(body: bytes) -> list[bytes]:
        await transport.connect()
        try:
            await transport.declare_queue(QueueSpec(queue_name))
            await transport.publish(Envelope(body=body), routing_key=queue_name)
            batch = await transport.take_all(queue_name, min_count=0)
            assert batch is not None
            await batch.release()
            return [e.body for e in batch.envelopes]
        finally:
            await transport.aclose()

    async def cleanup() -> None:
        await transport.connect()
        await transport.delete_queue(queue_name)
        await transport.aclose()

    assert asyncio.run(session(b"1")) == [b"1"]
    assert asyncio.run(session(b"2")) == [b"1", b"2"]
    asyncio.run(cleanup())


def test_leases_and_generation_in_another_event_loop(amqp_url: str) -> None:
    transport = AmqpTransport(amqp_url)

    async def session() -> None:
        await transport.connect()
        try:
            lease = await transport.acquire_lease("loops")
            assert lease is not None and lease.held
            assert await transport.acquire_lease("loops") is None
            await lease.release()
        finally:
            await transport.aclose()

    generations = [transport.generation]
    for _ in range(2):
        asyncio.run(session())
        generations.append(transport.generation)
    assert generations[0] < generations[1] < generations[2], generations
