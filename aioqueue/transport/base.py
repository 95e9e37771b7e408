"""The transport interface: bytes, headers and properties in and out of a broker.

A transport knows nothing about tasks. It declares exchanges and queues, publishes an
:class:`Envelope` and returns only once the broker has confirmed it, and hands each
consumed message to a handler as a :class:`Delivery` that must be acked or rejected.
Two implementations ship with aioqueue: ``amqp.py`` (RabbitMQ through aio-pika) and
``memory.py`` (in-process); ``aioqueue.testing.check_transport`` is the conformance suite
both pass. Application code should not need to call this API directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = (
    "Batch",
    "Binding",
    "Consumer",
    "Delivery",
    "Envelope",
    "ExchangeSpec",
    "ExchangeType",
    "Handler",
    "Publish",
    "QueueSpec",
    "Transport",
)

ExchangeType = Literal["direct", "topic", "fanout", "headers"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as the broker sees it: body bytes plus AMQP properties."""

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    correlation_id: str | None = None
    reply_to: str | None = None
    priority: int | None = None
    persistent: bool = True
    expiration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange to declare. aioqueue's exchanges are durable."""

    name: str
    type: ExchangeType = "direct"
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue to declare.

    A queue is durable, or exclusive to its connection: RabbitMQ 4.3 refuses transient
    non-exclusive queues, so :meth:`__post_init__` refuses them first.
    """

    name: str
    durable: bool = True
    exclusive: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.durable and not self.exclusive:
            raise ValueError(f"queue {self.name!r}: a queue must be durable or exclusive")


@dataclass(frozen=True, slots=True)
class Binding:
    """Routes messages from ``exchange`` to ``queue``."""

    queue: str
    exchange: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


class Delivery(Protocol):
    """A consumed message. Exactly one of :meth:`ack` / :meth:`reject` must be awaited.

    If the connection is lost before that, the broker redelivers the message (with
    ``redelivered`` set), which is what makes a killed worker lose nothing.
    """

    @property
    def envelope(self) -> Envelope: ...

    @property
    def queue(self) -> str: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def reject(self, *, requeue: bool) -> None: ...


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Publish:
    """One publish inside :meth:`Batch.commit`."""

    envelope: Envelope
    exchange: str = ""
    routing_key: str = ""


class Batch(Protocol):
    """Messages taken from a queue under an exclusive lock (see ``Transport.take_all``).

    Exactly one of :meth:`commit` / :meth:`release` must be awaited; either releases
    the lock. If the taker dies first, the broker returns the messages and frees the lock.
    """

    @property
    def envelopes(self) -> list[Envelope]: ...

    async def commit(self, publishes: list[Publish]) -> None:
        """Atomically publish ``publishes`` and remove the taken messages from the queue."""

    async def release(self) -> None:
        """Return the taken messages to the queue untouched."""


class Consumer(Protocol):
    """A running subscription; :meth:`cancel` stops new deliveries."""

    async def cancel(self) -> None: ...


class Transport(Protocol):
    """What aioqueue needs from a broker."""

    @property
    def server_version(self) -> str:
        """The broker's product and version, for the worker banner."""
        ...

    async def connect(self) -> None:
        """Open the connection; retried by the transport itself after a loss."""

    async def aclose(self) -> None:
        """Close everything this transport opened. Safe to call twice."""

    async def declare_exchange(self, spec: ExchangeSpec) -> None: ...

    async def declare_queue(self, spec: QueueSpec) -> None: ...

    async def bind(self, binding: Binding) -> None: ...

    async def delete_queue(self, name: str) -> None: ...

    async def delete_exchange(self, name: str) -> None: ...

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        """Publish and wait for the broker's confirm.

        :param mandatory: fail instead of dropping a message no queue would receive.
        :raises PublishError: the broker refused it, or (mandatory) it was unroutable.
        :raises BrokerConnectionError: the connection is gone.
        """

    async def take_all(self, queue: str, *, min_count: int) -> Batch | None:
        """Lock ``queue`` for this caller alone and take every message it holds.

        Returns ``None`` when another caller (in any process) holds the lock. When the
        queue holds fewer than ``min_count`` messages, or does not exist, nothing is
        taken (the batch is empty). The lock lives as long as the batch, or as this connection.
        """
        ...

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int, no_ack: bool = False
    ) -> Consumer:
        """Start delivering ``queue`` to ``handler``, at most ``prefetch`` unacked at once.

        Each delivery runs ``handler`` in its own task owned by the transport. With
        ``no_ack`` the broker forgets a message once sent (for replies that are not
        persistent anyway); ``ack``/``reject`` are then no-ops.
        """
        ...
