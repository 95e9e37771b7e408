"""The memory transport refuses declarations as RabbitMQ does, and routes what an
exchange cannot to its alternate exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioqueue.exceptions import PreconditionFailedError, UnroutableError
from aioqueue.transport.base import BindingSpec, Envelope, ExchangeSpec, QueueSpec, QueueState
from aioqueue.transport.memory import MemoryTransport, _inequivalence

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("asked", "current", "refusal"),
    [
        ({"durable": True}, {"durable": True}, None),
        (
            {"durable": False},
            {"durable": True},
            "inequivalent arg 'durable' for queue 'q': received 'false' but current is 'true'",
        ),
        (
            {"durable": True, "x-max-priority": 10},
            {"durable": True},
            "inequivalent arg 'x-max-priority' for queue 'q': received 10 but current is none",
        ),
        (
            {"durable": True},
            {"durable": True, "x-dead-letter-exchange": "dlx"},
            "inequivalent arg 'x-dead-letter-exchange' for queue 'q': received none but "
            "current is 'dlx'",
        ),
        (
            {"durable": True, "x-message-ttl": 1000},
            {"durable": True, "x-message-ttl": 2000},
            "inequivalent arg 'x-message-ttl' for queue 'q': received 1000 but current is 2000",
        ),
    ],
)
def test_inequivalence(asked: dict[str, Any], current: dict[str, Any], refusal: str | None) -> None:
    said = _inequivalence("queue", "q", asked, current)
    assert said == (None if refusal is None else f"PRECONDITION_FAILED - {refusal}")


async def test_refusals_say_what_was_asked_and_what_is_current() -> None:
    transport = MemoryTransport()
    await transport.declare_queue(QueueSpec("q"))
    with pytest.raises(PreconditionFailedError) as refused:
        await transport.declare_queue(QueueSpec("q", arguments={"x-max-priority": 10}))
    assert str(refused.value) == (
        "declare queue 'q': PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for "
        "queue 'q': received 10 but current is none"
    )
    await transport.declare_exchange(ExchangeSpec("x", "direct"))
    with pytest.raises(PreconditionFailedError, match="received 'fanout' but current is 'direct'"):
        await transport.declare_exchange(ExchangeSpec("x", "fanout"))


async def test_arguments_rabbitmq_does_not_compare_are_ignored() -> None:
    transport = MemoryTransport()
    await transport.declare_queue(QueueSpec("q", arguments={"x-custom": 1}))
    await transport.declare_queue(QueueSpec("q", arguments={"x-custom": 2}))
    await transport.declare_exchange(ExchangeSpec("x", arguments={"x-custom": 1}))
    await transport.declare_exchange(ExchangeSpec("x", arguments={"x-custom": 2}))
    with pytest.raises(PreconditionFailedError, match="'alternate-exchange'"):
        await transport.declare_exchange(ExchangeSpec("x", arguments={"alternate-exchange": "y"}))


async def test_alternate_exchanges_in_a_cycle_route_nowhere() -> None:
    transport = MemoryTransport()
    await transport.declare_exchange(ExchangeSpec("a", arguments={"alternate-exchange": "b"}))
    await transport.declare_exchange(ExchangeSpec("b", arguments={"alternate-exchange": "a"}))
    with pytest.raises(UnroutableError):
        await transport.publish(Envelope(body=b""), exchange="a", routing_key="k", mandatory=True)
    await transport.declare_queue(QueueSpec("q"))
    await transport.bind(BindingSpec("q", "b", "k"))
    await transport.publish(Envelope(body=b""), exchange="a", routing_key="k", mandatory=True)
    assert await transport.inspect_queue("q") == QueueState("q", messages=1, consumers=0)


async def test_a_headers_binding_without_a_value_asks_for_the_header_only() -> None:
    transport = MemoryTransport()
    await transport.declare_exchange(ExchangeSpec("h", "headers"))
    await transport.declare_queue(QueueSpec("q"))
    await transport.bind(BindingSpec("q", "h", arguments={"trace": None}))
    await transport.publish(
        Envelope(body=b"", headers={"trace": "on"}), exchange="h", routing_key=""
    )
    with pytest.raises(UnroutableError):
        await transport.publish(Envelope(body=b""), exchange="h", routing_key="", mandatory=True)
    assert transport.queue_length("q") == 1


async def test_purged_messages_do_not_expire_into_the_dead_letter_queue() -> None:
    transport = MemoryTransport()
    await transport.declare_queue(QueueSpec("dead"))
    dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"}
    await transport.declare_queue(QueueSpec("q", arguments={"x-message-ttl": 50, **dead_letter}))
    await transport.publish(Envelope(body=b""), routing_key="q")
    assert await transport.purge_queue("q") == 1
    await asyncio.sleep(0.15)
    assert await transport.inspect_queue("dead") == QueueState("dead", messages=0, consumers=0)
