"""RabbitMQ over AMQP 0-9-1 through aiormq, aio-pika's protocol layer: the only module that
imports it.

Why not aio-pika's robust connection: its channels re-declare, after every reconnection,
whatever was ever declared through them (chord queues long expired, exclusive lease
queues that must stay lost), and a consumer whose restart fails is dropped with a log
line. aioqueue needs the opposite, so this module keeps its own reconnection loop over
plain aiormq connections:

- Connecting: the broker may have several nodes; the first connection tries them in
  order, round after round (``connect_retries`` more rounds, paused by a jittered
  exponential backoff), all within ``connect_timeout``, then fails with the cause of
  each node's last failure. A node that refused the credentials or the vhost is not
  tried again in that connect.
- Reconnection: a supervisor task waits for the connection to close, pauses (the same
  backoff, from ``reconnect_interval`` up to ``reconnect_max``) and tries every node,
  starting with the one after the node it lost, until one answers;
  :attr:`AmqpTransport.generation` then grows. Nothing declared is declared again by
  the transport, except the queue of each consumer (consuming needs it) before that
  consumer starts again.
- Channels: one with publisher confirms for publishes, shared; one for declarations,
  used by one declaration at a time so that a refused declaration fails alone; one per
  consumer (per-consumer QoS: ``basic.qos`` with global=false, global QoS is being
  withdrawn from RabbitMQ); one per lease and per taken batch.
- A publish to an exchange that is missing closes its channel with a 404, and every
  publish in flight on it with it. So the first publish to an exchange on a connection
  checks the exchange with a passive declare on a channel of its own, and a publish that
  failed because another publish closed the shared channel is sent again on the next
  channel, within ``publish_timeout``: at least once, never silently dropped. (An
  exchange deleted after that check still closes the shared channel; aiormq may then
  write a queued publish after its Channel.CloseOk, which RabbitMQ answers by closing
  the connection: the publishes are then sent again after the reconnection.)
- Whatever was delivered but not acked on a lost channel is redelivered by the broker, so
  a delivery whose ack fails for that reason can be left to the redelivery.
- Leases are exclusive queues: RabbitMQ deletes one with its connection, so a lease frees
  itself when its holder dies, and a reconnection loses it for good.

Every asyncio object is created in the running loop: a transport closed in one event loop
can be connected again from another.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import math
import random
import socket
import ssl
import struct
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import unquote, urlsplit

import aiormq
import aiormq.abc
import aiormq.exceptions
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp import encode as pamqp_encode
from pamqp.header import ContentHeader

from ..config import (
    TlsOption,
    broker_nodes,
    check_connect_budget,
    describe_node,
    mask_url,
    tls_settings,
)
from ..exceptions import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    PreconditionFailedError,
    PublishError,
    UnroutableError,
)
from .backoff import ReconnectBackoff
from .base import BindingSpec, Envelope, ExchangeSpec, Handler, Publish, QueueSpec, QueueState

__all__ = (
    "AmqpTransport",
    "lease_queue_name",
    "state_queue_name",
    "take_lock_name",
)

log = logging.getLogger("aioqueue.transport")


class _ConnectFailureFilter(logging.Filter):
    """Drops aiormq's own ERROR line about a connection it failed to open: this module
    raises that failure (translated), or logs it while reconnecting, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_ConnectFailureFilter())

T = TypeVar("T")

Channel = aiormq.abc.AbstractChannel
Connection = aiormq.abc.AbstractConnection

# A consumer that stopped is started again this many times, with a doubling pause.
_RESUBSCRIBE_ATTEMPTS = 5
_RESUBSCRIBE_DELAY = 0.2
_RESUBSCRIBE_DELAY_MAX = 5.0
# Times an innocent publish is sent again after others closed the channel under it.
_PUBLISH_ATTEMPTS = 5
# How long closing a channel or the connection may take before it is abandoned.
_CLOSE_TIMEOUT = 5.0
# Queue definitions and bindings remembered for consumers to declare their queue again
# after a reconnection; bounded, because queues that expire on their own are never
# deleted. A consumer keeps its own copy.
_SPECS_KEPT = 1024
# The granularity of publish deadlines (see _Deadlines).
_DEADLINE_TICK = 0.25
# How long a state read waits for another reader (at most publish_timeout).
_STATE_LOCK_WAIT = 5.0
# A tombstone is compacted away only when no put older than it can still be in flight.
_TOMBSTONE_KEPT_NS = 600 * 10**9

_KEY = "aioqueue-key"
_VERSION = "aioqueue-version"
_WRITER = "aioqueue-writer"
_TOMBSTONE = "aioqueue-tombstone"


def lease_queue_name(name: str) -> str:
    """The exclusive queue that holds lease ``name``."""
    return f"aioqueue.lease.{name}"


def take_lock_name(queue: str) -> str:
    """The exclusive queue that locks ``queue`` for ``take_all``."""
    return f"{queue}.lock"


def state_queue_name(store: str) -> str:
    """The durable queue that keeps state store ``store``."""
    return f"aioqueue.state.{store}"


# Most specific first: the first matching row decides.
_ERROR_MAP: tuple[tuple[type[BaseException], type[BrokerError]], ...] = (
    (aiormq.exceptions.PublishError, PublishError),
    (aiormq.exceptions.ChannelPreconditionFailed, PreconditionFailedError),
    (aiormq.exceptions.DeliveryError, PublishError),
    (aiormq.exceptions.AMQPConnectionError, BrokerConnectionError),
    (aiormq.exceptions.ChannelInvalidStateError, BrokerConnectionError),
    (ConnectionError, BrokerConnectionError),
    (OSError, BrokerConnectionError),
    (aiormq.exceptions.AMQPError, BrokerError),
)

# What aiormq raises when a channel or connection fails under an operation.
_CHANNEL_FAILURES = (aiormq.exceptions.AMQPError, RuntimeError, OSError)


def _translate(exc: BaseException, action: str) -> BaseException:
    if isinstance(exc, BrokerError):
        return exc
    for foreign, ours in _ERROR_MAP:
        if isinstance(exc, foreign):
            error = ours(f"{action}: {exc}")
            error.__cause__ = exc
            return error
    return exc


def _broker_error(exc: BaseException, action: str) -> BrokerError:
    error = _translate(exc, action)
    if isinstance(error, BrokerError):
        return error
    wrapped = BrokerError(f"{action}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def _reraise(exc: BaseException, action: str) -> NoReturn:
    error = _translate(exc, action)
    if error is exc:
        raise exc
    raise error from exc


@contextmanager
def _map_errors(action: str, *args: object) -> Iterator[None]:
    # ``action % args`` is only formatted on failure: this wraps every ack.
    try:
        yield
    except Exception as exc:
        error = _translate(exc, action % args if args else action)
        if error is exc:
            raise
        raise error from exc


@dataclass(frozen=True, slots=True)
class _ConnectFailure:
    """Why one attempt to connect to one node failed: a sentence, and whether trying
    that node again would only fail the same way (credentials, vhost, TLS)."""

    cause: str
    final: bool
    error: BaseException


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    met: set[int] = set()
    # aiormq's errors can be each other's cause and context: stop at a loop.
    while seen is not None and id(seen) not in met:
        met.add(id(seen))
        yield seen
        seen = seen.__cause__ or seen.__context__


def _connect_failure(exc: BaseException, node: str, timeout: float) -> _ConnectFailure:
    """What ``exc``, raised connecting to ``node``, means (pure).

    aiormq wraps the socket's error in its own (``AMQPConnectionError(*args) from
    exc``), so the original is looked for along the chain of causes.
    """
    parts = urlsplit(node)
    host, port = parts.hostname or "localhost", parts.port or 5672
    for error in _causes(exc):
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {error.verify_message}"
            return _ConnectFailure(f"the TLS handshake failed: {reason}", True, exc)
        if isinstance(error, ssl.SSLError):
            reason = error.reason or error.strerror or str(error)
            if "CERTIFICATE_REQUIRED" in reason:
                reason = f"the broker requires a client certificate and none was given ({reason})"
            return _ConnectFailure(f"the TLS handshake failed: {reason}", True, exc)
        if isinstance(error, ConnectionResetError) and parts.scheme == "amqps":
            # TLS 1.3: a broker that wants a client certificate it did not get resets
            # the connection just after the handshake.
            return _ConnectFailure(
                "the TLS handshake failed: the broker reset the connection, which it "
                "does when it requires a client certificate and none was given",
                True,
                exc,
            )
        if isinstance(error, socket.gaierror):
            return _ConnectFailure(
                f"the host name {host!r} does not resolve (DNS: {error.strerror})", False, exc
            )
        refused = isinstance(error, ConnectionRefusedError) or (
            isinstance(error, OSError) and error.errno == errno.ECONNREFUSED
        )
        if refused:
            return _ConnectFailure(
                f"Connection refused: nothing listens on {host} port {port}", False, exc
            )
        if isinstance(
            error,
            aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError,
        ):
            return _ConnectFailure(
                f"the broker refused the login of user {unquote(parts.username or 'guest')!r}: "
                f"wrong user name or password ({error})",
                True,
                exc,
            )
        if isinstance(error, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(
            error
        ):
            # RabbitMQ answers Connection.Open for a vhost that is missing or not
            # permitted with Connection.Close (530 NOT_ALLOWED); aiormq keeps only the
            # frame's repr, so the broker's reason is lost: say what it means.
            vhost = unquote(parts.path[1:]) or "/"
            return _ConnectFailure(
                f"the broker refused virtual host {vhost!r}: it does not exist, "
                "or this user is not permitted to use it",
                True,
                exc,
            )
        if isinstance(error, TimeoutError):
            return _ConnectFailure(f"no answer within {timeout:.3g} s", False, exc)
    if "Connect call failed" in str(exc):
        # Several addresses for one name (IPv6 and IPv4): asyncio joins their errors.
        return _ConnectFailure(
            f"Connection refused: nothing listens on {host} port {port}", False, exc
        )
    return _ConnectFailure(str(exc) or repr(exc), False, exc)


def _gave_up(
    failures: dict[str, _ConnectFailure], nodes: Sequence[str], rounds: int, elapsed: float
) -> str:
    """The message of the error a first connect fails with: every node's last cause."""
    tries = f"{rounds} {'attempt' if len(nodes) == 1 else 'round'}{'s' if rounds != 1 else ''}"
    spent = f"gave up after {tries} in {elapsed:.1f} s"
    if len(nodes) == 1:
        node = nodes[0]
        cause = failures[node].cause if node in failures else "no time left to try"
        return f"connect to {describe_node(node)}: {cause}; {spent}"
    causes = "; ".join(
        f"{describe_node(node)}: {failures[node].cause if node in failures else 'not tried'}"
        for node in nodes
    )
    return f"connect to none of the {len(nodes)} broker nodes ({spent}): {causes}"


async def _close_reason(channel: Channel) -> BaseException | None:
    """Why a failing channel closed (the broker's refusal), or None.

    aiormq refuses further calls as soon as the broker's Channel.Close arrives, a little
    before the channel counts as closed: wait for that, briefly.
    """
    closing = channel.closing
    try:
        await asyncio.wait((closing,), timeout=_CLOSE_TIMEOUT)
    finally:
        closing.cancel()
    if not channel.is_closed:
        return None
    closed = channel.closing
    return None if closed.cancelled() else closed.exception()


async def _open_channel(connection: Connection, action: str, **options: Any) -> Channel:
    try:
        return await connection.channel(**options)
    except _CHANNEL_FAILURES as exc:
        if connection.is_closed:
            raise BrokerConnectionError(f"{action}: the connection is closed") from exc
        _reraise(exc, action)


async def _passive_on(
    connection: Connection, action: str, operation: Callable[[Channel], Awaitable[T]]
) -> T | None:
    """``operation`` (a passive declaration) on a throwaway channel; None for NOT_FOUND."""
    channel = await _open_channel(connection, action, publisher_confirms=False)
    try:
        return await operation(channel)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    except _CHANNEL_FAILURES as exc:
        if connection.is_closed:
            raise BrokerConnectionError(f"{action}: the connection is closed") from exc
        _reraise(exc, action)
    finally:
        await _close_quietly(channel)


async def _close_quietly(channel: Channel | None) -> None:
    if channel is None or channel.is_closed:
        return
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await channel.close()
    except (*_CHANNEL_FAILURES, TimeoutError) as exc:
        # The connection is gone or going: the broker closes the channel with it.
        log.debug("closing channel: %r", exc)


async def _get_all(channel: Channel, queue: str) -> list[aiormq.abc.DeliveredMessage]:
    taken: list[aiormq.abc.DeliveredMessage] = []
    while True:
        message = await channel.basic_get(queue, no_ack=False)
        if isinstance(message.delivery, spec.Basic.GetEmpty):
            return taken
        taken.append(message)


class _Acks:
    """The acks of one consumer channel, sent together once per turn of the loop.

    Acking each delivery on its own costs a frame, a write and the broker's work per
    message, and tasks finish in bursts. What finished in one turn goes out at once, as
    one write: a ``multiple`` ack up to the newest delivery before which every delivery
    is settled, and a single ack for each other one. A delivery that is still running is
    never covered by a ``multiple`` ack. Nobody waits for the write: an ack that cannot
    be sent (the channel closed) is logged, and the broker redelivers its message.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._unsettled: deque[int] = deque()  # delivery tags, in delivery order
        self._finished: set[int] = set()  # acked by the worker, not yet sent
        self._alone: set[int] = set()  # settled on their own while older ones were not
        self._sending: asyncio.Task[None] | None = None  # the latest write waiting for room
        self._due = False
        self.closed = False

    def delivered(self, tag: int) -> None:
        self._unsettled.append(tag)

    def ack(self, tag: int) -> None:
        """Ack ``tag`` with the others of this turn."""
        self._finished.add(tag)
        if not self._due:
            self._due = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def close(self) -> None:
        """Send nothing more, before the channel closes: the broker frees a channel as
        soon as it answers the close, and a frame on a freed channel makes it close the
        whole connection. What finished is acked first; acks asked for later fail (the
        broker redelivers those messages)."""
        if self._due:
            self._flush()
        sending = self._sending
        if sending is not None and not sending.done():
            # Each write waits for the one before it: the latest is the last to end.
            await asyncio.wait((sending,), timeout=_CLOSE_TIMEOUT)
            sending.cancel()
        self.closed = True

    def settled_alone(self, tag: int) -> None:
        """``tag`` was settled otherwise (rejected)."""
        self._alone.add(tag)

    def _flush(self) -> None:
        self._due = False
        finished, self._finished = self._finished, set()
        upto = None
        unsettled = self._unsettled
        while unsettled:
            tag = unsettled[0]
            if tag in finished:
                finished.discard(tag)
                upto = tag
            elif tag in self._alone:
                self._alone.discard(tag)
            else:
                break
            unsettled.popleft()
        self._alone |= finished
        # The broker finds a single ack's delivery by walking its unacked ones from the
        # oldest: the multiple ack goes first, and the single ones oldest first.
        acks = [] if upto is None else [spec.Basic.Ack(upto, multiple=True)]
        acks += [spec.Basic.Ack(tag) for tag in sorted(finished)]
        if not acks:
            return
        channel = cast(aiormq.Channel, self.channel)
        if self.closed or _closing(channel):
            self._lost(len(acks), "the channel closed before they were sent")
            return
        frame = ChannelFrame.marshall(channel.number, acks)
        previous = self._sending
        if (previous is None or previous.done()) and not channel.write_queue.full():
            channel.write_queue.put_nowait(frame)
            return
        # After the turns still waiting for room: a multiple ack written before another
        # turn's single ones could cover one of them, and the broker closes the channel
        # on a tag it no longer knows.
        self._sending = asyncio.get_running_loop().create_task(
            self._send(frame, len(acks), previous)
        )

    async def _send(
        self, frame: ChannelFrame, count: int, previous: asyncio.Task[None] | None
    ) -> None:
        channel = cast(aiormq.Channel, self.channel)
        try:
            if previous is not None:
                await asyncio.wait((previous,))
            await _put(channel, frame)
        except aiormq.exceptions.AMQPError as exc:
            self._lost(count, str(exc))

    def _lost(self, count: int, why: str) -> None:
        log.warning(
            "%d acks on channel %s not sent (%s): the broker redelivers", count, self.channel, why
        )


class _Delivery:
    __slots__ = ("_acks", "_message", "envelope", "queue")

    def __init__(
        self, message: aiormq.abc.DeliveredMessage, queue: str, acks: _Acks | None
    ) -> None:
        self._message = message
        self._acks = acks
        self.queue = queue
        self.envelope = _envelope(message)

    @property
    def redelivered(self) -> bool:
        return bool(getattr(self._message.delivery, "redelivered", False))

    async def ack(self) -> None:
        if self._acks is None:
            return
        if self._acks.closed:
            raise BrokerConnectionError(f"ack on {self.queue!r}: the consumer's channel is closed")
        tag = self._message.delivery_tag
        assert tag is not None
        self._acks.ack(tag)

    async def reject(self, *, requeue: bool) -> None:
        if self._acks is None:
            return
        tag = self._message.delivery_tag
        assert tag is not None
        self._acks.settled_alone(tag)
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


class _Lease:
    """An exclusive queue declared on a channel of its own.

    The lease is lost when the channel closes, which it does with the connection. A
    watched lease also consumes its queue, so that the broker's ``basic.cancel`` tells
    when someone deleted it; short-lived locks (batches, state reads) skip that.
    """

    def __init__(self, transport: AmqpTransport, name: str, queue: str, channel: Channel) -> None:
        self._transport = transport
        self._name = name
        self._queue = queue
        self._channel = channel
        self._tag = f"aioqueue.lease.{uuid.uuid4().hex}"
        self._lost = asyncio.Event()
        self._releasing = False
        self._watched = False
        transport._holders[queue] = self
        channel.closing.add_done_callback(lambda _: self._lose())
        channel.on_consumer_cancel_callbacks.add(self._on_cancel)

    @property
    def name(self) -> str:
        return self._name

    @property
    def held(self) -> bool:
        return not self._lost.is_set()

    @property
    def connection(self) -> Connection:
        return self._channel.connection

    async def watch(self) -> None:
        async def ignore(_: aiormq.abc.DeliveredMessage) -> None:
            return None

        await self._channel.basic_consume(self._queue, ignore, no_ack=True, consumer_tag=self._tag)
        self._watched = True

    async def release(self) -> None:
        if self._lost.is_set() or self._releasing:
            return
        self._releasing = True
        try:
            if not self._channel.is_closed:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    if self._watched:
                        # Else the delete below comes back as a cancel, logged as a loss.
                        await self._channel.basic_cancel(self._tag, nowait=True)
                    # Deleted before it counts as free here: a caller on this connection
                    # could otherwise declare the same queue and lose it to this delete.
                    await self._channel.queue_delete(self._queue)
                    await self._channel.close()
        except (*_CHANNEL_FAILURES, TimeoutError) as exc:
            # The connection is gone: the broker dropped the queue with it.
            log.debug("releasing lease %r: %r", self._name, exc)
        finally:
            self._lose()

    async def wait_lost(self) -> None:
        await self._lost.wait()

    def _on_cancel(self, frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self._tag and self.held:
            log.warning("lease %r lost: its queue %r was deleted", self._name, self._queue)
            self._lose()

    def _lose(self) -> None:
        if self._lost.is_set():
            return
        self._lost.set()
        holders = self._transport._holders
        if holders.get(self._queue) is self:
            del holders[self._queue]


class _Batch:
    """Messages taken with basic.get on a private channel, under a lease.

    :meth:`commit` runs the publishes and the ack of every taken message in one AMQP
    transaction, so a taker killed at any point either did all of it or none of it (the
    broker then requeues what was taken and deletes the lease with the connection). A
    publish the broker refuses closes the channel, which rolls the transaction back.
    """

    def __init__(
        self,
        transport: AmqpTransport,
        lease: _Lease,
        channel: Channel,
        taken: list[aiormq.abc.DeliveredMessage],
    ) -> None:
        self._transport = transport
        self._lease = lease
        self._channel = channel
        self._taken = taken
        self._done = False
        self.envelopes = [_envelope(m) for m in taken]

    async def commit(self, publishes: list[Publish]) -> None:
        self._finish()
        try:
            for exchange in sorted({p.exchange for p in publishes if p.exchange}):
                try:
                    await self._transport._check_exchange(exchange)
                except PublishError as exc:
                    raise PublishError(f"commit batch: {exc}; nothing was published") from exc
            with _map_errors("commit batch"):
                try:
                    await self._transact(publishes)
                except _CHANNEL_FAILURES as exc:
                    reason = await _close_reason(self._channel)
                    if isinstance(reason, aiormq.exceptions.ChannelNotFoundEntity):
                        raise PublishError(
                            f"commit batch: {reason}; nothing was published"
                        ) from exc
                    raise
        finally:
            await self._close()

    async def _transact(self, publishes: list[Publish]) -> None:
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

    async def release(self) -> None:
        self._finish()
        # Closing the channel returns every unacked message to the queue.
        await self._close()

    def _finish(self) -> None:
        if self._done:
            raise BrokerError("batch already committed or released")
        self._done = True

    async def _close(self) -> None:
        try:
            await _close_quietly(self._channel)
        finally:
            await self._lease.release()


_Stop = Literal["cancelled", "closed"]


class _Consumer:
    """A basic.consume on a channel of its own, started again whenever it stops.

    It stops when its channel closes (the connection went, or the broker closed the
    channel) or when the broker cancels it (its queue was deleted, a cluster node went).
    After a lost connection its queue is declared and bound again first, as it was
    declared and bound on this transport, since an exclusive queue went with the
    connection; after a cancel it is not, so that a deleted queue stays deleted and the
    consumer is reported lost.
    """

    def __init__(
        self,
        transport: AmqpTransport,
        queue: str,
        spec: QueueSpec | None,
        bindings: list[BindingSpec],
        handler: Handler,
        prefetch: int,
        no_ack: bool,
    ) -> None:
        self._transport = transport
        self.queue = queue
        self._spec = spec
        self.bindings = bindings
        self._handler = handler
        self._prefetch = prefetch
        self._no_ack = no_ack
        self._tag = f"aioqueue.{uuid.uuid4().hex}"
        self._channel: Channel | None = None
        self._acks: _Acks | None = None  # the current channel's
        self._stopped: _Stop | None = None
        loop = asyncio.get_running_loop()
        self._lost: asyncio.Future[BrokerError] = loop.create_future()
        self._broker_cancel: asyncio.Future[None] = loop.create_future()
        self._watcher: asyncio.Task[None] | None = None
        # Handlers running (see _on_message); close() cancels them.
        self._handling: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._subscribe(declare=False)
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def cancel(self) -> None:
        """Stop new deliveries; the channel stays open so running tasks can still ack."""
        if self._stopped is not None:
            return
        self._stopped = "cancelled"
        await self._stop_watching()
        channel = self._channel
        if channel is not None and not channel.is_closed:
            with _map_errors("cancel consumer of %r", self.queue):
                await channel.basic_cancel(self._tag)

    async def close(self) -> None:
        if self._stopped == "closed":
            return
        try:
            await self.cancel()
        except BrokerError as exc:
            log.debug("cancelling consumer of %r: %s", self.queue, exc)
        self._stopped = "closed"
        self._transport._consumers.discard(self)
        if self._acks is not None:
            await self._acks.close()
        await _close_quietly(self._channel)
        for handling in list(self._handling):
            handling.cancel()

    async def wait_lost(self) -> BrokerError:
        return await asyncio.shield(self._lost)

    async def _on_message(self, message: aiormq.abc.DeliveredMessage) -> None:
        # In a task of its own rather than aiormq's, which is cancelled when the channel
        # dies: a task running when the connection goes finishes its work (its ack then
        # fails, the broker redelivers, and the worker knows that it ran).
        acks = None
        if not self._no_ack:
            acks = self._acks
            if acks is None or acks.channel is not message.channel:
                acks = self._acks = _Acks(message.channel)
            assert message.delivery_tag is not None
            acks.delivered(message.delivery_tag)
        handling = asyncio.ensure_future(self._handler(_Delivery(message, self.queue, acks)))
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)
        await asyncio.shield(handling)

    def _on_cancel(self, frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self._tag and not self._broker_cancel.done():
            self._broker_cancel.set_result(None)

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _subscribe(self, *, declare: bool) -> None:
        connection = await self._transport._wait_connection()
        if declare and self._spec is not None:
            try:
                await self._transport.declare_queue(self._spec)
            except PreconditionFailedError as exc:
                log.warning("consumer of %r: using the queue as it is: %s", self.queue, exc)
        if declare:
            for binding in list(self.bindings):
                await self._transport.bind(binding)
        channel = self._channel
        try:
            if channel is None or channel.is_closed or channel.connection is not connection:
                action = f"consume {self.queue!r}"
                channel = await _open_channel(connection, action, publisher_confirms=False)
                self._channel = channel
                channel.on_consumer_cancel_callbacks.add(self._on_cancel)
                with _map_errors(action):
                    await channel.basic_qos(prefetch_count=self._prefetch)
            if self._broker_cancel.done():
                self._broker_cancel = asyncio.get_running_loop().create_future()
            with _map_errors("consume %r", self.queue):
                await channel.basic_consume(
                    self.queue, self._on_message, no_ack=self._no_ack, consumer_tag=self._tag
                )
        except BaseException:
            # The next attempt starts on a fresh channel.
            await _close_quietly(channel)
            raise

    async def _watch(self) -> None:
        while self._stopped is None:
            channel = self._channel
            assert channel is not None
            closing = channel.closing
            try:
                await asyncio.wait(
                    (closing, self._broker_cancel), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closing.cancel()
            if self._stopped is not None:
                return
            lost_connection = channel.connection.is_closed
            if self._broker_cancel.done():
                why = "the broker cancelled it"
            elif lost_connection:
                why = "the connection was lost"
            else:
                why = f"its channel closed ({await _close_reason(channel)!r})"
            log.warning("consumer of %r stopped: %s; consuming again", self.queue, why)
            error = await self._resubscribe(declare=lost_connection)
            if error is not None:
                await self._lose(error)
                return
            if self._transport._state != "open":
                return

    async def _resubscribe(self, *, declare: bool) -> BrokerError | None:
        delay = _RESUBSCRIBE_DELAY
        failures = 0
        while True:
            try:
                await self._subscribe(declare=declare)
            except BrokerError as exc:
                if self._transport._state != "open":
                    return None  # closing: aclose() closes this consumer
                if not self._transport._is_connected():
                    # Lost the connection meanwhile: the transport reconnects; that does
                    # not count as an attempt, and the queue is declared again.
                    declare = True
                    continue
                failures += 1
                if failures >= _RESUBSCRIBE_ATTEMPTS:
                    return BrokerError(
                        f"consumer of queue {self.queue!r} stopped and could not start "
                        f"again ({failures} attempts): {exc}"
                    )
                log.warning(
                    "consumer of %r: consuming again failed (%s); attempt %d of %d in %.1f s",
                    self.queue,
                    exc,
                    failures + 1,
                    _RESUBSCRIBE_ATTEMPTS,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RESUBSCRIBE_DELAY_MAX)
            else:
                log.info("consumer of %r consuming again", self.queue)
                return None

    async def _lose(self, error: BrokerError) -> None:
        log.error("%s", error)
        self._stopped = "closed"
        self._transport._consumers.discard(self)
        if not self._lost.done():
            self._lost.set_result(error)
        await _close_quietly(self._channel)


@dataclass(frozen=True, slots=True)
class _StateRecord:
    key: str | None
    version: int
    writer: str
    tombstone: bool
    value: bytes


def _state_record(message: aiormq.abc.DeliveredMessage) -> _StateRecord:
    headers = message.header.properties.headers or {}
    key = headers.get(_KEY)
    version = headers.get(_VERSION)
    return _StateRecord(
        key=key if isinstance(key, str) else None,
        version=version if isinstance(version, int) else 0,
        writer=str(headers.get(_WRITER, "")),
        tombstone=bool(headers.get(_TOMBSTONE)),
        value=message.body,
    )


def _compact_state(
    records: list[_StateRecord], *, now_ns: int, tombstone_kept_ns: int = _TOMBSTONE_KEPT_NS
) -> tuple[dict[str, bytes], list[int]]:
    """The live values of a state store, and the positions of the records to drop (pure).

    The newest version of each key wins (ties broken by writer id), never the queue
    order: compaction puts live records back behind puts that arrived meanwhile. Older
    versions are garbage; so is a winning tombstone once no older put can still be in
    flight. Records without a key (not written by aioqueue) are left alone.
    """
    newest: dict[str, int] = {}
    for i, record in enumerate(records):
        if record.key is None:
            continue
        best = newest.get(record.key)
        if best is None or (record.version, record.writer) > (
            records[best].version,
            records[best].writer,
        ):
            newest[record.key] = i
    keep = set(newest.values())
    garbage = [i for i, r in enumerate(records) if r.key is not None and i not in keep]
    for i in keep:
        record = records[i]
        if record.tombstone and now_ns - record.version > tombstone_kept_ns:
            garbage.append(i)
    values = {key: records[i].value for key, i in newest.items() if not records[i].tombstone}
    return values, sorted(garbage)


def _publishing(exchange: str, routing_key: str) -> str:
    # Formatted only when a publish fails: it would cost on every one.
    return f"publish to {exchange!r}/{routing_key!r}"


# basic.return's reply code for a mandatory message that no queue is bound to receive.
_NO_ROUTE = 312


def _publish_refused(
    exc: aiormq.exceptions.DeliveryError, exchange: str, routing_key: str
) -> PublishError:
    """Our error for a publish the broker returned or nacked."""
    frame = exc.frame
    if isinstance(frame, spec.Basic.Return) and frame.reply_code == _NO_ROUTE:
        return UnroutableError(exchange, routing_key)
    return PublishError(f"{_publishing(exchange, routing_key)}: {exc}")


# The publishes of one turn are written in pieces of at most this many messages or
# bytes, so that one large batch does not hold the connection from the rest for long.
_WRITE_MESSAGES = 256
_WRITE_BYTES = 1 << 20

_Outgoing = tuple[Publish, "asyncio.Future[Any]"]


def _pieces(outgoing: list[_Outgoing]) -> Iterator[list[_Outgoing]]:
    piece: list[_Outgoing] = []
    size = 0
    for item in outgoing:
        piece.append(item)
        size += len(item[0].envelope.body)
        if len(piece) >= _WRITE_MESSAGES or size >= _WRITE_BYTES:
            yield piece
            piece, size = [], 0
    if piece:
        yield piece


def _frame(
    channel: aiormq.Channel, outgoing: list[_Outgoing], drained: asyncio.Future[Any]
) -> ChannelFrame:
    """Number ``outgoing`` on ``channel`` and marshal them as one write.

    Each publish is numbered and its confirm future registered as aiormq's
    ``basic_publish`` does, so aiormq settles the futures (confirms, returns); a closing
    channel fails them through the outbox.
    """
    frames: list[Any] = []
    for p, confirmation in outgoing:
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        properties = _properties(p.envelope)
        message_id = properties.message_id
        if not message_id:
            message_id = properties.message_id = uuid.uuid4().hex
        channel.confirmations[tag] = confirmation
        channel.message_id_delivery_tag[message_id] = tag
        confirmation.add_done_callback(functools.partial(_settled, channel, message_id, tag))
        body = p.envelope.body
        frames.append(
            spec.Basic.Publish(
                exchange=p.exchange, routing_key=p.routing_key, mandatory=p.mandatory
            )
        )
        frames.append(ContentHeader(properties=properties, body_size=len(body)))
        frames += channel._split_body(body)
    return ChannelFrame.marshall(channel_number=channel.number, frames=frames, drain_future=drained)


class _Outbox:
    """Every publish of the publisher channel: those of one turn of the loop go out as
    one write.

    ``basic_publish`` costs a lock, a queued write and a wait for the socket per message.
    Publishes made in the same turn (a worker's results as its tasks finish, a client's
    concurrent sends, a group's members) are numbered and written together at the end of
    the turn instead. The outbox is the channel's only publisher, so numbering and
    writing in order is its own business. While the previous write has not reached the
    socket, the next one waits for it in a task of its own: a slow broker slows
    publishers down instead of filling memory. A publish cancelled before its write is
    never sent.

    The confirms are plain futures. One future in aiormq's stores stands for all of
    them: when the channel or its connection closes, aiormq fails it and the outbox
    fails every confirm still open. Registering each confirm in those stores, as
    ``channel.create_future`` does, costs two closures and three callbacks per publish,
    which with thousands in flight keep the garbage collector busy.
    """

    def __init__(self, channel: aiormq.Channel) -> None:
        self.channel = channel
        self._queued: list[_Outgoing] = []
        self._drained: asyncio.Future[Any] | None = None
        self._writing = asyncio.Lock()
        self._writers: set[asyncio.Task[None]] = set()
        self._closed = channel.create_future()
        self._closed.add_done_callback(self._fail_open)

    def publish(self, publish: Publish) -> asyncio.Future[Any]:
        """Queue ``publish`` for this turn's write; the future is its confirm."""
        confirmation = asyncio.get_running_loop().create_future()
        if self._closed.done():
            _fail([confirmation], self._closing_error())
            return confirmation
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append((publish, confirmation))
        return confirmation

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for piece in _pieces(queued):
            drained = self._drained
            if (
                # A write still queued goes first: the outbox numbers in write order.
                self._writers
                or self._writing.locked()
                or self.channel.write_queue.full()
                or not (drained is None or drained.done())
            ):
                writer = asyncio.get_running_loop().create_task(self._write(piece))
                self._writers.add(writer)
                writer.add_done_callback(self._writers.discard)
                continue
            try:
                frame = self._number(piece)
                if frame is not None:
                    self.channel.write_queue.put_nowait(frame)
            except Exception as exc:
                _fail([c for _, c in piece], exc)

    async def _write(self, piece: list[_Outgoing]) -> None:
        channel = self.channel
        try:
            async with self._writing:
                if self._drained is not None:
                    await asyncio.wait([self._drained])
                first = channel.delivery_tag
                frame = self._number(piece)
                if frame is None:
                    return
                try:
                    await _put(channel, frame)
                except BaseException:
                    _unnumber(channel, first)
                    raise
        except Exception as exc:
            _fail([c for _, c in piece], exc)
        except BaseException:
            for _, confirmation in piece:
                confirmation.cancel()
            raise

    def _closing_error(self) -> BaseException:
        closed = self._closed
        exc = None if closed.cancelled() else closed.exception()
        return exc or aiormq.exceptions.ChannelInvalidStateError("channel is closed")

    def _fail_open(self, _: object) -> None:
        """Fail the confirms the closed channel will never settle: those written and
        those still queued (a write waiting in a task fails when it next numbers)."""
        exc = self._closing_error()
        written = self.channel.confirmations.values()
        _fail([c for c in written if isinstance(c, asyncio.Future)], exc)
        _fail([c for _, c in self._queued], exc)

    async def aclose(self) -> None:
        """Stop the writes still waiting; their publishes fail as on a closed channel."""
        writers = list(self._writers)
        for writer in writers:
            writer.cancel()
        await asyncio.gather(*writers, return_exceptions=True)

    def _number(self, piece: list[_Outgoing]) -> ChannelFrame | None:
        """The write of what is still to send of ``piece``; ``None`` if nothing is."""
        outgoing = [item for item in piece if not item[1].done()]
        if not outgoing:
            return None
        channel = self.channel
        if self._closed.done():
            raise self._closing_error()
        if _closing(channel):
            raise aiormq.exceptions.ChannelInvalidStateError("channel is closed")
        first = channel.delivery_tag
        drained = channel.create_future()
        try:
            frame = _frame(channel, outgoing, drained)
        except BaseException:
            _unnumber(channel, first)  # a publish that cannot be marshalled
            raise
        self._drained = drained
        return frame


async def _put(channel: aiormq.Channel, frame: ChannelFrame) -> None:
    """Queue ``frame`` for the connection's writer, unless the channel closes first: a
    dead connection's writer no longer empties its full queue."""
    put = asyncio.ensure_future(channel.write_queue.put(frame))
    closing = channel.closing
    try:
        await asyncio.wait((put, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        if not put.done():
            put.cancel()
    if not put.done():
        raise aiormq.exceptions.ChannelInvalidStateError("channel is closed")


def _unnumber(channel: aiormq.Channel, first: int) -> None:
    """Undo the numbering after ``first`` of a write that did not happen: the broker has
    seen none of those publishes, so their numbers are used again."""
    for tag in range(first + 1, channel.delivery_tag + 1):
        channel.confirmations.pop(tag, None)
    channel.delivery_tag = first


def _closing(channel: Channel) -> bool:
    """Whether ``channel`` is closed or closing. aiormq marks a channel closed a moment
    after it answered the broker's close: a frame written then reaches a channel number
    the broker has freed, and the broker closes the whole connection for it."""
    event = getattr(channel, "_Channel__close_event", None)
    return channel.is_closed or (isinstance(event, asyncio.Event) and event.is_set())


def _fail(confirmations: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for confirmation in confirmations:
        if not confirmation.done():
            confirmation.set_exception(exc)
            confirmation.exception()  # a publisher that stopped waiting logs nothing


def _settled(
    channel: aiormq.Channel, message_id: str, tag: int, confirmation: asyncio.Future[Any]
) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]
    if not confirmation.cancelled():
        confirmation.exception()  # a publisher that stopped waiting logs nothing


def _remember(table: OrderedDict[str, Any], key: str, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _SPECS_KEPT:
        table.popitem(last=False)


class _Deadlines:
    """Publish deadlines that share one timer per tick instead of one per publish.

    ``asyncio.timeout`` schedules and cancels a timer for every publish, which with
    thousands in flight costs more than the rest of the publish. Here the publishes
    whose deadlines fall in the same tick (``_DEADLINE_TICK`` seconds) share one timer,
    which cancels those still running; a deadline is therefore met up to one tick late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ticks: dict[int, set[asyncio.Task[Any]]] = {}
        self.expired: set[asyncio.Task[Any]] = set()

    def enter(self, task: asyncio.Task[Any], timeout: float) -> int:
        tick = math.ceil((self._loop.time() + timeout) / _DEADLINE_TICK)
        waiting = self._ticks.get(tick)
        if waiting is None:
            waiting = self._ticks[tick] = set()
            self._loop.call_at(tick * _DEADLINE_TICK, self._expire, tick)
        waiting.add(task)
        return tick

    def leave(self, task: asyncio.Task[Any], tick: int) -> None:
        waiting = self._ticks.get(tick)
        if waiting is not None:
            waiting.discard(task)

    def _expire(self, tick: int) -> None:
        for task in self._ticks.pop(tick, ()):
            self.expired.add(task)
            task.cancel()


class _Session:
    """The asyncio objects of one event loop, created inside it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.connect_lock = asyncio.Lock()
        self.publisher_lock = asyncio.Lock()
        self.declare_lock = asyncio.Lock()
        self.connected = asyncio.Event()
        self.deadlines = _Deadlines(self.loop)


class AmqpTransport:
    """RabbitMQ transport.

    :param url: ``amqp://user:password@host:port/vhost`` or ``amqps://...``; several
        nodes as ``amqp://user:password@h1:5672,h2:5673/vhost``, as URLs separated by
        ``;``, or as a list (see :func:`aioqueue.config.broker_nodes`), tried in order.
    :param reconnect_interval: seconds of the first pause before reconnecting; each
        round that fails doubles it, up to ``reconnect_max`` (both jittered).
    :param reconnect_max: the longest pause between reconnection rounds.
    :param publish_timeout: the longest a publish (confirm included) or a declaration may
        take, waiting for a lost connection to come back included.
    :param connection_name: shown in RabbitMQ's management UI.
    :param connect_timeout: the longest the first connection may take, every attempt
        included (:meth:`connect` then fails); also the longest one reconnection attempt
        to a node may take.
    :param connect_retries: how many more rounds over the nodes the first connection
        makes after the first round failed, within ``connect_timeout``.
    :param ssl: TLS for ``amqps://`` nodes: an ``ssl.SSLContext``, a
        :class:`~aioqueue.config.TLS` or a mapping of its fields (default: the system's
        CAs, the URL's ``cafile``/``certfile``/``keyfile`` query, as aiormq reads it).
    :raises ConfigurationError: a URL or a value is invalid, ``ssl`` for a node that is
        not ``amqps://``, or TLS files that cannot be loaded.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        reconnect_interval: float = 1.0,
        reconnect_max: float = 30.0,
        publish_timeout: float = 30.0,
        connection_name: str = "aioqueue",
        connect_timeout: float = 30.0,
        connect_retries: int = 3,
        ssl: TlsOption | None = None,
    ) -> None:
        self.nodes = broker_nodes(url)
        self.url = url if isinstance(url, str) else ";".join(self.nodes)
        self.backoff = ReconnectBackoff(
            first=reconnect_interval, longest=max(reconnect_max, reconnect_interval)
        )
        check_connect_budget(connect_timeout, connect_retries)
        self.publish_timeout = publish_timeout
        self.connection_name = connection_name
        self.connect_timeout = connect_timeout
        self.connect_retries = connect_retries
        if ssl is not None and any(urlsplit(node).scheme != "amqps" for node in self.nodes):
            raise ConfigurationError(
                f"ssl is given but broker {mask_url(self.url)!r} is not amqps://: "
                "use amqps:// (RabbitMQ's TLS port, 5671 by default) for TLS"
            )
        self._tls = tls_settings(ssl)
        # The node of the current (or last) connection: reconnection starts after it.
        self._node_index = 0
        self._session: _Session | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        self._connection: Connection | None = None
        self._generation = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._publisher: Channel | None = None
        self._outbox: _Outbox | None = None
        self._declarer: Channel | None = None
        # Exchanges known to exist on this connection, and checks under way.
        self._exchanges: set[str] = set()
        self._exchange_checks: dict[str, asyncio.Task[None]] = {}
        self._specs: OrderedDict[str, QueueSpec] = OrderedDict()
        self._bindings: OrderedDict[str, list[BindingSpec]] = OrderedDict()
        self._consumers: set[_Consumer] = set()
        # Lock queues held (or being taken: None) by this transport.
        self._holders: dict[str, _Lease | None] = {}
        self._state_queues: set[str] = set()
        self._writer = uuid.uuid4().hex[:12]
        self._last_version = 0

    @property
    def server_version(self) -> str:
        connection = self._connection
        props: dict[str, Any] = dict(connection.server_properties) if connection else {}
        if not props:
            return "unknown"
        product = props.get("product", b"RabbitMQ")
        version = props.get("version", b"?")
        if isinstance(product, bytes):
            product = product.decode()
        if isinstance(version, bytes):
            version = version.decode()
        return f"{product} {version}"

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def node(self) -> str | None:
        """The URL (password included) of the node the transport is connected to now;
        ``None`` while it is not connected."""
        return self.nodes[self._node_index] if self._is_connected() else None

    # -- connection --------------------------------------------------------------------

    async def connect(self) -> None:
        session = self._loop_state()
        async with session.connect_lock:
            if self._state == "open":
                return
            connection = await self._first_connection()
            self._state = "open"
            self._install(connection)
            self._supervisor = session.loop.create_task(self._supervise())

    async def aclose(self) -> None:
        session = self._loop_state()
        self._state = "closed"
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        checks = list(self._exchange_checks.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)
        for consumer in list(self._consumers):
            await consumer.close()
        for lease in list(self._holders.values()):
            if lease is not None:
                lease._lose()
        connection, self._connection = self._connection, None
        # Wake whoever waits for a connection: they find the transport closed.
        session.connected.set()
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            await outbox.aclose()
        self._publisher = self._declarer = None
        self._exchanges.clear()
        self._state_queues.clear()
        if connection is not None and not connection.is_closed:
            try:
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await connection.close()
            except (*_CHANNEL_FAILURES, TimeoutError) as exc:
                log.debug("closing the connection: %r", exc)

    def _loop_state(self) -> _Session:
        session = self._session
        if session is None or session.loop is not asyncio.get_running_loop():
            # Opened again from another loop: nothing of the old one can be used here.
            session = self._session = _Session()
            self._connection = self._supervisor = None
            self._publisher = self._declarer = None
            self._exchanges.clear()
            self._exchange_checks.clear()
            self._consumers.clear()
            self._holders.clear()
            self._state_queues.clear()
            if self._state == "open":
                self._state = "new"
        return session

    async def _first_connection(self) -> Connection:
        """A connection to the first node that answers, within the connect budget.

        :raises BrokerConnectionError: no node answered in ``connect_retries + 1``
            rounds or ``connect_timeout`` seconds; it names each node's last cause.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.connect_timeout
        failures: dict[str, _ConnectFailure] = {}
        rounds = 0
        while True:
            rounds += 1
            connection = await self._round(0, failures, deadline=deadline)
            if connection is not None:
                return connection
            hopeless = all(node in failures and failures[node].final for node in self.nodes)
            if hopeless or rounds > self.connect_retries or loop.time() >= deadline:
                break
            pause = self.backoff.delay(rounds - 1, random.random())
            log.debug("connect: round %d failed; next in %.2f s", rounds, pause)
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        message = _gave_up(failures, self.nodes, rounds, loop.time() - started)
        last = next(reversed(failures.values()), None)
        raise BrokerConnectionError(message) from (last.error if last else None)

    async def _round(
        self, start: int, failures: dict[str, _ConnectFailure], *, deadline: float | None
    ) -> Connection | None:
        """Try each node once, from ``nodes[start]`` on, round the list; the first
        connection made, else ``None`` with each node's cause in ``failures``.

        Within a ``deadline`` (the first connection), a node whose last failure was
        final is skipped; each attempt gets an equal share of ``connect_timeout``.
        """
        loop = asyncio.get_running_loop()
        count = len(self.nodes)
        share = self.connect_timeout / count
        for offset in range(count):
            index = (start + offset) % count
            node = self.nodes[index]
            if deadline is not None and node in failures and failures[node].final:
                continue
            timeout = share if deadline is None else min(share, deadline - loop.time())
            if timeout <= 0:
                break
            try:
                async with asyncio.timeout(timeout):
                    connection = await self._connect(node)
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                failures[node] = _connect_failure(exc, node, timeout)
                log.debug("connect to %s: %s", mask_url(node), failures[node].cause)
                continue
            self._node_index = index
            return connection
        return None

    async def _connect(self, node: str) -> Connection:
        tls: dict[str, Any] = {}
        if self._tls is not None:
            context, server_hostname = self._tls
            tls = {"context": context}
            if server_hostname is not None:
                tls["server_hostname"] = server_hostname
        return await aiormq.connect(
            node, client_properties={"connection_name": self.connection_name}, **tls
        )

    def _install(self, connection: Connection) -> None:
        self._connection = connection
        self._generation += 1
        self._publisher = self._declarer = None
        self._exchanges.clear()
        self._state_queues.clear()
        self._loop_state().connected.set()

    def _forget(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
            self._loop_state().connected.clear()

    def _is_connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _supervise(self) -> None:
        failed_rounds = 0
        while True:
            connection = self._connection
            if connection is not None:
                closing = connection.closing
                try:
                    await asyncio.wait((closing,))
                finally:
                    closing.cancel()
                self._forget(connection)
                reason = None if closing.cancelled() else closing.exception()
                log.warning(
                    "connection to %s lost (%r); reconnecting",
                    mask_url(self.nodes[self._node_index]),
                    reason,
                )
                failed_rounds = 0
            await asyncio.sleep(self.backoff.delay(failed_rounds, random.random()))
            failures: dict[str, _ConnectFailure] = {}
            # From the node after the one lost: that one is the likeliest to be down.
            start = (self._node_index + 1) % len(self.nodes)
            connection = await self._round(start, failures, deadline=None)
            if connection is None:
                failed_rounds += 1
                log.warning(
                    "cannot reconnect yet (next round in about %.1f s): %s",
                    self.backoff.ceiling(failed_rounds),
                    "; ".join(f"{mask_url(n)}: {f.cause}" for n, f in failures.items()),
                )
                continue
            self._install(connection)
            log.info("reconnected to %s", mask_url(self.nodes[self._node_index]))

    async def _wait_connection(self) -> Connection:
        session = self._loop_state()
        if self._state == "new":
            await self.connect()
        while True:
            if self._state == "closed":
                raise BrokerConnectionError("the transport is closed")
            connection = self._connection
            if connection is not None:
                if not connection.is_closed:
                    return connection
                self._forget(connection)
            await session.connected.wait()

    # -- declarations ------------------------------------------------------------------

    async def _declare(self, action: str, operation: Callable[[Channel], Awaitable[T]]) -> T:
        """Run ``operation`` on the declaring channel, within ``publish_timeout``.

        A refusal closes the channel (RabbitMQ closes it with the error): the next
        operation gets a new one.
        """
        session = self._loop_state()
        async with self._deadline(action), session.declare_lock:
            while True:
                connection = await self._wait_connection()
                channel = None
                try:
                    channel = self._declarer
                    if channel is None or channel.is_closed:
                        channel = await _open_channel(connection, action, publisher_confirms=False)
                        self._declarer = channel
                    return await operation(channel)
                except Exception as exc:
                    if connection.is_closed and self._state == "open":
                        continue  # declarations are idempotent: again, reconnected
                    await self._drop_declarer(channel)
                    _reraise(exc, action)

    async def _drop_declarer(self, channel: Channel | None) -> None:
        # aiormq fails the refused call as the broker's Channel.Close arrives, and counts
        # the channel closed only once it has answered: never hand it out meanwhile.
        if channel is not None and self._declarer is channel:
            self._declarer = None
            await _close_quietly(channel)

    @asynccontextmanager
    async def _deadline(self, action: str) -> AsyncIterator[None]:
        deadline = asyncio.timeout(self.publish_timeout)
        try:
            async with deadline:
                yield
        except TimeoutError:
            if not deadline.expired():
                raise
            raise BrokerConnectionError(
                f"{action}: no answer from the broker within {self.publish_timeout:g} s"
            ) from None

    async def declare_exchange(self, spec: ExchangeSpec) -> None:
        await self._declare(
            f"declare exchange {spec.name!r}",
            lambda channel: channel.exchange_declare(
                spec.name,
                exchange_type=spec.type,
                durable=spec.durable,
                arguments=spec.arguments or None,
            ),
        )
        self._exchanges.add(spec.name)

    async def declare_queue(self, spec: QueueSpec) -> None:
        await self._declare_queue(spec)
        _remember(self._specs, spec.name, spec)

    async def _declare_queue(self, spec: QueueSpec) -> None:
        await self._declare(
            f"declare queue {spec.name!r}",
            lambda channel: channel.queue_declare(
                spec.name,
                durable=spec.durable,
                exclusive=spec.exclusive,
                arguments=spec.arguments or None,
            ),
        )

    async def bind(self, binding: BindingSpec) -> None:
        await self._declare(
            f"bind {binding.queue!r} to {binding.exchange!r}",
            lambda channel: channel.queue_bind(
                binding.queue,
                binding.exchange,
                routing_key=binding.routing_key,
                arguments=binding.arguments or None,
            ),
        )
        bindings = self._bindings.get(binding.queue, [])
        if binding not in bindings:
            _remember(self._bindings, binding.queue, [*bindings, binding])
        for consumer in self._consumers:
            if consumer.queue == binding.queue and binding not in consumer.bindings:
                consumer.bindings.append(binding)

    async def delete_queue(self, name: str) -> None:
        await self._declare(f"delete queue {name!r}", lambda channel: channel.queue_delete(name))
        self._specs.pop(name, None)
        self._bindings.pop(name, None)

    async def delete_exchange(self, name: str) -> None:
        await self._declare(
            f"delete exchange {name!r}", lambda channel: channel.exchange_delete(name)
        )
        self._exchanges.discard(name)

    async def purge_queue(self, name: str) -> int:
        purged = await self._declare(
            f"purge queue {name!r}", lambda channel: channel.queue_purge(name)
        )
        return purged.message_count or 0

    # -- inspection --------------------------------------------------------------------

    async def inspect_queue(self, name: str) -> QueueState | None:
        declared = await self._passive(
            f"inspect queue {name!r}", lambda channel: channel.queue_declare(name, passive=True)
        )
        if declared is None:
            return None
        return QueueState(
            name, messages=declared.message_count or 0, consumers=declared.consumer_count or 0
        )

    async def inspect_exchange(self, name: str) -> bool:
        if name == "":
            return True  # the default exchange, which RabbitMQ refuses to declare
        found = await self._passive(
            f"inspect exchange {name!r}",
            lambda channel: channel.exchange_declare(name, passive=True),
        )
        if found is None:
            self._exchanges.discard(name)
        return found is not None

    async def _passive(self, action: str, operation: Callable[[Channel], Awaitable[T]]) -> T | None:
        """Run a passive declaration on a channel of its own, which a NOT_FOUND closes.

        :return: its answer, or None when the entity does not exist.
        """
        async with self._deadline(action):
            while True:
                connection = await self._wait_connection()
                try:
                    return await _passive_on(connection, action, operation)
                except BrokerConnectionError:
                    if connection.is_closed and self._state == "open":
                        continue  # it changes nothing: again, reconnected
                    raise

    # -- publishing --------------------------------------------------------------------

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        # Straight to aiormq: a wrapper per message costs more than the rest of a publish.
        deadlines = self._loop_state().deadlines
        task = asyncio.current_task()
        assert task is not None
        tick = deadlines.enter(task, self.publish_timeout)
        try:
            await self._publish(envelope, exchange, routing_key, mandatory)
        except asyncio.CancelledError:
            if task not in deadlines.expired:
                raise
            deadlines.expired.discard(task)
            if task.uncancel() > 0:
                raise  # cancelled from outside as well
            raise BrokerConnectionError(
                f"publish to {exchange!r}/{routing_key!r}: the broker did not confirm within "
                f"{self.publish_timeout:g} s"
            ) from None
        finally:
            deadlines.leave(task, tick)

    async def _publish(
        self, envelope: Envelope, exchange: str, routing_key: str, mandatory: bool
    ) -> None:
        retries = 0
        while True:
            try:
                channel = self._publisher
                if channel is None or _closing(channel):
                    channel = await self._publish_channel(exchange, routing_key)
                if exchange:
                    await self._check_exchange(exchange)
            except BrokerConnectionError:
                if self._state == "open":
                    continue  # wait for the next connection, within the deadline
                raise
            except PublishError as exc:
                raise PublishError(f"{_publishing(exchange, routing_key)}: {exc}") from exc
            try:
                await self._outbox_of(channel).publish(
                    Publish(envelope, exchange, routing_key, mandatory)
                )
                return
            except aiormq.exceptions.DeliveryError as exc:
                raise _publish_refused(exc, exchange, routing_key) from exc
            except _CHANNEL_FAILURES as exc:
                if channel.connection.is_closed and self._state == "open":
                    continue
                retries += 1
                if not self._publish_again(exc, exchange, retries):
                    _reraise(exc, _publishing(exchange, routing_key))

    async def publish_many(self, publishes: Sequence[Publish]) -> list[BrokerError | None]:
        outcomes: list[BrokerError | None] = [None] * len(publishes)
        pending = dict(enumerate(publishes))  # not settled yet
        retries = dict.fromkeys(pending, 0)
        try:
            async with asyncio.timeout(self.publish_timeout):
                while pending:
                    await self._publish_round(pending, outcomes, retries)
        except TimeoutError:
            for i, p in pending.items():
                outcomes[i] = BrokerConnectionError(
                    f"{_publishing(p.exchange, p.routing_key)}: the broker did not confirm "
                    f"within {self.publish_timeout:g} s"
                )
        return outcomes

    async def _publish_round(
        self,
        pending: dict[int, Publish],
        outcomes: list[BrokerError | None],
        retries: dict[int, int],
    ) -> None:
        """Publish what is pending once, and settle what was confirmed or failed for good."""
        channel = await self._round_channel(pending, outcomes)
        if channel is None:
            return
        outbox = self._outbox_of(channel)
        written = {i: outbox.publish(p) for i, p in await self._routable(pending, outcomes)}
        try:
            if written:
                await asyncio.wait(written.values())
        finally:
            for i, future in written.items():
                if not future.done():
                    future.cancel()  # out of time: stays pending, reported as such
                    continue
                if future.cancelled():
                    continue  # not written: stays pending
                exc = future.exception()
                if exc is None:
                    del pending[i]
                elif isinstance(exc, aiormq.exceptions.DeliveryError):
                    p = pending.pop(i)
                    outcomes[i] = _publish_refused(exc, p.exchange, p.routing_key)
                elif not (channel.connection.is_closed and self._state == "open"):
                    retries[i] += 1
                    if not self._publish_again(exc, pending[i].exchange, retries[i]):
                        p = pending.pop(i)
                        outcomes[i] = _broker_error(exc, _publishing(p.exchange, p.routing_key))

    async def _round_channel(
        self, pending: dict[int, Publish], outcomes: list[BrokerError | None]
    ) -> Channel | None:
        channel = self._publisher
        if channel is not None and not _closing(channel):
            return channel
        first = next(iter(pending.values()))
        try:
            return await self._publish_channel(first.exchange, first.routing_key)
        except BrokerError as exc:
            if isinstance(exc, BrokerConnectionError) and self._state == "open":
                return None  # the next connection, within the deadline
            for i in pending:
                outcomes[i] = exc
            pending.clear()
            return None

    async def _routable(
        self, pending: dict[int, Publish], outcomes: list[BrokerError | None]
    ) -> list[tuple[int, Publish]]:
        """What is pending, less what goes to an exchange that does not exist (settled)."""
        for name in sorted({p.exchange for p in pending.values() if p.exchange}):
            try:
                await self._check_exchange(name)
            except BrokerError as exc:
                if isinstance(exc, BrokerConnectionError) and self._state == "open":
                    continue  # checked again in the next round, on the next connection
                for i in [i for i, p in pending.items() if p.exchange == name]:
                    p = pending.pop(i)
                    outcomes[i] = PublishError(f"{_publishing(name, p.routing_key)}: {exc}")
        # An exchange whose check failed with the connection is checked next round.
        return [
            (i, p) for i, p in pending.items() if not p.exchange or p.exchange in self._exchanges
        ]

    def _outbox_of(self, channel: Channel) -> _Outbox:
        outbox = self._outbox
        if outbox is None or outbox.channel is not channel:
            outbox = self._outbox = _Outbox(cast(aiormq.Channel, channel))
        return outbox

    def _publish_again(self, exc: BaseException, exchange: str, retries: int) -> bool:
        """Whether a publish whose channel closed under it is tried again."""
        if exchange and f"exchange '{exchange}'" in str(exc):
            # This publish closed the channel: is its exchange gone?
            self._exchanges.discard(exchange)
            return retries < _PUBLISH_ATTEMPTS and isinstance(
                exc, aiormq.exceptions.ChannelNotFoundEntity
            )
        # Another publish closed the shared channel under this one.
        return retries < _PUBLISH_ATTEMPTS

    async def _publish_channel(self, exchange: str, routing_key: str) -> Channel:
        action = _publishing(exchange, routing_key)
        async with self._loop_state().publisher_lock:
            channel = self._publisher
            if channel is None or _closing(channel):
                connection = await self._wait_connection()
                channel = await _open_channel(
                    connection, action, publisher_confirms=True, on_return_raises=True
                )
                self._publisher = channel
            return channel

    async def _check_exchange(self, name: str) -> None:
        """Raise :class:`PublishError` if exchange ``name`` does not exist (cached)."""
        if name in self._exchanges:
            return
        check = self._exchange_checks.get(name)
        if check is None:
            check = asyncio.get_running_loop().create_task(self._passive_exchange(name))
            self._exchange_checks[name] = check

            def done(task: asyncio.Task[None]) -> None:
                if self._exchange_checks.get(name) is task:
                    del self._exchange_checks[name]
                if not task.cancelled():
                    task.exception()  # retrieved here, whoever stopped waiting

            check.add_done_callback(done)
        await asyncio.shield(check)

    async def _passive_exchange(self, name: str) -> None:
        connection = await self._wait_connection()
        found = await _passive_on(
            connection,
            f"check exchange {name!r}",
            lambda channel: channel.exchange_declare(name, passive=True),
        )
        if found is None:
            raise PublishError(f"exchange {name!r} does not exist")
        if self._connection is connection:
            self._exchanges.add(name)

    # -- leases and batches ------------------------------------------------------------

    async def acquire_lease(self, name: str) -> _Lease | None:
        return await self._lock(lease_queue_name(name), name, watch=True)

    async def _lock(self, queue: str, name: str, *, watch: bool = False) -> _Lease | None:
        self._loop_state()
        if queue in self._holders:
            return None
        self._holders[queue] = None
        try:
            return await self._take_lock(queue, name, watch=watch)
        finally:
            if self._holders.get(queue, False) is None:
                del self._holders[queue]

    async def _take_lock(self, queue: str, name: str, *, watch: bool) -> _Lease | None:
        action = f"take lease {name!r}"
        deadline = asyncio.timeout(self.publish_timeout)
        try:
            async with deadline:
                connection = await self._wait_connection()
        except TimeoutError:
            raise BrokerConnectionError(f"{action}: no connection to the broker") from None
        channel = await _open_channel(connection, action, publisher_confirms=False)
        try:
            with _map_errors(action):
                try:
                    await channel.queue_declare(queue, exclusive=True)
                except aiormq.exceptions.ChannelLockedResource:
                    return None  # another connection holds it
                lease = _Lease(self, name, queue, channel)
        except BaseException:
            await _close_quietly(channel)
            raise
        if watch:
            try:
                with _map_errors(action):
                    await lease.watch()
            except BaseException:
                await lease.release()
                raise
        return lease

    async def take_all(self, queue: str, *, min_count: int) -> _Batch | None:
        lease = await self._lock(take_lock_name(queue), queue)
        if lease is None:
            return None
        channel: Channel | None = None
        try:
            action = f"take from {queue!r}"
            channel = await _open_channel(lease.connection, action, publisher_confirms=False)
            with _map_errors(action):
                taken: list[aiormq.abc.DeliveredMessage] = []
                try:
                    declared = await channel.queue_declare(queue, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    # A queue that is gone holds nothing to take.
                    return _Batch(self, lease, channel, taken)
                if (declared.message_count or 0) >= min_count:
                    taken = await _get_all(channel, queue)
                return _Batch(self, lease, channel, taken)
        except BaseException:
            await _close_quietly(channel)
            await lease.release()
            raise

    # -- state stores ------------------------------------------------------------------
    #
    # Design: one durable queue per store; each put is a persistent, confirmed message
    # whose headers carry the key, a version (the writer's time.time_ns(), strictly
    # increasing per transport, ties broken by a writer id) and, for a delete, a
    # tombstone flag. A read takes every message under the store's lease (basic.get on
    # a private channel, as take_all does), keeps the newest version per key and gives
    # the rest back by closing the channel. When it took garbage (superseded versions,
    # old tombstones) it acks exactly that garbage in one transaction first: nothing is
    # published again, so a put that raced with the read is never touched, and versions,
    # not queue order, decide what is newest. Writers need no lock.

    async def state_put(self, store: str, key: str, value: bytes) -> None:
        await self._state_publish(store, key, value, tombstone=False)

    async def state_delete(self, store: str, key: str) -> None:
        await self._state_publish(store, key, b"", tombstone=True)

    async def state_read(self, store: str) -> dict[str, bytes]:
        lease = await self._state_lock(store)
        action = f"read state store {store!r}"
        channel: Channel | None = None
        try:
            channel = await _open_channel(lease.connection, action, publisher_confirms=False)
            with _map_errors(action):
                try:
                    await channel.queue_declare(state_queue_name(store), passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    return {}
                taken = await _get_all(channel, state_queue_name(store))
                values, garbage = _compact_state(
                    [_state_record(m) for m in taken], now_ns=time.time_ns()
                )
                if garbage:
                    await channel.tx_select()
                    for i in garbage:
                        tag = taken[i].delivery_tag
                        assert tag is not None
                        await channel.basic_ack(tag)
                    await channel.tx_commit()
                return values
        finally:
            # Closing the channel gives back what was not acked: the live values.
            await _close_quietly(channel)
            await lease.release()

    async def _state_lock(self, store: str) -> _Lease:
        wait = min(_STATE_LOCK_WAIT, self.publish_timeout)
        give_up = time.monotonic() + wait
        delay = 0.01
        name = f"state.{store}"
        while (lease := await self._lock(lease_queue_name(name), name)) is None:
            if time.monotonic() + delay > give_up:
                raise BrokerError(
                    f"read state store {store!r}: another reader kept it for more than {wait:g} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        return lease

    async def _state_publish(self, store: str, key: str, value: bytes, *, tombstone: bool) -> None:
        queue = state_queue_name(store)
        version = max(time.time_ns(), self._last_version + 1)
        self._last_version = version
        headers: dict[str, Any] = {_KEY: key, _VERSION: version, _WRITER: self._writer}
        if tombstone:
            headers[_TOMBSTONE] = True
        envelope = Envelope(
            body=value,
            headers=headers,
            content_type="application/octet-stream",
            content_encoding="binary",
        )
        for last_try in (False, True):
            if queue not in self._state_queues:
                await self._declare_queue(QueueSpec(queue))
                self._state_queues.add(queue)
            try:
                await self.publish(envelope, routing_key=queue, mandatory=True)
                return
            except UnroutableError:
                if last_try:
                    raise
                # Unroutable: the store's queue was deleted behind the cache.
                self._state_queues.discard(queue)

    # -- consuming ---------------------------------------------------------------------

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int, no_ack: bool = False
    ) -> _Consumer:
        self._loop_state()
        consumer = _Consumer(
            self,
            queue,
            self._specs.get(queue),
            list(self._bindings.get(queue, [])),
            handler,
            prefetch,
            no_ack,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.close()
            raise
        self._consumers.add(consumer)
        return consumer
