"""Fixtures for the transport tests: AMQP transports closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from aioqueue.transport.amqp import AmqpTransport

MakeTransport = Callable[..., Awaitable[AmqpTransport]]


@pytest.fixture
async def make_amqp(amqp_url: str) -> AsyncIterator[MakeTransport]:
    """Connected AMQP transports to the test vhost (keyword arguments go to the
    constructor, ``url`` overrides the vhost's URL), all closed at teardown."""
    opened: list[AmqpTransport] = []

    async def make(url: str | None = None, **kwargs: object) -> AmqpTransport:
        transport = AmqpTransport(url or amqp_url, **kwargs)  # type: ignore[arg-type]
        opened.append(transport)
        await transport.connect()
        return transport

    yield make
    for transport in opened:
        await transport.aclose()
