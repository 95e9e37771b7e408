"""An in-process broker with the same interface and semantics as the AMQP transport.

It routes over direct, topic, fanout and headers exchanges, honours per-consumer
prefetch, redelivers what a cancelled or closed consumer left unacked, and dead-letters
rejected or expired messages through ``x-dead-letter-exchange``. It is the embedded
default for demos and fast tests, and passes the same conformance suite as AMQP.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import BrokerConnectionError, BrokerError, PublishError
from .base import Binding, Envelope, ExchangeSpec, Handler, Publish, QueueSpec

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
    queue: _Queue
    handler: Handler
    prefetch: int
    no_ack: bool = False
    unacked: int = 0
    active: bool = True

    async def cancel(self) -> None:
        self.active = False
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)


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
    transport: MemoryTransport
    settled: bool = False

    async def ack(self) -> None:
        if not self.consumer.no_ack:
            self._settle()

    async def reject(self, *, requeue: bool) -> None:
        if self.consumer.no_ack:
            return
        self._settle(dispatch=False)
        self.transport._rejected(self.consumer.queue, self.message, requeue=requeue)
        self.transport._dispatch(self.consumer.queue)

    def _settle(self, *, dispatch: bool = True) -> None:
        if self.settled:
            raise BrokerError("delivery already acknowledged")
        self.settled = True
        self.consumer.unacked -= 1
        if dispatch:
            self.transport._dispatch(self.consumer.queue)


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
    hits = [headers.get(k) == v for k, v in wanted.items()]
    return all(hits) if arguments.get("x-match", "all") == "all" else any(hits)


@dataclass(eq=False, slots=True)
class _Batch:
    transport: MemoryTransport
    queue: _Queue
    taken: list[_Message]
    done: bool = False

    @property
    def envelopes(self) -> list[Envelope]:
        return [m.envelope for m in self.taken]

    async def commit(self, publishes: list[Publish]) -> None:
        # Nothing can interleave between these steps: they do not await.
        self._finish()
        for p in publishes:
            self.transport._publish_now(p.envelope, p.exchange, p.routing_key, mandatory=False)

    async def release(self) -> None:
        self._finish()
        for message in reversed(self.taken):
            message.redelivered = True
            self.queue.messages.appendleft(message)
        self.transport._dispatch(self.queue)

    def _finish(self) -> None:
        if self.done:
            raise BrokerError("batch already committed or released")
        self.done = True
        self.transport._locks.discard(self.queue.spec.name)


class MemoryTransport:
    """In-process transport. Several apps may share one instance to talk to each other."""

    server_version = "memory"

    def __init__(self) -> None:
        self._exchanges: dict[str, ExchangeSpec] = {}
        self._bindings: list[Binding] = []
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: set[str] = set()
        self._closed = False

    async def connect(self) -> None:
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        for queue in self._queues.values():
            for consumer in list(queue.consumers):
                await consumer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        self._check_open()
        existing = self._exchanges.setdefault(spec.name, spec)
        if existing != spec:
            raise BrokerError(f"exchange {spec.name!r} exists with other settings")

    async def declare_queue(self, spec: QueueSpec) -> None:
        self._check_open()
        existing = self._queues.get(spec.name)
        if existing is None:
            self._queues[spec.name] = _Queue(spec)
        elif existing.spec.arguments != spec.arguments:
            raise BrokerError(f"queue {spec.name!r} exists with other arguments")

    async def bind(self, binding: Binding) -> None:
        self._check_open()
        if binding.exchange not in self._exchanges:
            raise BrokerError(f"no exchange {binding.exchange!r}")
        if binding.queue not in self._queues:
            raise BrokerError(f"no queue {binding.queue!r}")
        if binding not in self._bindings:
            self._bindings.append(binding)

    async def delete_queue(self, name: str) -> None:
        queue = self._queues.pop(name, None)
        self._bindings = [b for b in self._bindings if b.queue != name]
        if queue is not None:
            for consumer in list(queue.consumers):
                await consumer.cancel()

    async def delete_exchange(self, name: str) -> None:
        self._exchanges.pop(name, None)
        self._bindings = [b for b in self._bindings if b.exchange != name]

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        self._check_open()
        self._publish_now(envelope, exchange, routing_key, mandatory=mandatory)

    async def take_all(self, queue: str, *, min_count: int) -> _Batch | None:
        self._check_open()
        target = self._queues.get(queue)
        if target is None:
            # A queue that is gone holds nothing to take.
            target = _Queue(QueueSpec(queue))
        if queue in self._locks:
            return None
        self._locks.add(queue)
        taken: list[_Message] = []
        if len(target.messages) >= min_count:
            taken = list(target.messages)
            target.messages.clear()
            for message in taken:
                if message.expiry is not None:
                    message.expiry.cancel()
        return _Batch(self, target, taken)

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int, no_ack: bool = False
    ) -> _Consumer:
        self._check_open()
        target = self._queues.get(queue)
        if target is None:
            raise BrokerError(f"no queue {queue!r}")
        consumer = _Consumer(target, handler, max(prefetch, 1), no_ack=no_ack)
        target.consumers.append(consumer)
        self._dispatch(target)
        return consumer

    def queue_length(self, name: str) -> int:
        """Messages waiting (not delivered) in ``name``; for tests."""
        return len(self._queues[name].messages)

    # -- internals -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerConnectionError("memory transport is closed")

    def _publish_now(
        self, envelope: Envelope, exchange: str, routing_key: str, *, mandatory: bool
    ) -> None:
        targets = self._route(exchange, routing_key, envelope.headers)
        if not targets and mandatory:
            raise PublishError(f"message to {exchange!r}/{routing_key!r} is unroutable")
        for queue in targets:
            self._enqueue(queue, _Message(envelope, exchange, routing_key))

    def _route(self, exchange: str, routing_key: str, headers: dict[str, Any]) -> list[_Queue]:
        if exchange == "":
            queue = self._queues.get(routing_key)
            return [queue] if queue is not None else []
        spec = self._exchanges.get(exchange)
        if spec is None:
            raise PublishError(f"no exchange {exchange!r}")
        names: list[str] = []
        for b in self._bindings:
            if b.exchange != exchange or b.queue in names:
                continue
            if (
                spec.type == "fanout"
                or (spec.type == "direct" and b.routing_key == routing_key)
                or (spec.type == "topic" and _topic_matches(b.routing_key, routing_key))
                or (spec.type == "headers" and _headers_match(b.arguments, headers))
            ):
                names.append(b.queue)
        return [self._queues[n] for n in names]

    def _enqueue(self, queue: _Queue, message: _Message) -> None:
        ttl = queue.spec.arguments.get("x-message-ttl")
        if message.envelope.expiration_ms is not None:
            ttl = (
                min(ttl, message.envelope.expiration_ms) if ttl else message.envelope.expiration_ms
            )
        if ttl is not None:
            loop = asyncio.get_running_loop()
            message.expiry = loop.call_later(ttl / 1000, self._expire, queue, message)
        queue.messages.append(message)
        self._dispatch(queue)

    def _expire(self, queue: _Queue, message: _Message) -> None:
        try:
            queue.messages.remove(message)
        except ValueError:
            return  # already delivered
        self._dead_letter(queue, message)

    def _dead_letter(self, queue: _Queue, message: _Message) -> None:
        args = queue.spec.arguments
        exchange = args.get("x-dead-letter-exchange")
        if exchange is None or self._closed:
            return
        key = args.get("x-dead-letter-routing-key", message.routing_key)
        envelope = replace(message.envelope, expiration_ms=None)
        for target in self._route(exchange, key, envelope.headers):
            self._enqueue(target, _Message(envelope, exchange, key))

    def _rejected(self, queue: _Queue, message: _Message, *, requeue: bool) -> None:
        if requeue:
            message.redelivered = True
            queue.messages.appendleft(message)
        else:
            self._dead_letter(queue, message)

    def _dispatch(self, queue: _Queue) -> None:
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
                message.envelope, queue.spec.name, message.redelivered, message, consumer, self
            )
            if consumer.no_ack:
                delivery._settle(dispatch=False)
            task = asyncio.get_running_loop().create_task(self._run(consumer, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, consumer: _Consumer, delivery: _Delivery) -> None:
        try:
            await consumer.handler(delivery)
        except asyncio.CancelledError:
            # A handler cancelled before settling is a consumer that went away: as when a
            # channel closes, the message returns to the queue for another consumer.
            if not delivery.settled:
                await delivery.reject(requeue=True)
            raise
