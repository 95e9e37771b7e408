"""An in-process broker with the same interface and semantics as the AMQP transport.

It routes over direct, topic, fanout and headers exchanges (and their alternate
exchanges), honours per-consumer prefetch, redelivers what a closed consumer left
unacked, and dead-letters rejected or expired messages through
``x-dead-letter-exchange``. A declaration that differs from what exists is refused as
RabbitMQ refuses it. It is the embedded default for demos and fast tests, and passes the
same conformance suite as AMQP.

A :class:`MemoryTransport` is one connection to an in-process broker. Several apps may
share one transport to talk to each other; :meth:`MemoryTransport.new_connection` gives
another connection to the same broker, as a second process would have one, with leases
and consumers of its own. Everything lives as long as the broker object: "durable"
means surviving :meth:`~MemoryTransport.aclose` and :meth:`~MemoryTransport.connect`,
not the process.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    PreconditionFailedError,
    PublishError,
    UnroutableError,
)
from .base import BindingSpec, Envelope, ExchangeSpec, Handler, Publish, QueueSpec, QueueState

__all__ = ("MemoryTransport",)


@dataclass(slots=True)
class _Message:
    envelope: Envelope
    exchange: str
    routing_key: str
    redelivered: bool = False
    expiry: asyncio.TimerHandle | None = None


@dataclass(eq=False, slots=True)
class _Consumer:
    connection: MemoryTransport
    queue: _Queue
    handler: Handler
    prefetch: int
    no_ack: bool = False
    unacked: int = 0
    active: bool = True
    closed: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    held: set[_Delivery] = field(default_factory=set)
    lost: asyncio.Future[BrokerError] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    async def cancel(self) -> None:
        self.active = False
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)

    async def close(self) -> None:
        if self.closed:
            return
        await self.cancel()
        self.closed = True
        self.connection._consumers.discard(self)
        # As when a channel closes: what was delivered and not settled goes back.
        for delivery in list(self.held):
            delivery.give_back()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.connection._broker.dispatch(self.queue)

    async def wait_lost(self) -> BrokerError:
        return await asyncio.shield(self.lost)

    def lose(self, error: BrokerError) -> None:
        self.active = False
        self.connection._consumers.discard(self)
        if not self.lost.done():
            self.lost.set_result(error)


@dataclass(eq=False, slots=True)
class _Queue:
    spec: QueueSpec
    messages: deque[_Message] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Delivery:
    envelope: Envelope
    queue: str
    redelivered: bool
    message: _Message
    consumer: _Consumer
    settled: bool = False
    given_back: bool = False

    async def ack(self) -> None:
        if not self.consumer.no_ack:
            self._settle()
            self.consumer.connection._broker.dispatch(self.consumer.queue)

    async def reject(self, *, requeue: bool) -> None:
        if self.consumer.no_ack:
            return
        self._settle()
        broker = self.consumer.connection._broker
        broker.rejected(self.consumer.queue, self.message, requeue=requeue)
        broker.dispatch(self.consumer.queue)

    def give_back(self) -> None:
        self._settle()
        self.given_back = True
        self.consumer.connection._broker.rejected(self.consumer.queue, self.message, requeue=True)

    def _settle(self) -> None:
        if self.given_back:
            raise BrokerConnectionError(
                f"delivery from {self.queue!r}: its consumer was closed, it went back"
            )
        if self.settled:
            raise BrokerError("delivery already acknowledged")
        self.settled = True
        self.consumer.unacked -= 1
        self.consumer.held.discard(self)


def _topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` is zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def _headers_match(arguments: dict[str, Any], headers: dict[str, Any]) -> bool:
    wanted = {k: v for k, v in arguments.items() if not k.startswith("x-")}
    # A binding argument without a value asks only for the header to be there.
    hits = [k in headers and (v is None or headers[k] == v) for k, v in wanted.items()]
    return all(hits) if arguments.get("x-match", "all") == "all" else any(hits)


# What RabbitMQ (3.10, classic queues; probed) compares when a queue or exchange is
# declared again. The other arguments of a new declaration are ignored and the existing
# ones kept, so that comparing more would refuse here what RabbitMQ accepts.
_EXCHANGE_ARGS_COMPARED = ("alternate-exchange",)
_QUEUE_ARGS_COMPARED = (
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-master-locator",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
)
_MISSING = object()


def _exchange_settings(spec: ExchangeSpec) -> dict[str, Any]:
    compared = {k: spec.arguments[k] for k in _EXCHANGE_ARGS_COMPARED if k in spec.arguments}
    return {"type": spec.type, "durable": spec.durable, **compared}


def _queue_settings(spec: QueueSpec) -> dict[str, Any]:
    compared = {k: spec.arguments[k] for k in _QUEUE_ARGS_COMPARED if k in spec.arguments}
    return {"durable": spec.durable, **compared}


def _inequivalence(
    kind: str, name: str, asked: dict[str, Any], current: dict[str, Any]
) -> str | None:
    """RabbitMQ's refusal of a declaration that differs from what exists, or None (pure)."""
    for arg in dict.fromkeys([*asked, *current]):
        received, existing = asked.get(arg, _MISSING), current.get(arg, _MISSING)
        if received != existing:
            return (
                f"PRECONDITION_FAILED - inequivalent arg {arg!r} for {kind} {name!r}: "
                f"received {_shown(received)} but current is {_shown(existing)}"
            )
    return None


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "none"
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    return repr(value)


@dataclass(eq=False, slots=True)
class _Lease:
    connection: MemoryTransport
    name: str
    key: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def held(self) -> bool:
        return not self.lost.is_set()

    async def release(self) -> None:
        self.lose()

    async def wait_lost(self) -> None:
        await self.lost.wait()

    def lose(self) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        broker = self.connection._broker
        if broker.leases.get(self.key) is self:
            del broker.leases[self.key]
        self.connection._leases.discard(self)


@dataclass(eq=False, slots=True)
class _Batch:
    connection: MemoryTransport
    lease: _Lease
    queue: _Queue
    taken: list[_Message]
    done: bool = False

    @property
    def envelopes(self) -> list[Envelope]:
        return [m.envelope for m in self.taken]

    async def commit(self, publishes: list[Publish]) -> None:
        broker = self.connection._broker
        try:
            # Every route first: a publish that cannot be routed sends nothing at all.
            routes = [
                broker.route(p.exchange, p.routing_key, p.envelope.headers) for p in publishes
            ]
        except PublishError:
            await self.release()
            raise
        self._finish()
        # Nothing can interleave between these steps: they do not await.
        for p, targets in zip(publishes, routes, strict=True):
            for queue in targets:
                broker.enqueue(queue, _Message(p.envelope, p.exchange, p.routing_key))

    async def release(self) -> None:
        self._finish()
        for message in reversed(self.taken):
            message.redelivered = True
            self.queue.messages.appendleft(message)
        self.connection._broker.dispatch(self.queue)

    def _finish(self) -> None:
        if self.done:
            raise BrokerError("batch already committed or released")
        self.done = True
        self.connection._batches.discard(self)
        self.lease.lose()


@dataclass(eq=False, slots=True)
class _Broker:
    """What every connection to one in-process broker shares."""

    exchanges: dict[str, ExchangeSpec] = field(default_factory=dict)
    bindings: list[BindingSpec] = field(default_factory=list)
    queues: dict[str, _Queue] = field(default_factory=dict)
    leases: dict[str, _Lease] = field(default_factory=dict)
    state: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def publish(
        self, envelope: Envelope, exchange: str, routing_key: str, *, mandatory: bool
    ) -> None:
        targets = self.route(exchange, routing_key, envelope.headers)
        if not targets and mandatory:
            raise UnroutableError(exchange, routing_key)
        for queue in targets:
            self.enqueue(queue, _Message(envelope, exchange, routing_key))

    def route(self, exchange: str, routing_key: str, headers: dict[str, Any]) -> list[_Queue]:
        if exchange == "":
            queue = self.queues.get(routing_key)
            return [queue] if queue is not None else []
        spec = self.exchanges.get(exchange)
        if spec is None:
            raise PublishError(f"publish to {exchange!r}: exchange {exchange!r} does not exist")
        tried: set[str] = set()
        while not (names := self._bound(spec, routing_key, headers)):
            # What an exchange cannot route goes to its alternate exchange, if it has one.
            tried.add(spec.name)
            alternate = self.exchanges.get(spec.arguments.get("alternate-exchange", ""))
            if alternate is None or alternate.name in tried:
                return []
            spec = alternate
        return [self.queues[n] for n in names]

    def _bound(self, spec: ExchangeSpec, routing_key: str, headers: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for b in self.bindings:
            if b.exchange != spec.name or b.queue in names:
                continue
            if (
                spec.type == "fanout"
                or (spec.type == "direct" and b.routing_key == routing_key)
                or (spec.type == "topic" and _topic_matches(b.routing_key, routing_key))
                or (spec.type == "headers" and _headers_match(b.arguments, headers))
            ):
                names.append(b.queue)
        return names

    def enqueue(self, queue: _Queue, message: _Message) -> None:
        ttl = queue.spec.arguments.get("x-message-ttl")
        if message.envelope.expiration_ms is not None:
            ttl = (
                min(ttl, message.envelope.expiration_ms) if ttl else message.envelope.expiration_ms
            )
        if ttl is not None:
            loop = asyncio.get_running_loop()
            message.expiry = loop.call_later(ttl / 1000, self._expire, queue, message)
        queue.messages.append(message)
        self.dispatch(queue)

    def _expire(self, queue: _Queue, message: _Message) -> None:
        try:
            queue.messages.remove(message)
        except ValueError:
            return  # already delivered
        self._dead_letter(queue, message)

    def _dead_letter(self, queue: _Queue, message: _Message) -> None:
        args = queue.spec.arguments
        exchange = args.get("x-dead-letter-exchange")
        if exchange is None or queue.spec.name not in self.queues:
            return
        key = args.get("x-dead-letter-routing-key", message.routing_key)
        envelope = replace(message.envelope, expiration_ms=None)
        try:
            targets = self.route(exchange, key, envelope.headers)
        except PublishError:
            return  # RabbitMQ drops what it cannot dead-letter, too
        for target in targets:
            self.enqueue(target, _Message(envelope, exchange, key))

    def purge(self, queue: _Queue) -> int:
        for message in queue.messages:
            if message.expiry is not None:
                message.expiry.cancel()
        count = len(queue.messages)
        queue.messages.clear()
        return count

    def rejected(self, queue: _Queue, message: _Message, *, requeue: bool) -> None:
        if requeue:
            message.redelivered = True
            queue.messages.appendleft(message)
        else:
            self._dead_letter(queue, message)

    def dispatch(self, queue: _Queue) -> None:
        while queue.messages:
            consumer = next((c for c in queue.consumers if c.unacked < c.prefetch), None)
            if consumer is None:
                return
            message = queue.messages.popleft()
            if message.expiry is not None:
                message.expiry.cancel()
            consumer.unacked += 1
            # Round robin between consumers, as the broker does.
            queue.consumers.remove(consumer)
            queue.consumers.append(consumer)
            delivery = _Delivery(
                message.envelope, queue.spec.name, message.redelivered, message, consumer
            )
            if consumer.no_ack:
                delivery._settle()
            else:
                consumer.held.add(delivery)
            task = asyncio.get_running_loop().create_task(_run(consumer, delivery))
            consumer.tasks.add(task)
            task.add_done_callback(consumer.tasks.discard)


async def _run(consumer: _Consumer, delivery: _Delivery) -> None:
    try:
        await consumer.handler(delivery)
    except asyncio.CancelledError:
        # A handler cancelled before settling is a consumer that went away: as when a
        # channel closes, the message returns to the queue for another consumer.
        if not delivery.settled:
            delivery.give_back()
            consumer.connection._broker.dispatch(consumer.queue)
        raise


class MemoryTransport:
    """In-process transport: one connection to an in-process broker (see the module)."""

    server_version = "memory"

    def __init__(self) -> None:
        self._broker = _Broker()
        self._consumers: set[_Consumer] = set()
        self._leases: set[_Lease] = set()
        self._batches: set[_Batch] = set()
        self._closed = False
        self._generation = 0

    def new_connection(self) -> MemoryTransport:
        """Another connection to the same broker, with its own leases and consumers.

        It starts open, like a new transport; :meth:`connect` is still welcome.
        """
        other = MemoryTransport()
        other._broker = self._broker
        return other

    @property
    def generation(self) -> int:
        return self._generation

    async def connect(self) -> None:
        if self._closed or self._generation == 0:
            self._generation += 1
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        for batch in list(self._batches):
            await batch.release()
        for lease in list(self._leases):
            lease.lose()
        for consumer in list(self._consumers):
            await consumer.close()

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        self._check_open()
        existing = self._broker.exchanges.setdefault(spec.name, spec)
        refusal = _inequivalence(
            "exchange", spec.name, _exchange_settings(spec), _exchange_settings(existing)
        )
        if refusal is not None:
            raise PreconditionFailedError(f"declare exchange {spec.name!r}: {refusal}")

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._check_open()
        existing = self._broker.queues.get(spec.name)
        if existing is None:
            self._broker.queues[spec.name] = _Queue(spec)
            return
        refusal = _inequivalence(
            "queue", spec.name, _queue_settings(spec), _queue_settings(existing.spec)
        )
        if refusal is not None:
            raise PreconditionFailedError(f"declare queue {spec.name!r}: {refusal}")

    async def bind(self, binding: BindingSpec) -> None:
        self._check_open()
        if binding.exchange not in self._broker.exchanges:
            raise BrokerError(f"bind: exchange {binding.exchange!r} does not exist")
        if binding.queue not in self._broker.queues:
            raise BrokerError(f"bind: queue {binding.queue!r} does not exist")
        if binding not in self._broker.bindings:
            self._broker.bindings.append(binding)

    async def delete_queue(self, name: str) -> None:
        self._check_open()
        broker = self._broker
        queue = broker.queues.pop(name, None)
        broker.bindings = [b for b in broker.bindings if b.queue != name]
        if queue is not None:
            for consumer in list(queue.consumers):
                await consumer.cancel()
                consumer.lose(BrokerError(f"consumer of queue {name!r}: the queue was deleted"))

    async def delete_exchange(self, name: str) -> None:
        self._check_open()
        self._broker.exchanges.pop(name, None)
        self._broker.bindings = [b for b in self._broker.bindings if b.exchange != name]

    async def inspect_queue(self, name: str) -> QueueState | None:
        self._check_open()
        queue = self._broker.queues.get(name)
        if queue is None:
            return None
        return QueueState(name, messages=len(queue.messages), consumers=len(queue.consumers))

    async def inspect_exchange(self, name: str) -> bool:
        self._check_open()
        return name == "" or name in self._broker.exchanges

    async def purge_queue(self, name: str) -> int:
        self._check_open()
        queue = self._broker.queues.get(name)
        if queue is None:
            raise BrokerError(f"purge queue {name!r}: queue {name!r} does not exist")
        return self._broker.purge(queue)

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        self._check_open()
        self._broker.publish(envelope, exchange, routing_key, mandatory=mandatory)

    async def publish_many(self, publishes: Sequence[Publish]) -> list[BrokerError | None]:
        self._check_open()
        outcomes: list[BrokerError | None] = []
        for p in publishes:
            try:
                self._broker.publish(p.envelope, p.exchange, p.routing_key, mandatory=p.mandatory)
            except BrokerError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    async def take_all(self, queue: str, *, min_count: int) -> _Batch | None:
        self._check_open()
        lease = self._lease(f"take:{queue}", queue)
        if lease is None:
            return None
        # A queue that is gone holds nothing to take.
        target = self._broker.queues.get(queue) or _Queue(QueueSpec(queue))
        taken: list[_Message] = []
        if len(target.messages) >= min_count:
            taken = list(target.messages)
            target.messages.clear()
            for message in taken:
                if message.expiry is not None:
                    message.expiry.cancel()
        batch = _Batch(self, lease, target, taken)
        self._batches.add(batch)
        return batch

    async def acquire_lease(self, name: str) -> _Lease | None:
        self._check_open()
        return self._lease(f"lease:{name}", name)

    async def state_put(self, store: str, key: str, value: bytes) -> None:
        self._check_open()
        self._broker.state.setdefault(store, {})[key] = value

    async def state_delete(self, store: str, key: str) -> None:
        self._check_open()
        self._broker.state.get(store, {}).pop(key, None)

    async def state_read(self, store: str) -> dict[str, bytes]:
        self._check_open()
        return dict(self._broker.state.get(store, {}))

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int, no_ack: bool = False
    ) -> _Consumer:
        self._check_open()
        target = self._broker.queues.get(queue)
        if target is None:
            raise BrokerError(f"consume {queue!r}: queue {queue!r} does not exist")
        consumer = _Consumer(self, target, handler, max(prefetch, 1), no_ack=no_ack)
        target.consumers.append(consumer)
        self._consumers.add(consumer)
        self._broker.dispatch(target)
        return consumer

    def queue_length(self, name: str) -> int:
        """Messages waiting (not delivered) in ``name``; for tests."""
        return len(self._broker.queues[name].messages)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerConnectionError("memory transport is closed")

    def _lease(self, key: str, name: str) -> _Lease | None:
        if key in self._broker.leases:
            return None
        lease = _Lease(self, name, key)
        self._broker.leases[key] = lease
        self._leases.add(lease)
        return lease
