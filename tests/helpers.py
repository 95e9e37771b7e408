"""Small helpers shared by the test suites."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import anyio
import pytest

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


AMQP_HOST = os.environ.get("AIOQUEUE_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("AIOQUEUE_TEST_AMQP_PORT", "5672"))


def broker_answers() -> bool:
    """Whether an AMQP broker answers on the test host and port."""
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return bool(sock.recv(8))
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def fresh_vhost(prefix: str) -> Iterator[str]:
    """The URL of a new vhost ``<prefix>-<random>`` on the local RabbitMQ, deleted on
    exit. Skips when no broker answers, except with ``CI=true``, where it fails: CI must
    never pass by skipping the broker."""
    if not broker_answers():
        message = f"no RabbitMQ answers on {AMQP_HOST}:{AMQP_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: AMQP tests must run)")
        pytest.skip(message)
    if shutil.which("rabbitmqctl") is None:
        # A broker we cannot administer: share the default vhost, tests use unique names.
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/"
        return
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{name}"
    finally:
        _rabbitmqctl("delete_vhost", name)
