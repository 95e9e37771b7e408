"""Definitions -> what is declared, and definitions RabbitMQ would refuse (pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from aioqueue.exceptions import ConfigurationError
from aioqueue.topology import (
    Binding,
    Broadcast,
    Declarations,
    Exchange,
    Queue,
    Topology,
    dlq_name,
)
from aioqueue.transport.base import BindingSpec, ExchangeSpec, QueueSpec


def test_default_queue_is_celerys_plus_a_dlq() -> None:
    assert Queue("celery").declarations() == Declarations(
        (ExchangeSpec("celery", "direct"),),
        (QueueSpec("celery"), QueueSpec("celery.dlq")),
        (BindingSpec("celery", "celery", "celery"),),
    )
    assert dlq_name("celery") == "celery.dlq"


def test_several_bindings_to_several_exchange_types() -> None:
    orders = Exchange("orders", "topic")
    docs = Exchange("docs", "headers")
    queue = Queue(
        "mixed",
        exchange=orders,
        routing_key="orders.*",
        bindings=[
            Binding(orders, "refunds.#"),
            Binding(docs, headers={"format": "pdf", "lang": "en"}, match="any"),
            Binding("plain", "mixed-key"),
        ],
    )
    todo = queue.declarations()
    assert todo.exchanges == (
        ExchangeSpec("orders", "topic"),
        ExchangeSpec("docs", "headers"),
        ExchangeSpec("plain", "direct"),
    )
    assert todo.bindings == (
        BindingSpec("mixed", "orders", "orders.*"),
        BindingSpec("mixed", "orders", "refunds.#"),
        BindingSpec("mixed", "docs", "", {"x-match": "any", "format": "pdf", "lang": "en"}),
        BindingSpec("mixed", "plain", "mixed-key"),
    )
    # Bound elsewhere: no exchange of its own name.
    assert "mixed" not in {e.name for e in todo.exchanges}


def test_exchange_with_routing_key_defaulting_to_the_queue_name() -> None:
    todo = Queue("q", exchange="ex").declarations()
    assert todo.bindings == (BindingSpec("q", "ex", "q"),)


TO_DLQ = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q.dlq"}


@pytest.mark.parametrize(
    ("options", "arguments"),
    [
        ({"max_priority": 10}, {"x-max-priority": 10}),
        # What the broker would drop goes to the .dlq instead.
        ({"message_ttl": 1.5}, {"x-message-ttl": 1500, **TO_DLQ}),
        ({"max_length_bytes": 4096}, {"x-max-length-bytes": 4096, **TO_DLQ}),
        (
            {"max_length": 9, "overflow": "reject-publish-dlx"},
            {"x-max-length": 9, "x-overflow": "reject-publish-dlx", **TO_DLQ},
        ),
        # A full queue refusing publishes drops nothing.
        (
            {"max_length": 100, "overflow": "reject-publish"},
            {"x-max-length": 100, "x-overflow": "reject-publish"},
        ),
        ({"single_active_consumer": True}, {"x-single-active-consumer": True}),
        (
            {"queue_type": "quorum"},
            {"x-queue-type": "quorum", **TO_DLQ},
        ),
        # Raw arguments pass through, and agree with the options that repeat them.
        ({"arguments": {"x-expires": 60_000}}, {"x-expires": 60_000}),
        ({"max_priority": 5, "arguments": {"x-max-priority": 5}}, {"x-max-priority": 5}),
    ],
)
def test_queue_options_become_arguments(options: dict[str, Any], arguments: dict[str, Any]) -> None:
    queue = Queue("q", **options)
    assert queue.arguments == arguments
    assert queue.declarations().queues[0] == QueueSpec("q", arguments=arguments)


def test_a_quorum_queue_has_a_quorum_dlq() -> None:
    # Replicated as the queue is: a classic one is out of reach while its node is down.
    # Its delivery limit is one no listing of it (taken, then given back) reaches.
    dlq = QueueSpec("q.dlq", arguments={"x-queue-type": "quorum", "x-delivery-limit": 2**31 - 1})
    assert Queue("q", queue_type="quorum").declarations().queues[1] == dlq
    assert Queue("q", arguments={"x-queue-type": "quorum"}).declarations().queues[1] == dlq
    assert Queue("q", queue_type="classic").declarations().queues[1] == QueueSpec("q.dlq")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_priority": 0}, "max_priority must be 1-255, got 0"),
        ({"max_priority": 256}, "max_priority must be 1-255, got 256"),
        ({"queue_type": "stream"}, "queue_type must be classic or quorum, got 'stream'"),
        ({"message_ttl": -1}, "x-message-ttl must be a whole number >= 0, got -1000"),
        ({"overflow": "drop-tail"}, "overflow must be drop-head"),
        ({"queue_type": "quorum", "max_priority": 5}, "a quorum queue takes no max_priority"),
        (
            {"queue_type": "quorum", "overflow": "reject-publish-dlx"},
            "a quorum queue has no reject-publish-dlx overflow",
        ),
        (
            {"max_priority": 5, "arguments": {"x-max-priority": 9}},
            "max_priority=5 disagrees with arguments['x-max-priority']=9",
        ),
    ],
)
def test_queue_definitions_rabbitmq_would_refuse(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(f"queue 'q': {error}")):
        Queue("q", **options)


def test_bad_exchanges_and_bindings() -> None:
    with pytest.raises(ConfigurationError, match="type must be one of direct, topic"):
        Exchange("x", "nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="exchange needs a name"):
        Exchange("")
    with pytest.raises(ConfigurationError, match="headers match only on a headers exchange"):
        Binding(Exchange("t", "topic"), headers={"a": 1})
    with pytest.raises(ConfigurationError, match="match must be 'all' or 'any'"):
        Binding(Exchange("h", "headers"), headers={"a": 1}, match="some")  # type: ignore[arg-type]


def test_broadcast_gives_each_worker_an_exclusive_queue() -> None:
    bcast = Broadcast("reload")
    assert bcast.declarations() == Declarations(
        (ExchangeSpec("reload", "fanout"),), (QueueSpec("reload.dlq"),)
    )
    mine = bcast.worker_queue("abc")
    assert mine.queues[0] == QueueSpec("reload.abc", durable=False, exclusive=True)
    assert mine.bindings == (BindingSpec("reload.abc", "reload"),)
    assert bcast.dlq == "reload.dlq"


def test_topology_knows_exchanges_and_bound_queues() -> None:
    orders = Exchange("orders", "topic")
    a = Queue("a", exchange=orders, routing_key="orders.*")
    b = Queue("b", bindings=[Binding(orders, "#")])
    topology = Topology([a, b, Broadcast("bc")], "celery")
    assert topology.bound_to("orders") == (a, b)
    assert set(topology.exchanges) == {"orders", "bc"}
    assert topology.destination("a") is a
    # Undefined names: the default shape, the same object every time.
    assert topology.destination("zz") == Queue("zz")
    assert topology.destination("zz") is topology.destination("zz")
    assert [d.name for d in topology.consumed()] == ["celery", "a", "b", "bc"]
    assert [d.name for d in topology.consumed(["a", "x"])] == ["a", "x"]
    assert [d.name for d in topology.consumed(exclude=["celery", "bc"])] == ["a", "b"]


def test_topology_refuses_contradictions() -> None:
    with pytest.raises(ConfigurationError, match="queue 'a' is defined twice"):
        Topology([Queue("a"), Queue("a", max_priority=3)], "celery")
    with pytest.raises(ConfigurationError, match="exchange 'ex' is defined twice"):
        Topology(
            [Queue("a", exchange=Exchange("ex", "topic")), Queue("b", exchange="ex")], "celery"
        )
    with pytest.raises(ConfigurationError, match="no queue to consume"):
        Topology([], "celery").consumed(exclude=["celery"])


def test_describe_lists_bindings_and_options() -> None:
    queue = Queue(
        "q",
        exchange=Exchange("orders", "topic"),
        routing_key="orders.*",
        bindings=[Binding(Exchange("docs", "headers"), headers={"format": "pdf"})],
        max_priority=10,
    )
    assert queue.describe() == (
        "q <- orders (topic) key 'orders.*'; docs (headers) headers all(format='pdf') "
        "[x-max-priority=10]"
    )
    assert Broadcast("bc").describe() == "bc <- bc (fanout), a queue per worker"
