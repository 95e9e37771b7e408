"""Refusals on RabbitMQ keep the broker's words and cost nothing to what follows;
inspecting and purging queues."""

from __future__ import annotations

import asyncio

import aiormq.exceptions
import pytest

from aioqueue.exceptions import (
    BrokerConnectionError,
    BrokerError,
    PreconditionFailedError,
    UnroutableError,
)
from aioqueue.transport.base import BindingSpec, Envelope, ExchangeSpec, QueueSpec, QueueState

from .conftest import MakeTransport

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


async def test_a_refused_declaration_says_what_rabbitmq_said(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    await transport.declare_queue(QueueSpec(queue_name))
    with pytest.raises(PreconditionFailedError) as refused:
        await transport.declare_queue(QueueSpec(queue_name, arguments={"x-max-priority": 10}))
    said = str(refused.value)
    assert f"inequivalent arg 'x-max-priority' for queue {queue_name!r} in vhost" in said, said
    assert "received the value '10'" in said and "current is none" in said, said
    assert isinstance(refused.value.__cause__, aiormq.exceptions.ChannelPreconditionFailed)
    await transport.delete_queue(queue_name)


async def test_refusals_in_a_row_leave_the_transport_working(
    make_amqp: MakeTransport, queue_name: str
) -> None:
    transport = await make_amqp()
    exchange, other = f"{queue_name}.x", f"{queue_name}.other"
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.declare_exchange(ExchangeSpec(exchange, "direct"))
    # Each refusal closes the declaring channel: the very next call must not get it.
    for i in range(20):
        with pytest.raises(PreconditionFailedError):
            await transport.declare_queue(QueueSpec(queue_name, arguments={"x-expires": 60_000}))
        with pytest.raises(PreconditionFailedError):
            await transport.declare_exchange(ExchangeSpec(exchange, "topic"))
        with pytest.raises(BrokerError, match="NOT_FOUND"):
            await transport.purge_queue(f"{queue_name}.missing")
        await transport.declare_queue(QueueSpec(f"{other}.{i}"))
        await transport.bind(BindingSpec(f"{other}.{i}", exchange, str(i)))
        await transport.publish(
            Envelope(body=b"x"), exchange=exchange, routing_key=str(i), mandatory=True
        )
    states = [await transport.inspect_queue(f"{other}.{i}") for i in range(20)]
    assert states == [QueueState(f"{other}.{i}", messages=1, consumers=0) for i in range(20)]
    for i in range(20):
        await transport.delete_queue(f"{other}.{i}")
    await transport.delete_queue(queue_name)
    await transport.delete_exchange(exchange)


async def test_an_unroutable_publish_fails_alone(make_amqp: MakeTransport, queue_name: str) -> None:
    transport = await make_amqp()
    topic = f"{queue_name}.topic"
    await transport.declare_queue(QueueSpec(queue_name))
    await transport.declare_exchange(ExchangeSpec(topic, "topic"))
    await transport.bind(BindingSpec(queue_name, topic, "eu.*"))
    good = [
        transport.publish(
            Envelope(body=str(i).encode()), exchange=topic, routing_key="eu.x", mandatory=True
        )
        for i in range(50)
    ]
    bad = transport.publish(
        Envelope(body=b"lost"), exchange=topic, routing_key="us.x", mandatory=True
    )
    inspect = transport.inspect_queue(f"{queue_name}.missing")
    outcomes = await asyncio.gather(*good[:25], bad, inspect, *good[25:], return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], UnroutableError), errors
    assert (errors[0].exchange, errors[0].routing_key) == (topic, "us.x")
    assert isinstance(errors[0].__cause__, aiormq.exceptions.PublishError)
    assert outcomes[26] is None, "a missing queue inspected alongside: None"
    assert await transport.inspect_queue(queue_name) == QueueState(queue_name, 50, 0)
    assert await transport.purge_queue(queue_name) == 50
    await transport.delete_queue(queue_name)
    await transport.delete_exchange(topic)


async def test_inspecting_a_closed_transport_fails(make_amqp: MakeTransport) -> None:
    transport = await make_amqp()
    await transport.aclose()
    with pytest.raises(BrokerConnectionError):
        await transport.inspect_queue("anything")
    with pytest.raises(BrokerConnectionError):
        await transport.inspect_exchange("anything")
    with pytest.raises(BrokerConnectionError):
        await transport.purge_queue("anything")
