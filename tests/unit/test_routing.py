"""Route resolution, delay buckets and queue topology (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aioqueue.options import Options
from aioqueue.routing import MAX_DELAY_BUCKET_MS, MIN_DELAY_MS, Route, delay_bucket_ms, resolve
from aioqueue.topology import (
    DELAY_PREFIX,
    Binding,
    Broadcast,
    Exchange,
    Queue,
    Topology,
    delay_topology,
)
from aioqueue.transport.base import BindingSpec, ExchangeSpec, QueueSpec


@pytest.mark.parametrize(
    ("remaining_ms", "bucket"),
    [
        (-1_000, None),
        (0, None),
        (4.99, None),
        (MIN_DELAY_MS, 4),
        (7.9, 4),
        (8, 8),
        (1_000, 512),
        (1_023.9, 512),
        (1_024, 1_024),
        (10_000, 8_192),
        (60_000, 32_768),
        (3_600_000, 2_097_152),
        (2**31 - 1, 2**30),
        (2**31, 2**31),
        (2**40, MAX_DELAY_BUCKET_MS),
    ],
)
def test_delay_bucket_ms(remaining_ms: float, bucket: int | None) -> None:
    assert delay_bucket_ms(remaining_ms) == bucket


@pytest.mark.parametrize("remaining_ms", [5, 6, 99, 1_000, 10_001, 86_400_000, 2**31 + 5])
def test_bucket_never_overshoots_and_more_than_halves_the_wait(remaining_ms: float) -> None:
    bucket = delay_bucket_ms(remaining_ms)
    assert bucket is not None
    assert bucket <= remaining_ms
    assert bucket > remaining_ms / 2 or bucket == MAX_DELAY_BUCKET_MS
    assert bucket & (bucket - 1) == 0  # a power of two: a handful of queues


def test_delay_topology_dead_letters_back_through_the_default_exchange() -> None:
    exchange, queue, binding = delay_topology(8192)
    name = f"{DELAY_PREFIX}8192"
    assert exchange == ExchangeSpec(name, "fanout")
    assert queue == QueueSpec(name, arguments={"x-message-ttl": 8192, "x-dead-letter-exchange": ""})
    assert binding == BindingSpec(name, name)


def test_delay_bucket_of_an_exchange_dead_letters_there() -> None:
    exchange, queue, binding = delay_topology(1024, "orders")
    name = f"{DELAY_PREFIX}1024.orders"
    assert exchange == ExchangeSpec(name, "fanout")
    assert queue.arguments == {"x-message-ttl": 1024, "x-dead-letter-exchange": "orders"}
    assert binding == BindingSpec(name, name)


NOW = datetime(2030, 1, 1, tzinfo=UTC)
PRIORITY = Queue("priority", max_priority=10)
ORDERS = Exchange("orders", "topic")
CREATED = Queue("created", bindings=[Binding(ORDERS, "orders.created")])
ALL_ORDERS = Queue("all-orders", exchange=ORDERS, routing_key="orders.#")
BCAST = Broadcast("reload")
TOPOLOGY = Topology([PRIORITY, CREATED, ALL_ORDERS, BCAST], "celery")


@pytest.mark.parametrize(
    ("options", "eta", "route"),
    [
        (Options(), None, Route("", "celery", (Queue("celery"),))),
        (Options(queue="other"), None, Route("", "other", (Queue("other"),))),
        (Options(queue="priority"), None, Route("", "priority", (PRIORITY,))),
        # A queue is reached through the default exchange, whatever it is bound to.
        (Options(queue="created"), None, Route("", "created", (CREATED,))),
        # A broadcast through its fanout exchange.
        (Options(queue="reload"), None, Route("reload", "", (BCAST,))),
        # An exchange the app defines: declared with every app queue bound to it.
        (
            Options(exchange="orders", routing_key="orders.created"),
            None,
            Route("orders", "orders.created", (ORDERS, CREATED, ALL_ORDERS)),
        ),
        # An exchange the app does not define is used as given; nothing is declared.
        (Options(exchange="ex", routing_key="k"), None, Route("ex", "k")),
        (Options(exchange="ex", queue="q"), None, Route("ex", "q")),
        (Options(exchange="ex"), None, Route("ex", "")),
        # Not due: the delay bucket first, keyed by the target queue.
        (
            Options(queue="other"),
            NOW + timedelta(seconds=10),
            Route("", "other", (Queue("other"),), 8192),
        ),
        (
            Options(exchange="orders", routing_key="orders.x"),
            NOW + timedelta(seconds=2),
            Route("orders", "orders.x", (ORDERS, CREATED, ALL_ORDERS), 1024),
        ),
        (
            Options(),
            NOW + timedelta(milliseconds=MIN_DELAY_MS - 1),
            Route("", "celery", (Queue("celery"),)),
        ),
        (Options(), NOW - timedelta(hours=1), Route("", "celery", (Queue("celery"),))),
    ],
)
def test_resolve(options: Options, eta: datetime | None, route: Route) -> None:
    assert resolve(options, TOPOLOGY, eta=eta, now=NOW) == route
