"""Publishing on RabbitMQ: a refused publish fails alone, and the deadline holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from aioqueue.exceptions import BrokerConnectionError, PublishError
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Envelope, ExchangeSpec, Publish, QueueSpec

from ._support import Proxy
from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


async def _bodies(transport: AmqpTransport, queue: str) -> list[bytes]:
    batch = await transport.take_all(queue, min_count=0)
    assert batch is not None
    await batch.release()
    return [e.body for e in batch.envelopes]


def _errors(outcomes: list[object]) -> list[BaseException]:
    return [o for o in outcomes if isinstance(o, BaseException)]


async def test_missing_exchange_fails_only_its_own_publish(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    missing = f"{queue_name}.missing"
    good = [
        transport.publish(Envelope(body=str(i).encode()), routing_key=queue_name) for i in range(50)
    ]
    bad = transport.publish(Envelope(body=b"lost"), exchange=missing, routing_key="k")
    outcomes = await asyncio.gather(*good[:25], bad, *good[25:], return_exceptions=True)
    errors = _errors(outcomes)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], PublishError), repr(errors[0])
    assert f"exchange {missing!r} does not exist" in str(errors[0])
    assert sorted(await _bodies(transport, queue_name)) == sorted(
        str(i).encode() for i in range(50)
    )
    await transport.delete_queue(queue_name)


async def _exchange_deleted_behind_the_cache(
    make_amqp: MakeTransport, queue_name: str
) -> tuple[AmqpTransport, str]:
    """A transport with queue ``queue_name``, and a fanout exchange it has published to
    that another connection has deleted since (the transport believes it exists)."""
    transport, other = await make_amqp(), await make_amqp()
    exchange = f"{queue_name}.x"
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.declare_exchange(ExchangeSpec(exchange, "fanout"))
    await transport.publish(Envelope(body=b"seen"), exchange=exchange, routing_key="")
    await other.delete_exchange(exchange)
    return transport, exchange


async def test_exchange_deleted_behind_the_cache_fails_only_its_own_publish(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport, exchange = await _exchange_deleted_behind_the_cache(make_amqp, queue_name)
    good = [
        transport.publish(Envelope(body=str(i).encode()), routing_key=queue_name) for i in range(50)
    ]
    bad = transport.publish(Envelope(body=b"lost"), exchange=exchange, routing_key="")
    outcomes = await asyncio.gather(*good[:25], bad, *good[25:], return_exceptions=True)
    errors = _errors(outcomes)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], PublishError), repr(errors[0])
    assert f"exchange {exchange!r} does not exist" in str(errors[0])
    # Publishes caught on the channel the culprit closed are sent again: at least once.
    assert set(await _bodies(transport, queue_name)) == {str(i).encode() for i in range(50)}
    await transport.delete_queue(queue_name)


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[Proxy]:
    proxy = Proxy(amqp_url)
    await proxy.start()
    yield proxy
    await proxy.aclose()


@pytest.mark.timeout(60)
async def test_publish_timeout_holds_when_the_broker_stops_answering(
    make_amqp: MakeTransport, proxy: Proxy, queue_name: str
) -> None:
    transport = await make_amqp(proxy.url, publish_timeout=1.0)
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.publish(Envelope(body=b"before"), routing_key=queue_name)
    proxy.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(BrokerConnectionError, match=r"did not confirm within 1 s"):
            async with asyncio.timeout(15):
                await transport.publish(Envelope(body=b"frozen"), routing_key=queue_name)
        assert time.monotonic() - started < 3
    finally:
        proxy.thaw()
    await transport.publish(Envelope(body=b"after"), routing_key=queue_name)
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_publish_timeout_holds_while_the_broker_is_unreachable(
    make_amqp: MakeTransport, proxy: Proxy, queue_name: str
) -> None:
    transport = await make_amqp(proxy.url, publish_timeout=1.0, reconnect_interval=0.2)
    await transport.declare_queue(QueueSpec(queue_name))
    await proxy.refuse()
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError):
        async with asyncio.timeout(15):
            await transport.publish(Envelope(body=b"nowhere"), routing_key=queue_name)
    assert time.monotonic() - started < 3
    await proxy.start()
    # The transport reconnects by itself, after at most one backoff pause (which grew while
    # the broker was away, so it can be longer than one publish timeout).
    async with asyncio.timeout(20):
        while True:
            try:
                await transport.publish(Envelope(body=b"back"), routing_key=queue_name)
                break
            except BrokerConnectionError:
                await asyncio.sleep(0.2)
    await transport.delete_queue(queue_name)


async def test_batch_commit_into_an_exchange_deleted_behind_the_cache_rolls_back(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport, other = await make_amqp(), await make_amqp()
    parts, out, exchange = f"{queue_name}.parts", f"{queue_name}.out", f"{queue_name}.x"
    for name in (parts, out):
        await transport.declare_queue(QueueSpec(name))
    await transport.declare_exchange(ExchangeSpec(exchange, "fanout"))
    for i in range(3):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=parts)
    batch = await transport.take_all(parts, min_count=3)
    assert batch is not None and len(batch.envelopes) == 3
    await other.delete_exchange(exchange)  # this transport still believes it exists
    with pytest.raises(PublishError, match=r"nothing was published"):
        await batch.commit(
            [
                Publish(Envelope(body=b"first"), routing_key=out),
                Publish(Envelope(body=b"second"), exchange=exchange, routing_key=""),
            ]
        )
    assert sorted(await _bodies(transport, parts)) == [b"0", b"1", b"2"]
    assert await _bodies(transport, out) == []
    # The transport has learnt that the exchange is gone.
    with pytest.raises(PublishError, match=r"does not exist"):
        await transport.publish(Envelope(body=b"x"), exchange=exchange, routing_key="")
    for name in (parts, out):
        await transport.delete_queue(name)


async def test_publish_many_exchange_deleted_behind_the_cache_fails_only_its_own_publish(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport, exchange = await _exchange_deleted_behind_the_cache(make_amqp, queue_name)
    publishes = [
        Publish(Envelope(body=str(i).encode()), routing_key=queue_name) for i in range(600)
    ]
    publishes.insert(300, Publish(Envelope(body=b"lost"), exchange=exchange))
    outcomes = await transport.publish_many(publishes)
    errors = _errors(outcomes)
    assert len(errors) == 1 and outcomes[300] is errors[0], errors
    assert isinstance(errors[0], PublishError), repr(errors[0])
    assert f"exchange {exchange!r} does not exist" in str(errors[0])
    # The broker closed the channel under the rest of the batch: it is sent again.
    assert set(await _bodies(transport, queue_name)) == {str(i).encode() for i in range(600)}
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_publish_many_timeout_holds_when_the_broker_stops_answering(
    make_amqp: MakeTransport, proxy: Proxy, queue_name: str
) -> None:
    transport = await make_amqp(proxy.url, publish_timeout=1.0)
    await transport.declare_queue(QueueSpec(queue_name))
    proxy.freeze()
    try:
        started = time.monotonic()
        async with asyncio.timeout(15):
            outcomes = await transport.publish_many(
                [Publish(Envelope(body=b"frozen"), routing_key=queue_name)] * 300
            )
        assert time.monotonic() - started < 3
    finally:
        proxy.thaw()
    assert len(outcomes) == 300
    for outcome in outcomes:
        assert isinstance(outcome, BrokerConnectionError), repr(outcome)
        assert "did not confirm within 1 s" in str(outcome)
    assert await transport.publish_many(
        [Publish(Envelope(body=b"after"), routing_key=queue_name)]
    ) == [None]
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_publish_many_is_sent_again_over_the_next_connection(
    make_amqp: MakeTransport, proxy: Proxy, queue_name: str
) -> None:
    transport = await make_amqp(proxy.url, publish_timeout=15.0, reconnect_interval=0.1)
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.publish(Envelope(body=b"-1"), routing_key=queue_name)  # opens its channel
    proxy.freeze()
    sending = asyncio.create_task(
        transport.publish_many(
            [Publish(Envelope(body=str(i).encode()), routing_key=queue_name) for i in range(1000)]
        )
    )
    await asyncio.sleep(0.3)  # written to the held connection, not confirmed
    assert not sending.done()
    proxy.drop()
    proxy.thaw()
    assert await sending == [None] * 1000
    # At least once: what the lost connection may have delivered is sent again.
    assert set(await _bodies(transport, queue_name)) == {str(i).encode() for i in range(-1, 1000)}
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_publishes_of_successive_turns_arrive_in_order_while_writes_queue_up(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    """Large publishes a few per turn: the socket falls behind, so later turns wait for
    earlier writes, and none may overtake them."""
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.publish(Envelope(body=b"-1:"), routing_key=queue_name)  # opens its channel
    padding = b"." * 100_000
    sends = []
    for turn in range(100):
        sends += [
            asyncio.ensure_future(
                transport.publish(
                    Envelope(body=b"%d:" % (turn * 4 + i) + padding), routing_key=queue_name
                )
            )
            for i in range(4)
        ]
        await asyncio.sleep(0)
    await asyncio.gather(*sends)
    order = [int(body.split(b":", 1)[0]) for body in await _bodies(transport, queue_name)]
    assert order == list(range(-1, 400))
    await transport.delete_queue(queue_name)


@pytest.mark.timeout(60)
async def test_writes_queued_behind_a_held_write_end_with_its_connection(
    make_amqp: MakeTransport, proxy: Proxy, queue_name: str
) -> None:
    """Publishes whose writes wait behind one the held connection never drains are sent
    over the next connection when it dies, and nothing keeps waiting on the dead one."""
    transport = await make_amqp(proxy.url, publish_timeout=30.0, reconnect_interval=0.1)
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.publish(Envelope(body=b"-1"), routing_key=queue_name)  # opens its channel
    proxy.freeze()
    body = b"." * 1_000_000
    sending = [
        asyncio.ensure_future(
            transport.publish(Envelope(body=b"%d:" % i + body), routing_key=queue_name)
        )
        for i in range(64)
    ]
    await asyncio.sleep(0.5)
    assert not any(send.done() for send in sending)
    proxy.drop()
    proxy.thaw()
    await asyncio.gather(*sending)
    await asyncio.sleep(0.2)
    stuck = [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "").startswith("_Outbox.")
    ]
    assert stuck == []
    received = {
        int(b.split(b":", 1)[0]) for b in await _bodies(transport, queue_name) if b != b"-1"
    }
    assert received == set(range(64))
    await transport.delete_queue(queue_name)
