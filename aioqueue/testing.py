"""Helpers for tests: the transport conformance suite.

:func:`check_transport` runs the behaviour aioqueue relies on against any
:class:`~aioqueue.transport.Transport`; the memory and AMQP transports both pass it, and
a third-party transport can run it against itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from .exceptions import PublishError
from .transport.base import (
    Binding,
    Delivery,
    Envelope,
    ExchangeSpec,
    Publish,
    QueueSpec,
    Transport,
)

__all__ = ("check_transport",)

TransportFactory = Callable[[], Awaitable[Transport]]


async def check_transport(make_transport: TransportFactory) -> None:
    """Run every conformance check against fresh transports from ``make_transport``.

    :raises AssertionError: naming the check that failed.
    """
    for check in _CHECKS:
        transport = await make_transport()
        prefix = f"conformance.{uuid.uuid4().hex[:8]}"
        try:
            await asyncio.wait_for(check(transport, prefix), 10)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__}: {exc}") from exc
        finally:
            await transport.aclose()


class _Collector:
    def __init__(self, ack: bool = True) -> None:
        self.items: list[Delivery] = []
        self.ack = ack
        self.changed = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.items.append(delivery)
        if self.ack:
            await delivery.ack()
        self.changed.set()

    async def wait_for(self, count: int) -> list[Delivery]:
        async with asyncio.timeout(5):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.items


async def _queue(transport: Transport, name: str) -> str:
    await transport.declare_queue(QueueSpec(name))
    return name


async def _receive_one(transport: Transport, queue: str) -> Delivery:
    """The next message of ``queue`` (acked), with the consumer cancelled again."""
    got = _Collector()
    consumer = await transport.consume(queue, got, prefetch=1)
    (delivery,) = await got.wait_for(1)
    await consumer.cancel()
    return delivery


async def _cleanup(transport: Transport, *names: str) -> None:
    for name in names:
        await transport.delete_queue(name)


async def _check_round_trip(transport: Transport, prefix: str) -> None:
    queue = await _queue(transport, f"{prefix}.q")
    sent = Envelope(
        body=b"[[1], {}, {}]",
        headers={"task": "t", "id": "1", "n": 3, "nested": {"a": [1, None]}},
        correlation_id="c1",
        reply_to="r1",
        priority=2,
    )
    await transport.publish(sent, routing_key=queue)
    delivery = await _receive_one(transport, queue)
    env = delivery.envelope
    assert env.body == sent.body, env.body
    assert env.headers == sent.headers, env.headers
    assert (env.correlation_id, env.reply_to, env.priority) == ("c1", "r1", 2)
    assert env.content_type == "application/json" and env.persistent
    assert delivery.queue == queue and not delivery.redelivered
    await _cleanup(transport, queue)


async def _check_prefetch_and_redelivery(transport: Transport, prefix: str) -> None:
    queue = await _queue(transport, f"{prefix}.q")
    for i in range(5):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)
    held = _Collector(ack=False)
    consumer = await transport.consume(queue, held, prefetch=2)
    await held.wait_for(2)
    await asyncio.sleep(0.2)
    assert len(held.items) == 2, f"prefetch 2 delivered {len(held.items)}"
    await held.items[0].reject(requeue=True)
    await held.wait_for(3)
    again = held.items[2]
    assert again.redelivered and again.envelope.body == b"0", "requeued message comes back"
    await consumer.cancel()
    await _cleanup(transport, queue)


async def _check_exchanges(transport: Transport, prefix: str) -> None:
    topic, fanout = f"{prefix}.topic", f"{prefix}.fanout"
    a, b = await _queue(transport, f"{prefix}.a"), await _queue(transport, f"{prefix}.b")
    await transport.declare_exchange(ExchangeSpec(topic, "topic"))
    await transport.declare_exchange(ExchangeSpec(fanout, "fanout"))
    await transport.bind(Binding(a, topic, "eu.#"))
    await transport.bind(Binding(b, topic, "*.fr"))
    await transport.bind(Binding(a, fanout))
    await transport.bind(Binding(b, fanout))
    await transport.publish(Envelope(body=b"1"), exchange=topic, routing_key="eu.de.x")
    await transport.publish(Envelope(body=b"2"), exchange=topic, routing_key="eu.fr")
    await transport.publish(Envelope(body=b"3"), exchange=fanout, routing_key="")
    got_a, got_b = _Collector(), _Collector()
    consumers = [
        await transport.consume(a, got_a, prefetch=10),
        await transport.consume(b, got_b, prefetch=10),
    ]
    await got_a.wait_for(3)
    await got_b.wait_for(2)
    assert sorted(d.envelope.body for d in got_a.items) == [b"1", b"2", b"3"]
    assert sorted(d.envelope.body for d in got_b.items) == [b"2", b"3"]
    for consumer in consumers:
        await consumer.cancel()
    await _cleanup(transport, a, b)
    await transport.delete_exchange(topic)
    await transport.delete_exchange(fanout)


async def _check_mandatory(transport: Transport, prefix: str) -> None:
    try:
        await transport.publish(
            Envelope(body=b"x", correlation_id="m"), routing_key=f"{prefix}.none", mandatory=True
        )
    except PublishError:
        return
    raise AssertionError("an unroutable mandatory publish must raise PublishError")


async def _check_dead_letter_ttl(transport: Transport, prefix: str) -> None:
    target = await _queue(transport, f"{prefix}.target")
    delay = f"{prefix}.delay"
    await transport.declare_queue(
        QueueSpec(delay, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": ""})
    )
    await transport.declare_exchange(ExchangeSpec(delay, "fanout"))
    await transport.bind(Binding(delay, delay))
    # The fanout ignores the key; dead-lettering uses it to reach the target.
    await transport.publish(Envelope(body=b"later"), exchange=delay, routing_key=target)
    assert (await _receive_one(transport, target)).envelope.body == b"later"
    await _cleanup(transport, target, delay)
    await transport.delete_exchange(delay)


async def _check_take_all(transport: Transport, prefix: str) -> None:
    queue, out = (
        await _queue(transport, f"{prefix}.parts"),
        await _queue(transport, f"{prefix}.out"),
    )
    for i in range(3):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)
    batch = await transport.take_all(queue, min_count=4)
    assert batch is not None and batch.envelopes == [], "fewer than min_count: nothing taken"
    assert await transport.take_all(queue, min_count=1) is None, "the lock is exclusive"
    await batch.release()
    batch = await transport.take_all(queue, min_count=3)
    assert batch is not None
    assert sorted(e.body for e in batch.envelopes) == [b"0", b"1", b"2"]
    await batch.release()
    batch = await transport.take_all(queue, min_count=3)
    assert batch is not None and len(batch.envelopes) == 3, "release returns the messages"
    await batch.commit([Publish(Envelope(body=b"fired"), routing_key=out)])
    after = await transport.take_all(queue, min_count=0)
    assert after is not None and after.envelopes == [], "commit removes the taken messages"
    await after.release()
    assert (await _receive_one(transport, out)).envelope.body == b"fired"
    await _cleanup(transport, queue, out)


_CHECKS = (
    _check_take_all,
    _check_round_trip,
    _check_prefetch_and_redelivery,
    _check_exchanges,
    _check_mandatory,
    _check_dead_letter_ttl,
)
