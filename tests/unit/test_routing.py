"""Route resolution, delay buckets and queue topology (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aioqueue.options import Options
from aioqueue.routing import MAX_DELAY_BUCKET_MS, MIN_DELAY_MS, Route, delay_bucket_ms, resolve
from aioqueue.topology import DELAY_PREFIX, Queue, delay_topology, dlq_name
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


def test_queue_topology_is_celerys_plus_a_dlq() -> None:
    exchange, queues, binding = Queue("celery").topology()
    assert exchange == ExchangeSpec("celery", "direct")
    assert queues == (QueueSpec("celery"), QueueSpec("celery.dlq"))
    assert all(q.durable and not q.exclusive for q in queues)
    assert binding == BindingSpec("celery", "celery", "celery")
    assert dlq_name("celery") == "celery.dlq"


def test_queue_with_its_own_exchange_and_arguments() -> None:
    queue = Queue(
        "hi",
        exchange="tasks",
        exchange_type="topic",
        routing_key="hi.#",
        arguments={"x-max-priority": 10},
    )
    exchange, queues, binding = queue.topology()
    assert exchange == ExchangeSpec("tasks", "topic")
    assert queues[0] == QueueSpec("hi", arguments={"x-max-priority": 10})
    assert queues[1] == QueueSpec("hi.dlq")
    assert binding == BindingSpec("hi", "tasks", "hi.#")


def test_quorum_queue_dead_letters_into_its_dlq() -> None:
    _, (queue, dlq), _ = Queue("work", arguments={"x-queue-type": "quorum"}).topology()
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "work.dlq",
    }
    assert dlq == QueueSpec("work.dlq")
    _, (classic, _), _ = Queue("plain").topology()
    assert classic.arguments == {}


NOW = datetime(2030, 1, 1, tzinfo=UTC)
PRIORITY = Queue("priority", arguments={"x-max-priority": 10})


@pytest.mark.parametrize(
    ("options", "eta", "route"),
    [
        (Options(), None, Route("", "celery", Queue("celery"))),
        (Options(queue="other"), None, Route("", "other", Queue("other"))),
        (Options(queue="priority"), None, Route("", "priority", PRIORITY)),
        # A per-call exchange is used as given; aioqueue declares nothing for it.
        (Options(exchange="ex", routing_key="k"), None, Route("ex", "k")),
        (Options(exchange="ex", queue="q"), None, Route("ex", "q")),
        (Options(exchange="ex"), None, Route("ex", "celery")),
        # Not due: the delay bucket's exchange, keyed by the target queue.
        (
            Options(queue="other"),
            NOW + timedelta(seconds=10),
            Route(f"{DELAY_PREFIX}8192", "other", Queue("other"), 8192),
        ),
        (
            Options(),
            NOW + timedelta(milliseconds=MIN_DELAY_MS - 1),
            Route("", "celery", Queue("celery")),
        ),
        (Options(), NOW - timedelta(hours=1), Route("", "celery", Queue("celery"))),
    ],
)
def test_resolve(options: Options, eta: datetime | None, route: Route) -> None:
    queues = {"priority": PRIORITY}
    assert resolve(options, default_queue="celery", queues=queues, eta=eta, now=NOW) == route
