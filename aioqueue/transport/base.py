"""The transport interface: bytes, headers and properties in and out of a broker.

A transport knows nothing about tasks. It declares exchanges and queues, publishes an
:class:`Envelope` and returns only once the broker has confirmed it, and hands each
consumed message to a handler as a :class:`Delivery` that must be acked or rejected.
Besides publish and consume it has two primitives: a :class:`Lease` (an exclusive lock
held by a connection: chord passes, the beat leader) and a *state queue* (a durable
store of one value per key: beat's last-run times, dynamic schedules, revocations).

Declarations are made once and are not repeated by the transport after a reconnection,
except for the queues it consumes (declared and bound again before consuming resumes):
:attr:`Transport.generation` changes on every (re)connection so that a caller's
"declared already" cache knows when to start over. Operations before the first
:meth:`Transport.connect` connect implicitly; after :meth:`Transport.aclose` they raise
:class:`~aioqueue.exceptions.BrokerConnectionError` until ``connect`` is called again.
Two implementations ship with aioqueue: ``amqp.py`` (RabbitMQ through aiormq) and
``memory.py`` (in-process); ``aioqueue.testing.check_transport`` is the conformance suite
both pass. Application code should not need to call this API directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..exceptions import BrokerError

__all__ = (
    "Batch",
    "BindingSpec",
    "Consumer",
    "Delivery",
    "Envelope",
    "ExchangeSpec",
    "ExchangeType",
    "Handler",
    "Lease",
    "Publish",
    "QueueSpec",
    "QueueState",
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
    """An exchange to declare. aioqueue's exchanges are durable.

    ``arguments`` go with the declaration (``alternate-exchange``, a plugin's own); of
    them RabbitMQ compares only ``alternate-exchange`` with an existing exchange's.
    """

    name: str
    type: ExchangeType = "direct"
    durable: bool = True
    arguments: dict[str, Any] = field(default_factory=dict)


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
class BindingSpec:
    """Routes messages from ``exchange`` to ``queue``."""

    queue: str
    exchange: str
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueState:
    """What :meth:`Transport.inspect_queue` saw of a queue at one moment."""

    name: str
    #: Messages ready to be delivered; those delivered and not yet acked are not counted.
    messages: int
    #: Consumers subscribed to it, on every connection.
    consumers: int


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

    async def ack(self) -> None:
        """Settle the message as done. The ack may go out with others a moment later:
        one that cannot be sent then is logged, and the broker redelivers the message.

        :raises BrokerConnectionError: the consumer is closed; the broker redelivers.
        """
        ...

    async def reject(self, *, requeue: bool) -> None: ...


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Publish:
    """One publish of :meth:`Transport.publish_many` or :meth:`Batch.commit`.

    ``mandatory`` is for :meth:`Transport.publish_many` only (see ``publish``).
    """

    envelope: Envelope
    exchange: str = ""
    routing_key: str = ""
    mandatory: bool = False


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
    """A running subscription, restarted by the transport after a reconnection."""

    async def cancel(self) -> None:
        """Stop new deliveries; deliveries already handed out can still be acked."""

    async def close(self) -> None:
        """Cancel if needed and give every unacked delivery back to the queue.

        Handlers still running are cancelled, and their deliveries can no longer be
        settled. Safe to call twice.
        """

    async def wait_lost(self) -> BrokerError:
        """Wait until the subscription has stopped for good on its own, and say why.

        That is when its queue was deleted, or when it could not be started again
        (after a reconnection or a cancel sent by the broker) within a few attempts. It
        never returns after :meth:`cancel` or :meth:`close`: a caller watching it cancels
        its wait instead.

        :return: the error, naming the queue.
        """
        ...


class Lease(Protocol):
    """An exclusive lock taken with :meth:`Transport.acquire_lease`.

    It is held by the connection that took it: when that connection goes (the process
    died, the network broke, the transport reconnected or closed), the lease is lost and
    another holder can take it. A holder must therefore watch :meth:`wait_lost` rather
    than assume it still holds the lease.
    """

    @property
    def name(self) -> str:
        """The name the lease was taken under."""
        ...

    @property
    def held(self) -> bool:
        """Whether the lease is still held (not released, not lost)."""
        ...

    async def release(self) -> None:
        """Give the lease up. Safe to call twice, or after it was lost."""

    async def wait_lost(self) -> None:
        """Return once the lease is no longer held: released, or lost with its connection."""


class Transport(Protocol):
    """What aioqueue needs from a broker."""

    @property
    def server_version(self) -> str:
        """The broker's product and version, for the worker banner."""
        ...

    @property
    def generation(self) -> int:
        """A number that grows with every successful (re)connection.

        What was declared under another generation may be gone (an exclusive queue went
        with its connection, a queue expired or was deleted meanwhile): declare it again.
        """
        ...

    async def connect(self) -> None:
        """Open the connection; retried by the transport itself after a loss.

        Concurrent callers share one connection. After :meth:`aclose` it may be called
        again, from another event loop too.
        """

    async def aclose(self) -> None:
        """Close everything this transport opened. Safe to call twice.

        Consumers are closed and leases lost; declared topology and state stay.
        """

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        """Declare ``spec`` (idempotent).

        :raises PreconditionFailedError: it exists with another type, durability or
            ``alternate-exchange``; the message gives the broker's own words. The
            transport stays usable.
        """

    async def declare_queue(self, spec: QueueSpec) -> None:
        """Declare ``spec`` (idempotent).

        :raises PreconditionFailedError: it exists with other arguments; the message gives
            the broker's own words (what was asked, what is current). The transport stays
            usable.
        """

    async def bind(self, binding: BindingSpec) -> None: ...

    async def delete_queue(self, name: str) -> None: ...

    async def delete_exchange(self, name: str) -> None: ...

    async def inspect_queue(self, name: str) -> QueueState | None:
        """How many messages wait in queue ``name`` and how many consumers it has.

        A snapshot: both may have changed by the time it returns. Nothing is declared.

        :return: the state, or ``None`` if the queue does not exist.
        """
        ...

    async def inspect_exchange(self, name: str) -> bool:
        """Whether exchange ``name`` exists. Nothing is declared."""
        ...

    async def purge_queue(self, name: str) -> int:
        """Remove every message waiting in queue ``name``.

        Messages delivered and not yet acked are not waiting, and stay with their consumer
        (a reject with requeue brings them back).

        :return: how many messages were removed.
        :raises BrokerError: the queue does not exist (named in the message).
        """
        ...

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        """Publish and wait for the broker's confirm, within the transport's publish timeout.

        :param mandatory: fail instead of dropping a message no queue would receive.
        :raises UnroutableError: (mandatory) no queue is bound to receive it.
        :raises PublishError: the broker refused it (e.g. the exchange does not exist, named
            in the message). Other publishes are not affected.
        :raises BrokerConnectionError: the connection is gone, or the broker did not
            confirm in time.
        """

    async def publish_many(self, publishes: Sequence[Publish]) -> list[BrokerError | None]:
        """Publish every one of ``publishes`` and wait for all their confirms, within
        the publish timeout; a transport writes them to the broker together where it
        can, instead of one write and one wait per message.

        Each publish succeeds or fails on its own, as :meth:`publish` would: the result
        holds, in order, ``None`` for each one confirmed and the error
        (:class:`~aioqueue.exceptions.UnroutableError`, ``PublishError``,
        ``BrokerConnectionError``) for each one that was not. Every publish has ended
        when it returns.
        """
        ...

    async def take_all(self, queue: str, *, min_count: int) -> Batch | None:
        """Lock ``queue`` for this caller alone and take every message it holds.

        Returns ``None`` when another caller (in any process) holds the lock. When the
        queue holds fewer than ``min_count`` messages, or does not exist, nothing is
        taken (the batch is empty). The lock lives as long as the batch, or as this
        connection.
        """
        ...

    async def acquire_lease(self, name: str) -> Lease | None:
        """Take the exclusive lock ``name`` if nobody holds it; never waits for it.

        :return: the lease, or ``None`` when another holder has it: another connection
            (in any process), or another caller on this same transport.
        :raises BrokerConnectionError: no connection to the broker.
        """
        ...

    async def state_put(self, store: str, key: str, value: bytes) -> None:
        """Set ``key`` to ``value`` in the durable state store ``store``.

        Returns once the broker has confirmed it; the value survives a broker restart.
        Concurrent writers of one key: the newest write (by its writer's clock) wins.
        """

    async def state_delete(self, store: str, key: str) -> None:
        """Remove ``key`` from ``store`` (confirmed, like :meth:`state_put`)."""

    async def state_read(self, store: str) -> dict[str, bytes]:
        """The latest value of every key of ``store``; empty for a store never written.

        :raises BrokerError: other readers kept the store busy for too long.
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
