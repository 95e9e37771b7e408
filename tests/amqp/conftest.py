"""AMQP fixtures: the test's queue, with its ``.dlq`` and exchange deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioqueue.routing import dlq_name
from aioqueue.transport.amqp import AmqpTransport


@pytest.fixture
async def amqp_queue(amqp_url: str, queue_name: str) -> AsyncIterator[str]:
    """``queue_name``, whose topology (queue, ``.dlq``, exchange) is removed at teardown."""
    yield queue_name
    transport = AmqpTransport(amqp_url)
    await transport.connect()
    try:
        for name in (queue_name, dlq_name(queue_name)):
            await transport.delete_queue(name)
        await transport.delete_exchange(queue_name)
    finally:
        await transport.aclose()
