"""What aioqueue declares in the broker, and every broker name it uses (all pure).

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
bucket, because a per-message TTL only expires at the head of a queue
(``aioqueue.routing.delay_bucket_ms`` chooses the bucket).

The other names: a chord's progress queue (``worker/chord.py``), the ``rpc://`` reply
queues, and the names Celery's remote control, events and beat use or that aioqueue's
beat and revocations keep their state under.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .transport.base import BindingSpec, ExchangeSpec, ExchangeType, QueueSpec

__all__ = (
    "BEAT_ENTRIES",
    "BEAT_LEASE",
    "BEAT_STATE",
    "CHORD_PREFIX",
    "DELAY_PREFIX",
    "EVENTS_EXCHANGE",
    "PIDBOX_EXCHANGE",
    "REPLY_PREFIX",
    "REVOKED_STATE",
    "Exchange",
    "Queue",
    "beat_names",
    "chord_queue",
    "chord_run_lease",
    "delay_topology",
    "dlq_name",
    "reply_queue",
)

DELAY_PREFIX = "aioqueue.delay."
CHORD_PREFIX = "aioqueue.chord."
REPLY_PREFIX = "aioqueue.reply."
# Celery's names, so that Celery's tools (inspect, control, Flower) see aioqueue workers.
PIDBOX_EXCHANGE = "celery.pidbox"
EVENTS_EXCHANGE = "celeryev"
# The lease whose holder is the one beat leader, and the state queues beat and
# revocation keep.
BEAT_LEASE = "aioqueue.beat.leader"
BEAT_STATE = "aioqueue.beat"
BEAT_ENTRIES = "aioqueue.beat.entries"
REVOKED_STATE = "aioqueue.revoked"


def dlq_name(queue: str) -> str:
    """The dead-letter queue of ``queue``."""
    return f"{queue}.dlq"


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange aioqueue declares.

    :param name: the exchange's name.
    :param type: ``direct``, ``topic``, ``fanout`` or ``headers``.
    """

    name: str
    type: ExchangeType = "direct"

    def spec(self) -> ExchangeSpec:
        """What the transport declares."""
        return ExchangeSpec(self.name, self.type)


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

    def topology(self) -> tuple[ExchangeSpec, tuple[QueueSpec, QueueSpec], BindingSpec]:
        """The exchange, the queue and its ``.dlq``, and the binding to declare.

        A quorum queue dead-letters into its ``.dlq``: from RabbitMQ 4.0 a quorum queue
        drops a message redelivered 20 times unless it has a dead-letter target.
        """
        arguments = dict(self.arguments)
        if arguments.get("x-queue-type") == "quorum":
            arguments.setdefault("x-dead-letter-exchange", "")
            arguments.setdefault("x-dead-letter-routing-key", dlq_name(self.name))
        return (
            Exchange(self.exchange_name, self.exchange_type).spec(),
            (QueueSpec(self.name, arguments=arguments), QueueSpec(dlq_name(self.name))),
            BindingSpec(self.name, self.exchange_name, self.binding_key),
        )


def delay_topology(bucket_ms: int) -> tuple[ExchangeSpec, QueueSpec, BindingSpec]:
    """The fanout exchange and TTL queue of one delay bucket (see the module docstring)."""
    name = f"{DELAY_PREFIX}{bucket_ms}"
    spec = QueueSpec(name, arguments={"x-message-ttl": bucket_ms, "x-dead-letter-exchange": ""})
    return ExchangeSpec(name, "fanout"), spec, BindingSpec(name, name)


def chord_queue(group_id: str, expires_s: float) -> QueueSpec:
    """The queue holding a chord's progress (see ``aioqueue.worker.chord``).

    RabbitMQ deletes it once unused for ``expires_s`` seconds, should a chord never
    complete (its members were purged, say).
    """
    return QueueSpec(f"{CHORD_PREFIX}{group_id}", arguments={"x-expires": int(expires_s * 1000)})


def chord_run_lease(task_id: str) -> str:
    """The lease a worker holds while it runs ``task_id``, published by a chord's firing
    (see ``aioqueue.worker.chord``): a copy of it waits meanwhile."""
    return f"{CHORD_PREFIX}{task_id}.run"


def beat_names(app: str) -> tuple[str, str, str]:
    """The lease, last-run store and runtime-entry store of app ``app``'s beat.

    Per app: two apps sharing a vhost each have their own leader and entries.
    """
    return f"{BEAT_LEASE}.{app}", f"{BEAT_STATE}.{app}", f"{BEAT_ENTRIES}.{app}"


def reply_queue(client_id: str, expires_s: float) -> QueueSpec:
    """The ``rpc://`` reply queue of one client (see ``aioqueue.results.rpc``).

    Durable with ``x-expires`` rather than exclusive: states published while the client
    reconnects wait for it; RabbitMQ deletes the queue once the client is gone.
    """
    return QueueSpec(f"{REPLY_PREFIX}{client_id}", arguments={"x-expires": int(expires_s * 1000)})
