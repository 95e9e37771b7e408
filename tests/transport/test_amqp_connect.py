"""Connecting: one connection however many callers, again in another event loop; the
connect budget, each cause of a failure named, several nodes, the command line's one line."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from aioqueue import BrokerConnectionError
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Envelope, QueueSpec
from tests.processes import ROOT, error_line, run_cli

from ._support import connection_names, needs_rabbitmqctl

pytestmark = [pytest.mark.anyio]


@pytest.mark.amqp
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


@pytest.mark.amqp
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


@pytest.mark.amqp
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


@pytest.mark.amqp
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


# -- the connect budget: clear causes, bounded time ------------------------------------


def _with(amqp_url: str, **parts: str) -> str:
    return urlunsplit(urlsplit(amqp_url)._replace(**parts))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _refusal(url: str, **kwargs: Any) -> tuple[str, float]:
    transport = AmqpTransport(url, reconnect_interval=0.05, **kwargs)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerConnectionError) as raised:
            await transport.connect()
    finally:
        await transport.aclose()
    return str(raised.value), time.monotonic() - started


async def test_a_refused_port_is_retried_within_the_budget() -> None:
    port = _free_port()
    text, elapsed = await _refusal(
        f"amqp://guest:secret@127.0.0.1:{port}/v", connect_timeout=10, connect_retries=2
    )
    assert text.startswith(
        f"connect to host 127.0.0.1, port {port}, vhost 'v' (amqp://guest:****@127.0.0.1:{port}/v)"
        ": Connection refused"
    )
    assert "gave up after 3 attempts" in text
    assert "secret" not in text
    assert elapsed < 10


async def test_an_unknown_host_is_a_dns_failure() -> None:
    text, elapsed = await _refusal(
        "amqp://guest:guest@aioqueue-nowhere.invalid:5672/", connect_timeout=10, connect_retries=0
    )
    assert "the host name 'aioqueue-nowhere.invalid' does not resolve" in text
    assert elapsed < 10


async def test_a_silent_server_uses_up_the_budget_and_no_more() -> None:
    with socket.socket() as silent:  # accepts connections, never speaks AMQP
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        text, elapsed = await _refusal(
            f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=1.0, connect_retries=5
        )
    assert "no answer within 1 s" in text
    assert elapsed < 8


@pytest.mark.amqp
async def test_a_wrong_password_is_not_retried(amqp_url: str) -> None:
    url = _with(amqp_url, netloc=urlsplit(amqp_url).netloc.replace(":guest@", ":wrong@"))
    text, _ = await _refusal(url, connect_timeout=20, connect_retries=3)
    assert "the broker refused the login of user 'guest'" in text
    assert "gave up after 1 attempt " in text
    assert "wrong@" not in text


@pytest.mark.amqp
async def test_a_missing_vhost_is_named(amqp_url: str) -> None:
    missing = f"aioqueue-missing-{uuid.uuid4().hex[:8]}"
    text, _ = await _refusal(_with(amqp_url, path=f"/{missing}"), connect_timeout=20)
    assert f"the broker refused virtual host {missing!r}" in text
    assert "gave up after 1 attempt " in text


@pytest.mark.amqp
async def test_several_nodes_fail_over_to_the_one_that_answers(amqp_url: str) -> None:
    dead = _with(amqp_url, netloc=f"guest:guest@127.0.0.1:{_free_port()}")
    transport = AmqpTransport([dead, amqp_url], connect_timeout=20, connect_retries=0)
    try:
        await transport.connect()
        assert transport.node == amqp_url
    finally:
        await transport.aclose()


def test_the_cli_says_why_in_one_line() -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIOQUEUE_TEST_BROKER": f"amqp://guest:secret@127.0.0.1:{port}/",
    }
    started = time.monotonic()
    out = run_cli(
        "worker",
        "-A",
        "tests.faults.worker_app:app",
        "--connect-timeout",
        "5",
        "--connect-retries",
        "1",
        env=env,
    )
    assert out.returncode == 1
    line = error_line(out)
    assert line.startswith(f"error: connect to host 127.0.0.1, port {port}, vhost ")
    assert "Connection refused" in line
    assert "gave up after 2 attempts" in line and "secret" not in line
    assert time.monotonic() - started < 25
    bad = run_cli("worker", "-A", "tests.faults.worker_app:app", "--connect-timeout", "0", env=env)
    assert bad.returncode == 1
    assert "connect_timeout must be positive" in error_line(bad)
