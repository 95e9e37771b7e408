"""One end-to-end suite, run on both brokers: ``memory://`` and a real RabbitMQ.

``broker`` is the broker a test's apps connect to: one in-process transport shared by
the test's apps, or the URL of the session's RabbitMQ vhost (each app then has its own
connection). ``make_app`` builds apps on it whose default queue is the test's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from aioqueue import App
from aioqueue.transport.base import Transport
from aioqueue.transport.memory import MemoryTransport
from tests.helpers import delete_topology

MakeApp = Callable[..., App]


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.amqp)])
def broker(request: pytest.FixtureRequest) -> Iterator[str | Transport]:
    """What ``App(broker=...)`` is given: a shared MemoryTransport, or a RabbitMQ URL."""
    if request.param == "memory":
        yield MemoryTransport()
    else:
        yield request.getfixturevalue("amqp_url")


@pytest.fixture
async def make_app(broker: str | Transport, queue_name: str) -> AsyncIterator[MakeApp]:
    """``make_app(name, **options)``: an app on ``broker`` with the test's default queue.

    On RabbitMQ the queue, its ``.dlq`` and its exchange are deleted afterwards.
    """

    def make(name: str, **options: Any) -> App:
        options.setdefault("default_queue", queue_name)
        options.setdefault("broker", broker)
        return App(name, **options)

    yield make
    if isinstance(broker, str):
        await delete_topology(broker, queue_name)
