"""RabbitMQ over AMQP 0-9-1 through aio-pika: the only module that imports aio-pika.

Connections are aio-pika's robust connections: after a loss they reconnect with a fixed
interval and restore channels, declared queues, bindings and consumers. What was
delivered but not acked on the lost channel is redelivered by the broker, so a delivery
whose ack fails for that reason is logged and left to the redelivery. A publish that
fails because the connection is down waits for the reconnection and is retried within
``publish_timeout``: at-least-once, never silently dropped.

Channels: one for declarations and publishes (publisher confirms on, unroutable
mandatory messages raised), and one per consumer so that each has its own per-consumer
QoS (``basic.qos`` with global=false; global QoS is being withdrawn from RabbitMQ).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import (
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from pamqp import commands as spec
from pamqp import encode as pamqp_encode

from ..config import mask_url
from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    PreconditionFailedError,
    PublishError,
)
from .base import Binding, Envelope, ExchangeSpec, Handler, Publish, QueueSpec

__all__ = ("AmqpTransport",)

log = logging.getLogger("aioqueue.transport")

# Most specific first: the first matching row decides.
_ERROR_MAP: tuple[tuple[type[BaseException], type[BrokerError]], ...] = (
    (aiormq.exceptions.PublishError, PublishError),
    (aiormq.exceptions.ChannelPreconditionFailed, PreconditionFailedError),
    (aiormq.exceptions.DeliveryError, PublishError),
    (aiormq.exceptions.AMQPConnectionError, BrokerConnectionError),
    (aiormq.exceptions.ChannelInvalidStateError, BrokerConnectionError),
    (ConnectionError, BrokerConnectionError),
    (aiormq.exceptions.AMQPError, BrokerError),
)


@contextmanager
def _map_errors(action: str, *args: object) -> Iterator[None]:
    # ``action % args`` is only formatted on failure: this wraps every publish and ack.
    try:
        yield
    except BrokerError:
        raise
    except Exception as exc:
        for foreign, ours in _ERROR_MAP:
            if isinstance(exc, foreign):
                raise ours(f"{action % args if args else action}: {exc}") from exc
        raise


class _Delivery:
    __slots__ = ("_message", "_no_ack", "envelope", "queue")

    def __init__(self, message: aiormq.abc.DeliveredMessage, queue: str, no_ack: bool) -> None:
        self._message = message
        self._no_ack = no_ack
        self.queue = queue
        self.envelope = _envelope(message)

    @property
    def redelivered(self) -> bool:
        return bool(getattr(self._message.delivery, "redelivered", False))

    async def ack(self) -> None:
        if self._no_ack:
            return
        tag = self._message.delivery_tag
        assert tag is not None
        with _map_errors("ack on %r", self.queue):
            await self._message.channel.basic_ack(tag)

    async def reject(self, *, requeue: bool) -> None:
        if self._no_ack:
            return
        tag = self._message.delivery_tag
        assert tag is not None
        with _map_errors("reject on %r", self.queue):
            await self._message.channel.basic_reject(tag, requeue=requeue)


_LENGTH = struct.Struct(">I").pack


def _table(table: dict[str, Any]) -> bytes:
    """An AMQP field table, byte for byte as pamqp encodes it (keys sorted).

    A protocol v2 message carries about twenty headers: pamqp's generic encoder spends
    more on them than on the rest of a publish, so the common value types are encoded
    here and the rest handed to pamqp.
    """
    parts = []
    for key in sorted(table):
        name = key.encode()
        parts.append(bytes((len(name),)) + name + _table_value(table[key]))
    data = b"".join(parts)
    return _LENGTH(len(data)) + data


def _table_value(value: Any) -> bytes:
    kind = type(value)
    if value is None:
        return b"V"
    if kind is str:
        data: bytes = value.encode()
        return b"S" + _LENGTH(len(data)) + data
    if kind is bool:
        return b"t\x01" if value else b"t\x00"
    if kind is dict:
        return b"F" + _table(value)
    if kind is list:
        items = b"".join(_table_value(item) for item in value)
        return b"A" + _LENGTH(len(items)) + items
    return pamqp_encode.encode_table_value(value)


_SHORT_STRINGS = frozenset(
    {"content_type", "content_encoding", "correlation_id", "reply_to", "expiration", "message_id"}
)
_OCTETS = frozenset({"delivery_mode", "priority"})


class _Properties(spec.Basic.Properties):
    """Basic properties that marshal the way pamqp does, faster for the common types."""

    # No __slots__ here: the parent's list the properties in their wire order.

    def marshal(self) -> bytes:
        flags = 0
        parts = []
        for name in spec.Basic.Properties.__slots__:
            value = getattr(self, name)
            if value is None or value == "":
                continue
            flags |= self.flags[name]
            if name == "headers":
                parts.append(_table(value))
            elif name in _SHORT_STRINGS and len(data := value.encode()) < 256:
                parts.append(bytes((len(data),)) + data)
            elif name in _OCTETS:
                parts.append(bytes((value,)))
            else:
                parts.append(self.encode_property(name, value))
        # Basic has 14 properties: the flags always fit in one 16-bit word.
        return struct.pack(">H", flags) + b"".join(parts)


def _properties(envelope: Envelope) -> spec.Basic.Properties:
    return _Properties(
        content_type=envelope.content_type,
        content_encoding=envelope.content_encoding,
        headers=envelope.headers,
        delivery_mode=2 if envelope.persistent else 1,
        priority=envelope.priority,
        correlation_id=envelope.correlation_id,
        message_id=envelope.correlation_id,
        reply_to=envelope.reply_to,
        expiration=str(envelope.expiration_ms) if envelope.expiration_ms else None,
    )


def _envelope(message: aiormq.abc.DeliveredMessage) -> Envelope:
    props = message.header.properties
    return Envelope(
        body=message.body,
        headers=dict(props.headers or {}),
        content_type=props.content_type or "",
        content_encoding=props.content_encoding or "",
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        priority=props.priority,
        persistent=props.delivery_mode == 2,
    )


class _Batch:
    """Messages taken with basic.get on a private channel, under an exclusive lock queue.

    :meth:`commit` runs the publishes and the ack of every taken message in one AMQP
    transaction, so a taker killed at any point either did all of it or none of it (the
    broker then requeues what was taken and deletes the lock with the connection).
    """

    def __init__(
        self,
        lock: asyncio.Lock,
        lock_channel: aiormq.abc.AbstractChannel,
        lock_queue: str,
        channel: aiormq.abc.AbstractChannel,
        taken: list[aiormq.abc.DeliveredMessage],
    ) -> None:
        self._lock = lock
        self._lock_channel = lock_channel
        self._lock_queue = lock_queue
        self._channel = channel
        self._taken = taken
        self.envelopes = [_envelope(m) for m in taken]

    async def commit(self, publishes: list[Publish]) -> None:
        try:
            with _map_errors("commit batch"):
                await self._channel.tx_select()
                for p in publishes:
                    await self._channel.basic_publish(
                        p.envelope.body,
                        exchange=p.exchange,
                        routing_key=p.routing_key,
                        properties=_properties(p.envelope),
                    )
                if self._taken:
                    tag = self._taken[-1].delivery_tag
                    assert tag is not None
                    await self._channel.basic_ack(tag, multiple=True)
                await self._channel.tx_commit()
        finally:
            await self._close()

    async def release(self) -> None:
        # Closing the channel returns every unacked message to the queue.
        await self._close()

    async def _close(self) -> None:
        try:
            if not self._channel.is_closed:
                await self._channel.close()
            if not self._lock_channel.is_closed:
                await self._lock_channel.queue_delete(self._lock_queue)
                await self._lock_channel.close()
        except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
            # The connection is gone: the broker already requeued and unlocked.
            log.debug("closing batch channels: %s", exc)
        finally:
            self._lock.release()


class _Consumer:
    """A basic.consume on its own robust channel, issued again whenever it reopens."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: str,
        callback: Callable[[aiormq.abc.DeliveredMessage], Coroutine[Any, Any, None]],
        no_ack: bool,
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._callback = callback
        self._no_ack = no_ack
        self._tag = f"aioqueue.{uuid.uuid4().hex}"
        self._active = False

    async def start(self) -> None:
        self._active = True
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        raw = await self._channel.get_underlay_channel()
        await raw.basic_consume(
            self._queue, self._callback, no_ack=self._no_ack, consumer_tag=self._tag
        )

    async def _on_reopen(self, _: Any) -> None:
        if self._active:
            await self._consume()

    async def cancel(self) -> None:
        """Stop new deliveries; the channel stays open so running tasks can still ack."""
        self._active = False
        self._channel.reopen_callbacks.discard(self._on_reopen)
        if self._channel.is_closed:
            return
        with _map_errors(f"cancel consumer on {self._queue!r}"):
            raw = await self._channel.get_underlay_channel()
            await raw.basic_cancel(self._tag)

    async def close(self) -> None:
        self._active = False
        if not self._channel.is_closed:
            await self._channel.close()


class AmqpTransport:
    """RabbitMQ transport.

    :param url: ``amqp://user:password@host:port/vhost`` or ``amqps://...``.
    :param reconnect_interval: seconds between reconnection attempts.
    :param publish_timeout: how long a publish may wait for the connection to come back.
    :param connection_name: shown in RabbitMQ's management UI.
    """

    def __init__(
        self,
        url: str,
        *,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        connection_name: str = "aioqueue",
    ) -> None:
        self.url = url
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._declarer: AbstractRobustChannel | None = None
        # The publishing channel's aiormq channel, until a reconnection replaces it.
        self._raw_channel: aiormq.abc.AbstractChannel | None = None
        self._queues: dict[str, QueueSpec] = {}
        self._consumers: list[_Consumer] = []
        self._take_locks: dict[str, asyncio.Lock] = {}

    @property
    def server_version(self) -> str:
        if self._connection is None:
            return "unknown"
        underlay = getattr(self._connection, "transport", None)
        props: dict[str, Any] = getattr(
            getattr(underlay, "connection", None), "server_properties", {}
        )
        product = props.get("product", b"RabbitMQ")
        version = props.get("version", b"?")
        if isinstance(product, bytes):
            product = product.decode()
        if isinstance(version, bytes):
            version = version.decode()
        return f"{product} {version}"

    async def connect(self) -> None:
        if self._connection is not None:
            return
        with _map_errors(f"connect to {mask_url(self.url)}"):
            self._connection = await aio_pika.connect_robust(
                self.url,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": self.connection_name},
            )
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            # Declarations have a channel of their own: one the broker refuses closes
            # its channel, which must not take publishes in flight with it.
            self._declarer = await self._connection.channel(publisher_confirms=False)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._declarer = None
        self._raw_channel = None
        consumers, self._consumers = self._consumers, []
        if connection is None:
            return
        for consumer in consumers:
            try:
                await consumer.close()
            except Exception as exc:  # closing after a loss: nothing left to save
                log.debug("closing consumer channel: %s", exc)
        await connection.close()

    def _open_channel(self) -> AbstractRobustChannel:
        if self._channel is None:
            raise BrokerConnectionError("transport is not connected")
        return self._channel

    async def _ready_channel(self) -> AbstractRobustChannel:
        if self._declarer is None:
            raise BrokerConnectionError("transport is not connected")
        # After a refused declaration the robust channel reopens itself: wait for it.
        with _map_errors("reopen channel"):
            async with asyncio.timeout(self.publish_timeout):
                await self._declarer.ready()
        return self._declarer

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        channel = await self._ready_channel()
        with _map_errors(f"declare exchange {spec.name!r}"):
            await channel.declare_exchange(
                spec.name, aio_pika.ExchangeType(spec.type), durable=spec.durable
            )

    async def declare_queue(self, spec: QueueSpec) -> None:
        channel = await self._ready_channel()
        with _map_errors(f"declare queue {spec.name!r}"):
            await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                arguments=spec.arguments or None,
            )
        self._queues[spec.name] = spec

    async def bind(self, binding: Binding) -> None:
        channel = await self._ready_channel()
        spec = self._queues.get(binding.queue, QueueSpec(binding.queue))
        with _map_errors(f"bind {binding.queue!r} to {binding.exchange!r}"):
            queue = await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                arguments=spec.arguments or None,
            )
            await queue.bind(
                binding.exchange, binding.routing_key, arguments=binding.arguments or None
            )

    async def delete_queue(self, name: str) -> None:
        channel = await self._ready_channel()
        with _map_errors(f"delete queue {name!r}"):
            await channel.queue_delete(name)
        self._queues.pop(name, None)

    async def delete_exchange(self, name: str) -> None:
        channel = await self._ready_channel()
        with _map_errors(f"delete exchange {name!r}"):
            await channel.exchange_delete(name)

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        # Straight to aiormq under the robust channel: aio-pika's Message and Exchange
        # wrappers cost more than the rest of a publish.
        properties = _properties(envelope)
        deadline = time.monotonic() + self.publish_timeout
        while True:
            try:
                with _map_errors("publish to %r/%r", exchange, routing_key):
                    raw = self._raw_channel
                    if raw is None or raw.is_closed:
                        raw = await self._open_channel().get_underlay_channel()
                        self._raw_channel = raw
                    await raw.basic_publish(
                        envelope.body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=mandatory,
                    )
                return
            except BrokerConnectionError:
                if not await self._wait_reconnected(deadline):
                    raise

    async def _wait_reconnected(self, deadline: float) -> bool:
        connection = self._connection
        remaining = deadline - time.monotonic()
        if connection is None or remaining <= 0:
            return False
        log.warning("broker connection lost; waiting up to %.0f s to publish", remaining)
        try:
            async with asyncio.timeout(remaining):
                await connection.connected.wait()
                # The robust connection restores its channels right after connecting.
                await self._open_channel().ready()
        except TimeoutError:
            return False
        return True

    async def take_all(self, queue: str, *, min_count: int) -> _Batch | None:
        # Exclusive queues lock out other connections only; this lock covers our own.
        lock = self._take_locks.setdefault(queue, asyncio.Lock())
        if lock.locked():
            return None
        await lock.acquire()
        lock_queue = f"{queue}.lock"
        channels: list[aiormq.abc.AbstractChannel] = []
        try:
            with _map_errors(f"take from {queue!r}"):
                raw = self._raw_connection()
                lock_channel = await raw.channel(publisher_confirms=False)
                channels.append(lock_channel)
                try:
                    await lock_channel.queue_declare(lock_queue, exclusive=True)
                except aiormq.exceptions.ChannelLockedResource:
                    lock.release()
                    return None
                channel = await raw.channel(publisher_confirms=False)
                channels.append(channel)
                taken: list[aiormq.abc.DeliveredMessage] = []
                try:
                    declared = await channel.queue_declare(queue, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    # A queue that is gone holds nothing to take.
                    return _Batch(lock, lock_channel, lock_queue, channel, taken)
                if (declared.message_count or 0) >= min_count:
                    while True:
                        message = await channel.basic_get(queue, no_ack=False)
                        if isinstance(message.delivery, spec.Basic.GetEmpty):
                            break
                        taken.append(message)
                return _Batch(lock, lock_channel, lock_queue, channel, taken)
        except BaseException:
            for opened in channels:
                if not opened.is_closed:
                    await opened.close()
            lock.release()
            raise

    def _raw_connection(self) -> aiormq.abc.AbstractConnection:
        underlay = getattr(self._connection, "transport", None)
        raw = getattr(underlay, "connection", None)
        if raw is None or raw.is_closed:
            raise BrokerConnectionError("transport is not connected")
        return raw  # type: ignore[no-any-return]

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int, no_ack: bool = False
    ) -> _Consumer:
        if self._connection is None:
            raise BrokerConnectionError("transport is not connected")
        spec = self._queues.get(queue, QueueSpec(queue))

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            await handler(_Delivery(message, queue, no_ack))

        with _map_errors(f"consume {queue!r}"):
            channel = await self._connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
            # Declared through the robust channel so that it is declared again after a
            # reconnection, before the consumer is restarted.
            await channel.declare_queue(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                arguments=spec.arguments or None,
            )
            consumer = _Consumer(channel, queue, on_message, no_ack)
            await consumer.start()
        self._consumers.append(consumer)
        return consumer
