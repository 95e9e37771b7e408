"""The transport conformance suite, run against both transports."""

from __future__ import annotations

import pytest

from aioqueue.testing import check_transport
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Transport
from aioqueue.transport.memory import MemoryTransport

pytestmark = pytest.mark.anyio


async def test_memory_transport() -> None:
    broker = MemoryTransport()

    async def make() -> Transport:
        # Connections to one in-process broker, as separate processes would have.
        transport = broker.new_connection()
        await transport.connect()
        return transport

    await check_transport(make)


@pytest.mark.amqp
async def test_amqp_transport(amqp_url: str) -> None:
    async def make() -> Transport:
        transport = AmqpTransport(amqp_url)
        await transport.connect()
        return transport

    await check_transport(make)
