"""Helpers for tests: the transport conformance suite.

:func:`check_transport` runs the behaviour aioqueue relies on against any
:class:`~aioqueue.transport.Transport`; the memory and AMQP transports both pass it, and
a third-party transport can run it against itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from .exceptions import BrokerError, PreconditionFailedError, PublishError, UnroutableError
from .transport.base import (
    BindingSpec,
    Delivery,
    Envelope,
    ExchangeSpec,
    Lease,
    Publish,
    QueueSpec,
    QueueState,
    Transport,
)

__all__ = ("check_transport",)

TransportFactory = Callable[[], Awaitable[Transport]]


async def check_transport(make_transport: TransportFactory) -> None:
    """Run every conformance check against fresh transports from ``make_transport``.

    Each check gets a connected transport of its own; some call ``make_transport`` again
    for a second connection to the same broker (and close it), so every transport it
    returns must reach the same broker, as two processes would.

    :raises AssertionError: naming the check that failed.
    """
    for check in _CHECKS:
        transport = await make_transport()
        prefix = f"conformance.{uuid.uuid4().hex[:8]}"
        try:
            await asyncio.wait_for(check(transport, prefix, make_transport), 10)
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


async def _bodies(transport: Transport, queue: str) -> list[bytes]:
    """The bodies waiting in ``queue``, sorted, left where they are."""
    batch = await transport.take_all(queue, min_count=0)
    assert batch is not None, f"{queue!r} is locked"
    await batch.release()
    return sorted(e.body for e in batch.envelopes)


async def _state_soon(transport: Transport, queue: str, expected: QueueState) -> None:
    """Wait (briefly) for ``queue`` to reach ``expected``: the broker settles what a
    closed channel held a moment after the close."""
    state = None
    for _ in range(40):
        if (state := await transport.inspect_queue(queue)) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue!r}: {state}, expected {expected}")


async def _check_round_trip(transport: Transport, prefix: str, make: TransportFactory) -> None:
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


async def _check_prefetch_and_redelivery(
    transport: Transport, prefix: str, make: TransportFactory
) -> None:
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


async def _check_exchanges(transport: Transport, prefix: str, make: TransportFactory) -> None:
    topic, fanout = f"{prefix}.topic", f"{prefix}.fanout"
    a, b = await _queue(transport, f"{prefix}.a"), await _queue(transport, f"{prefix}.b")
    await transport.declare_exchange(ExchangeSpec(topic, "topic"))
    await transport.declare_exchange(ExchangeSpec(fanout, "fanout"))
    await transport.bind(BindingSpec(a, topic, "eu.#"))
    await transport.bind(BindingSpec(b, topic, "*.fr"))
    await transport.bind(BindingSpec(a, fanout))
    await transport.bind(BindingSpec(b, fanout))
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


async def _check_headers_exchange(
    transport: Transport, prefix: str, make: TransportFactory
) -> None:
    exchange = f"{prefix}.headers"
    every, some = await _queue(transport, f"{prefix}.all"), await _queue(transport, f"{prefix}.any")
    await transport.declare_exchange(ExchangeSpec(exchange, "headers"))
    wanted = {"kind": "invoice", "region": "eu"}
    await transport.bind(BindingSpec(every, exchange, arguments={"x-match": "all", **wanted}))
    await transport.bind(BindingSpec(some, exchange, arguments={"x-match": "any", **wanted}))
    for body, headers in ((b"both", wanted), (b"one", {"kind": "invoice", "region": "us"})):
        await transport.publish(
            Envelope(body=body, headers=headers), exchange=exchange, routing_key="", mandatory=True
        )
    try:
        await transport.publish(
            Envelope(body=b"none", headers={"kind": "order"}),
            exchange=exchange,
            routing_key="",
            mandatory=True,
        )
    except UnroutableError:
        pass
    else:
        raise AssertionError("headers that match no binding: the publish is unroutable")
    assert await _bodies(transport, every) == [b"both"], "x-match all needs every header"
    assert await _bodies(transport, some) == [b"both", b"one"], "x-match any needs one"
    await _cleanup(transport, every, some)
    await transport.delete_exchange(exchange)


async def _check_mandatory(transport: Transport, prefix: str, make: TransportFactory) -> None:
    missing = f"{prefix}.none"
    await _expect_unroutable(transport, "", missing)
    topic, queue = f"{prefix}.topic", await _queue(transport, f"{prefix}.q")
    await transport.declare_exchange(ExchangeSpec(topic, "topic"))
    await transport.bind(BindingSpec(queue, topic, "eu.#"))
    await _expect_unroutable(transport, topic, "us.orders")
    # Not mandatory: dropped without a word. Routed: the refusals cost it nothing.
    await transport.publish(Envelope(body=b"dropped"), exchange=topic, routing_key="us.x")
    await transport.publish(
        Envelope(body=b"kept"), exchange=topic, routing_key="eu.orders", mandatory=True
    )
    assert await _bodies(transport, queue) == [b"kept"]
    await _cleanup(transport, queue)
    await transport.delete_exchange(topic)


async def _expect_unroutable(transport: Transport, exchange: str, routing_key: str) -> None:
    try:
        await transport.publish(
            Envelope(body=b"x", correlation_id="m"),
            exchange=exchange,
            routing_key=routing_key,
            mandatory=True,
        )
    except UnroutableError as exc:
        assert (exc.exchange, exc.routing_key) == (exchange, routing_key), exc
        assert repr(routing_key) in str(exc), f"the error names the routing key: {exc}"
    else:
        raise AssertionError(
            f"a mandatory publish to {exchange!r}/{routing_key!r} that no queue is bound to "
            "receive must raise UnroutableError"
        )


async def _check_publish_many(transport: Transport, prefix: str, make: TransportFactory) -> None:
    assert await transport.publish_many([]) == [], "nothing to publish: no outcome"
    topic, queue = f"{prefix}.topic", await _queue(transport, f"{prefix}.q")
    missing = f"{prefix}.missing"
    await transport.declare_exchange(ExchangeSpec(topic, "topic"))
    await transport.bind(BindingSpec(queue, topic, "eu.#"))
    # More messages than one write holds, one larger than a frame, and refusals among them.
    bodies = [str(i).encode() for i in range(600)]
    bodies[300] = b"x" * 300_000
    publishes = [Publish(Envelope(body=b), routing_key=queue, mandatory=True) for b in bodies]
    publishes[100:100] = [Publish(Envelope(body=b"u"), topic, "us.x", mandatory=True)]
    publishes[200:200] = [Publish(Envelope(body=b"m"), missing, queue)]
    publishes[400:400] = [Publish(Envelope(body=b"eu"), topic, "eu.orders", mandatory=True)]
    publishes[500:500] = [Publish(Envelope(body=b"dropped"), topic, "us.y")]
    outcomes = await transport.publish_many(publishes)
    assert len(outcomes) == len(publishes), "one outcome per publish"
    unroutable, refused = outcomes[100], outcomes[200]
    assert isinstance(unroutable, UnroutableError), f"mandatory, no route: {unroutable!r}"
    assert (unroutable.exchange, unroutable.routing_key) == (topic, "us.x"), unroutable
    assert isinstance(refused, PublishError), f"a missing exchange: {refused!r}"
    assert repr(missing) in str(refused), f"the error names the exchange: {refused}"
    assert [o for i, o in enumerate(outcomes) if i not in (100, 200)] == [None] * (
        len(publishes) - 2
    ), "every other publish is confirmed (a dropped one that is not mandatory too)"
    got = _Collector()
    consumer = await transport.consume(queue, got, prefetch=1000)
    delivered = [d.envelope.body for d in await got.wait_for(601)]
    await consumer.cancel()
    expected = [
        p.envelope.body for p in publishes if p.exchange == "" or p.routing_key == "eu.orders"
    ]
    assert delivered == expected, "publishes of one call arrive in their order"
    await _cleanup(transport, queue)
    await transport.delete_exchange(topic)


async def _check_dead_letter_ttl(transport: Transport, prefix: str, make: TransportFactory) -> None:
    target = await _queue(transport, f"{prefix}.target")
    delay = f"{prefix}.delay"
    await transport.declare_queue(
        QueueSpec(delay, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": ""})
    )
    await transport.declare_exchange(ExchangeSpec(delay, "fanout"))
    await transport.bind(BindingSpec(delay, delay))
    # The fanout ignores the key; dead-lettering uses it to reach the target.
    await transport.publish(Envelope(body=b"later"), exchange=delay, routing_key=target)
    assert (await _receive_one(transport, target)).envelope.body == b"later"
    await _cleanup(transport, target, delay)
    await transport.delete_exchange(delay)


async def _check_take_all(transport: Transport, prefix: str, make: TransportFactory) -> None:
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


async def _check_missing_exchange(
    transport: Transport, prefix: str, make: TransportFactory
) -> None:
    queue = await _queue(transport, f"{prefix}.q")
    missing = f"{prefix}.missing"
    try:
        await transport.publish(Envelope(body=b"x"), exchange=missing, routing_key=queue)
    except PublishError as exc:
        assert repr(missing) in str(exc), f"the error names the exchange: {exc}"
    else:
        raise AssertionError("a publish to a missing exchange must raise PublishError")
    # The refusal costs nothing to the next publish.
    await transport.publish(Envelope(body=b"still"), routing_key=queue)
    assert (await _receive_one(transport, queue)).envelope.body == b"still"
    await _cleanup(transport, queue)


async def _check_preconditions(transport: Transport, prefix: str, make: TransportFactory) -> None:
    queue, exchange, other = f"{prefix}.q", f"{prefix}.x", f"{prefix}.other"
    await transport.declare_queue(QueueSpec(queue, arguments={"x-message-ttl": 1000}))
    await transport.declare_queue(QueueSpec(queue, arguments={"x-message-ttl": 1000}))
    await _expect_refused(
        transport.declare_queue(QueueSpec(queue, arguments={"x-message-ttl": 2000})),
        "x-message-ttl",
    )
    await _expect_refused(
        transport.declare_queue(
            QueueSpec(queue, arguments={"x-message-ttl": 1000, "x-max-priority": 10})
        ),
        "x-max-priority",
    )
    # Right after a refusal, on the same transport: other declarations and publishes.
    await transport.declare_queue(QueueSpec(other, arguments={"x-max-priority": 10}))
    await transport.publish(Envelope(body=b"next", priority=5), routing_key=other)
    assert await transport.purge_queue(other) == 1
    await transport.declare_exchange(ExchangeSpec(exchange, "direct"))
    await _expect_refused(transport.declare_exchange(ExchangeSpec(exchange, "fanout")), "type")
    await transport.bind(BindingSpec(queue, exchange, "k"))
    await transport.publish(Envelope(body=b"ok"), exchange=exchange, routing_key="k")
    assert (await _receive_one(transport, queue)).envelope.body == b"ok"
    await _cleanup(transport, queue, other)
    await transport.delete_exchange(exchange)


async def _expect_refused(declaration: Awaitable[None], arg: str) -> None:
    try:
        await declaration
    except PreconditionFailedError as exc:
        # As RabbitMQ says it: "inequivalent arg 'x-max-priority' for queue 'q' ...".
        assert f"inequivalent arg {arg!r}" in str(exc), f"the error names {arg!r}: {exc}"
    else:
        raise AssertionError(f"a declaration with another {arg!r} must be refused")


async def _check_exchange_arguments(
    transport: Transport, prefix: str, make: TransportFactory
) -> None:
    exchange, alternate = f"{prefix}.x", f"{prefix}.alternate"
    assert not await transport.inspect_exchange(exchange), "not declared yet"
    assert await transport.inspect_exchange(""), "the default exchange exists"
    await transport.declare_exchange(ExchangeSpec(alternate, "fanout"))
    spec = ExchangeSpec(exchange, "topic", arguments={"alternate-exchange": alternate})
    await transport.declare_exchange(spec)
    await transport.declare_exchange(spec)
    assert await transport.inspect_exchange(exchange)
    await _expect_refused(
        transport.declare_exchange(
            ExchangeSpec(exchange, "topic", arguments={"alternate-exchange": f"{prefix}.else"})
        ),
        "alternate-exchange",
    )
    await _expect_refused(
        transport.declare_exchange(ExchangeSpec(exchange, "topic")), "alternate-exchange"
    )
    # The arguments reached the broker: what the exchange cannot route goes to the other.
    caught = await _queue(transport, f"{prefix}.caught")
    await transport.bind(BindingSpec(caught, alternate))
    await transport.publish(
        Envelope(body=b"stray"), exchange=exchange, routing_key="no.binding", mandatory=True
    )
    assert await _bodies(transport, caught) == [b"stray"]
    await _cleanup(transport, caught)
    await transport.delete_exchange(exchange)
    await transport.delete_exchange(alternate)
    assert not await transport.inspect_exchange(exchange), "deleted"


async def _check_inspect_queue(transport: Transport, prefix: str, make: TransportFactory) -> None:
    missing = f"{prefix}.missing"
    assert await transport.inspect_queue(missing) is None, "a missing queue has no state"
    queue = await _queue(transport, f"{prefix}.q")
    assert await transport.inspect_queue(queue) == QueueState(queue, messages=0, consumers=0)
    for i in range(3):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)
    assert await transport.inspect_queue(queue) == QueueState(queue, messages=3, consumers=0)
    held = _Collector(ack=False)
    other = await make()
    try:
        consumer = await other.consume(queue, held, prefetch=1)
        await held.wait_for(1)
        # The delivered message is no longer waiting; a consumer elsewhere counts too.
        await _state_soon(transport, queue, QueueState(queue, messages=2, consumers=1))
        await consumer.close()
        await _state_soon(transport, queue, QueueState(queue, messages=3, consumers=0))
    finally:
        await other.aclose()
    assert await transport.inspect_queue(missing) is None, "inspecting declares nothing"
    await _cleanup(transport, queue)


async def _check_purge(transport: Transport, prefix: str, make: TransportFactory) -> None:
    queue, target = await _queue(transport, f"{prefix}.q"), await _queue(transport, f"{prefix}.t")
    for i in range(3):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)
    assert await transport.purge_queue(queue) == 3, "purge says how many it removed"
    assert await transport.inspect_queue(queue) == QueueState(queue, messages=0, consumers=0)
    assert await transport.purge_queue(queue) == 0

    for i in range(2):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=target)
    held = _Collector(ack=False)
    consumer = await transport.consume(target, held, prefetch=1)
    await held.wait_for(1)
    assert await transport.purge_queue(target) == 1, "only what is waiting is purged"
    await consumer.close()
    # What the consumer held unacked goes back to the queue.
    await _state_soon(transport, target, QueueState(target, messages=1, consumers=0))

    missing = f"{prefix}.missing"
    try:
        await transport.purge_queue(missing)
    except BrokerError as exc:
        assert repr(missing) in str(exc), f"the error names the queue: {exc}"
    else:
        raise AssertionError("purging a missing queue must raise BrokerError")
    # The refusal costs nothing to what follows.
    await transport.declare_queue(QueueSpec(missing))
    await transport.publish(Envelope(body=b"after"), routing_key=missing)
    assert await transport.purge_queue(missing) == 1
    await _cleanup(transport, target, queue, missing)


async def _check_batch_all_or_nothing(
    transport: Transport, prefix: str, make: TransportFactory
) -> None:
    parts, out = (
        await _queue(transport, f"{prefix}.parts"),
        await _queue(transport, f"{prefix}.out"),
    )
    for i in range(2):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=parts)
    batch = await transport.take_all(parts, min_count=2)
    assert batch is not None and len(batch.envelopes) == 2
    try:
        await batch.commit(
            [
                Publish(Envelope(body=b"first"), routing_key=out),
                Publish(Envelope(body=b"second"), exchange=f"{prefix}.missing", routing_key=out),
            ]
        )
    except PublishError:
        pass
    else:
        raise AssertionError("a commit publishing to a missing exchange must raise PublishError")
    left = await transport.take_all(parts, min_count=0)
    assert left is not None, "a failed commit releases the lock"
    assert sorted(e.body for e in left.envelopes) == [b"0", b"1"], "the parts stay queued"
    await left.release()
    sent = await transport.take_all(out, min_count=0)
    assert sent is not None and sent.envelopes == [], "a failed commit publishes nothing"
    await sent.release()
    await _cleanup(transport, parts, out)


async def _check_lease(transport: Transport, prefix: str, make: TransportFactory) -> None:
    other = await make()
    try:
        name = f"{prefix}.lease"
        lease = await transport.acquire_lease(name)
        assert lease is not None and lease.held and lease.name == name
        assert await other.acquire_lease(name) is None, "held by another connection"
        assert await transport.acquire_lease(name) is None, "held by another caller here"
        await lease.release()
        await lease.release()
        assert not lease.held, "released"
        await asyncio.wait_for(lease.wait_lost(), 1)
        taken = await other.acquire_lease(name)
        assert taken is not None, "a released lease can be taken elsewhere"
        await taken.release()

        both = await asyncio.gather(*(transport.acquire_lease(f"{name}.2") for _ in range(3)))
        held = [lease for lease in both if lease is not None]
        assert len(held) == 1, f"concurrent callers on one transport: {len(held)} got it"

        lease = await transport.acquire_lease(name)
        assert lease is not None
        lost = asyncio.ensure_future(lease.wait_lost())
        await transport.aclose()
        await asyncio.wait_for(lost, 5)
        assert not lease.held, "a closed connection loses its leases"
        # The broker may take a moment to drop what the closed connection held.
        assert await _acquire_soon(other, name) is not None, "a closed connection frees it"
        assert await _acquire_soon(other, f"{name}.2") is not None, "all its leases go"
    finally:
        await other.aclose()


async def _acquire_soon(transport: Transport, name: str) -> Lease | None:
    for _ in range(50):
        if (lease := await transport.acquire_lease(name)) is not None:
            return lease
        await asyncio.sleep(0.05)
    return None


async def _check_state(transport: Transport, prefix: str, make: TransportFactory) -> None:
    store = f"{prefix}.store"
    assert await transport.state_read(store) == {}, "a store never written is empty"
    await transport.state_put(store, "a", b"1")
    await transport.state_put(store, "b", b"2")
    await transport.state_put(store, "a", b"3")
    await transport.state_delete(store, "b")
    await transport.state_delete(store, "never")
    assert await transport.state_read(store) == {"a": b"3"}
    assert await transport.state_read(store) == {"a": b"3"}, "reading changes nothing"
    other = await make()
    try:
        assert await other.state_read(store) == {"a": b"3"}, "read on another connection"
        await other.state_put(store, "c", b"")
        many = {f"key.{i}": str(i).encode() for i in range(60)}
        for key, value in many.items():
            await other.state_put(store, key, value)
        for i in range(0, 60, 2):
            await transport.state_delete(store, f"key.{i}")
        expected = {"a": b"3", "c": b""} | {k: v for k, v in many.items() if int(k[4:]) % 2}
        assert await transport.state_read(store) == expected
        assert await other.state_read(store) == expected
    finally:
        await other.aclose()


async def _check_consumer_close(transport: Transport, prefix: str, make: TransportFactory) -> None:
    queue = await _queue(transport, f"{prefix}.q")
    for i in range(3):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)
    held = _Collector(ack=False)
    consumer = await transport.consume(queue, held, prefetch=10)
    await held.wait_for(3)
    await consumer.close()
    await consumer.close()
    again = _Collector()
    second = await transport.consume(queue, again, prefetch=10)
    await again.wait_for(3)
    assert sorted(d.envelope.body for d in again.items) == [b"0", b"1", b"2"]
    assert all(d.redelivered for d in again.items), "what a closed consumer held comes back"
    await second.close()
    await _cleanup(transport, queue)


async def _check_consumer_lost(transport: Transport, prefix: str, make: TransportFactory) -> None:
    queue = await _queue(transport, f"{prefix}.q")
    consumer = await transport.consume(queue, _Collector(), prefetch=1)
    closed = await transport.consume(queue, _Collector(), prefetch=1)
    await closed.close()
    await transport.delete_queue(queue)
    error = await asyncio.wait_for(consumer.wait_lost(), 9)
    assert isinstance(error, BrokerError) and repr(queue) in str(error), error
    waiting = asyncio.ensure_future(closed.wait_lost())
    await asyncio.sleep(0.1)
    assert not waiting.done(), "a consumer closed on purpose is not lost"
    waiting.cancel()


async def _check_generation(transport: Transport, prefix: str, make: TransportFactory) -> None:
    before = transport.generation
    assert before >= 1, "a connected transport has a generation"
    await transport.connect()
    assert transport.generation == before, "connect() on an open transport changes nothing"
    await transport.aclose()
    await transport.connect()
    assert transport.generation > before, "every new connection has a new generation"


_CHECKS = (
    _check_take_all,
    _check_round_trip,
    _check_prefetch_and_redelivery,
    _check_exchanges,
    _check_headers_exchange,
    _check_mandatory,
    _check_publish_many,
    _check_dead_letter_ttl,
    _check_missing_exchange,
    _check_preconditions,
    _check_exchange_arguments,
    _check_inspect_queue,
    _check_purge,
    _check_batch_all_or_nothing,
    _check_lease,
    _check_state,
    _check_consumer_close,
    _check_consumer_lost,
    _check_generation,
)
