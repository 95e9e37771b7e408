"""Queues, the topology each implies, and broker-side delays (all pure).

A :class:`Queue` is consumed by workers and published to by clients. Its topology is
Celery's: a durable direct exchange and a durable queue of the same name, bound with the
queue's name as routing key, so Celery and aioqueue can share a broker. aioqueue adds a
``<queue>.dlq`` for messages that cannot be processed.

Delays (countdown, eta, retry backoff) live in the broker, never in a worker's memory:
RabbitMQ would close a channel holding an unacked message past ``consumer_timeout``.
A message that is not yet due goes to a delay bucket: a fanout exchange and a durable
queue ``aioqueue.delay.<ms>`` whose ``x-message-ttl`` is ``<ms>`` and whose dead-letter
exchange is the default one. The message keeps its routing key (the target queue), so
when the TTL ends RabbitMQ dead-letters it straight back to its queue. One queue per
bucket, because a per-message TTL only expires at the head of a queue. Buckets are
powers of two; the largest bucket not longer than the remaining delay is chosen and a
message that comes back early (its ``eta`` still ahead) takes the next smaller bucket,
so any delay is reached in at most ~32 hops with a handful of queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .transport.base import Binding, ExchangeSpec, ExchangeType, QueueSpec

__all__ = (
    "CHORD_PREFIX",
    "DELAY_PREFIX",
    "Queue",
    "chord_queue",
    "delay_bucket_ms",
    "delay_topology",
    "dlq_name",
)

DELAY_PREFIX = "aioqueue.delay."
CHORD_PREFIX = "aioqueue.chord."
# A remainder below this is run at once: the hop would cost more than the wait.
MIN_DELAY_MS = 5
MAX_DELAY_BUCKET_MS = 2**31


def dlq_name(queue: str) -> str:
    """The dead-letter queue of ``queue``."""
    return f"{queue}.dlq"


@dataclass(frozen=True, slots=True)
class Queue:
    """A task queue and how it is reached.

    :param name: the queue's name.
    :param exchange: the exchange feeding it (default: one named like the queue).
    :param exchange_type: ``direct``, ``topic``, ``fanout`` or ``headers``.
    :param routing_key: the binding key (default: the queue's name).
    :param arguments: extra queue arguments (``x-max-priority``, ``x-queue-type``, ...).
    """

    name: str
    exchange: str | None = None
    exchange_type: ExchangeType = "direct"
    routing_key: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def exchange_name(self) -> str:
        return self.exchange if self.exchange is not None else self.name

    @property
    def binding_key(self) -> str:
        return self.routing_key if self.routing_key is not None else self.name

    def topology(self) -> tuple[ExchangeSpec, tuple[QueueSpec, QueueSpec], Binding]:
        """The exchange, the queue and its ``.dlq``, and the binding to declare.

        A quorum queue dead-letters into its ``.dlq``: from RabbitMQ 4.0 a quorum queue
        drops a message redelivered 20 times unless it has a dead-letter target.
        """
        arguments = dict(self.arguments)
        if arguments.get("x-queue-type") == "quorum":
            arguments.setdefault("x-dead-letter-exchange", "")
            arguments.setdefault("x-dead-letter-routing-key", dlq_name(self.name))
        return (
            ExchangeSpec(self.exchange_name, self.exchange_type),
            (QueueSpec(self.name, arguments=arguments), QueueSpec(dlq_name(self.name))),
            Binding(self.name, self.exchange_name, self.binding_key),
        )


def delay_bucket_ms(remaining_ms: float) -> int | None:
    """The delay bucket for a message due in ``remaining_ms``, or ``None`` if it is due.

    >>> delay_bucket_ms(10_000)
    8192
    """
    if remaining_ms < MIN_DELAY_MS:
        return None
    bucket = 1 << (int(remaining_ms).bit_length() - 1)
    return min(bucket, MAX_DELAY_BUCKET_MS)


def delay_topology(bucket_ms: int) -> tuple[ExchangeSpec, QueueSpec, Binding]:
    """The fanout exchange and TTL queue of one delay bucket (see the module docstring)."""
    name = f"{DELAY_PREFIX}{bucket_ms}"
    spec = QueueSpec(name, arguments={"x-message-ttl": bucket_ms, "x-dead-letter-exchange": ""})
    return ExchangeSpec(name, "fanout"), spec, Binding(name, name)


def chord_queue(group_id: str, expires_s: float) -> QueueSpec:
    """The queue holding a chord's progress (see ``aioqueue.worker.chord``).

    RabbitMQ deletes it once unused for ``expires_s`` seconds, should a chord never
    complete (its members were purged, say).
    """
    return QueueSpec(f"{CHORD_PREFIX}{group_id}", arguments={"x-expires": int(expires_s * 1000)})
