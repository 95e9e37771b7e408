"""The one publish path: transport + codec + what was declared on this connection.

Everything that sends a task message (the client, the worker continuing a workflow, and
later beat and remote control) goes through a :class:`Broker`:

1. :func:`aioqueue.routing.resolve` decides the :class:`~aioqueue.routing.Route` (pure);
2. the route's queue topology (exchange, queue, ``.dlq``, binding) and delay bucket are
   declared once per connection: the cache is dropped when the transport reconnects
   (``Transport.generation``), so what the broker lost meanwhile is declared again;
3. the message is encoded and published ``mandatory`` with a publisher confirm. A
   message the broker returns as unroutable although its queue was declared (the queue
   was deleted behind the cache) makes the broker layer declare it again and publish
   once more, so a deleted queue costs one retry rather than every later message.

A canvas's messages are encoded first (an unserialisable argument sends nothing), then
published concurrently under one task group; when some fail, the caller learns which
were sent (:class:`~aioqueue.exceptions.PartialPublishError`), and no publish is left
running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from .canvas import Plan
from .exceptions import BrokerError, PartialPublishError, PreconditionFailedError, PublishError
from .message import TaskMessage, utc_now
from .options import Options
from .routing import Route, resolve
from .serialization import Codec
from .topology import Queue, chord_queue, delay_topology
from .transport.base import Envelope, QueueSpec, Transport

__all__ = ("Broker",)

log = logging.getLogger("aioqueue.broker")


class Broker:
    """Declares and publishes for an app, a worker, beat and remote control.

    :param transport: the connection to the broker.
    :param codec: encodes message bodies.
    :param owns_transport: :meth:`aclose` closes the transport too.
    :param default_queue: where tasks go without a ``queue`` option.
    :param queues: queue definitions used wherever a queue of that name is declared.
    :param chord_expires: seconds a chord's progress queue outlives its last activity.
    """

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        *,
        owns_transport: bool,
        default_queue: str = "celery",
        queues: Iterable[Queue] = (),
        chord_expires: float = 86_400.0,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.default_queue = default_queue
        self.chord_expires = chord_expires
        self._owns_transport = owns_transport
        self._queues = {q.name: q for q in queues}
        self._declared: set[str] = set()
        self._generation = -1
        # Created inside the running loop: a broker may be opened again in another loop.
        self._connecting: asyncio.Lock | None = None
        self._declaring: asyncio.Lock | None = None
        self._connected = False

    @property
    def queues(self) -> Mapping[str, Queue]:
        """The queue definitions this broker was given, by name."""
        return self._queues

    def queue(self, name: str) -> Queue:
        """The definition of queue ``name``: the one given, else the default shape."""
        return self._queues.get(name) or Queue(name)

    async def connect(self) -> None:
        """Connect the transport (idempotent; concurrent callers share one connect).

        :raises BrokerConnectionError: the broker cannot be reached.
        """
        if self._connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if not self._connected:
                await self.transport.connect()
                self._connected = True

    async def aclose(self) -> None:
        """Forget what was declared and, if this broker owns it, close the transport."""
        if self._owns_transport:
            await self.transport.aclose()
        self._connected = False
        self._connecting = self._declaring = None
        self._declared.clear()

    # -- deciding ------------------------------------------------------------------------

    def route(self, options: Options, eta: datetime | None) -> Route:
        """Where a message sent with ``options`` and due at ``eta`` goes (no I/O)."""
        now = utc_now() if eta is not None else None
        return resolve(
            options, default_queue=self.default_queue, queues=self._queues, eta=eta, now=now
        )

    def envelope(self, message: TaskMessage) -> Envelope:
        """The wire form of a task message.

        :raises EncodeError: an argument is not serialisable.
        """
        return Envelope(
            body=self.codec.encode(message.body()),
            headers=message.headers(),
            content_type=self.codec.content_type,
            content_encoding=self.codec.content_encoding,
            correlation_id=message.id,
            reply_to=message.reply_to,
            priority=message.priority,
        )

    # -- declaring -----------------------------------------------------------------------

    def _fresh(self) -> set[str]:
        # A reconnection may have lost what was declared (a broker restart loses
        # nothing durable, but a queue deleted meanwhile is gone): declare again.
        generation = self.transport.generation
        if generation != self._generation:
            self._declared.clear()
            self._generation = generation
        return self._declared

    async def declare(self, queue: Queue) -> None:
        """Declare a queue's exchange, the queue, its ``.dlq`` and the binding, once.

        A queue (or ``.dlq``) that exists with other arguments, declared by someone who
        knows another definition, is used as it is, with a warning; its ``.dlq`` and
        binding are declared all the same, so nothing is dead-lettered into nowhere.
        """
        if queue.name in self._fresh():
            return
        # One declaration at a time: a group's first members must not all declare.
        async with self._declaring_lock():
            declared = self._fresh()
            if queue.name in declared:
                return
            exchange, specs, binding = queue.topology()
            await self.transport.declare_exchange(exchange)
            for spec in specs:
                await self._declare_queue(spec)
            await self.transport.bind(binding)
            declared.add(queue.name)

    def _declaring_lock(self) -> asyncio.Lock:
        if self._declaring is None:
            self._declaring = asyncio.Lock()
        return self._declaring

    async def _declare_queue(self, spec: QueueSpec) -> None:
        try:
            await self.transport.declare_queue(spec)
        except PreconditionFailedError as exc:
            log.warning(
                "queue %r exists with other arguments; using it as it is (give its "
                "definition in App(queues=[...]) to declare it alike): %s",
                spec.name,
                exc,
            )

    async def declare_delay(self, bucket_ms: int) -> str:
        """Declare one delay bucket (see ``aioqueue.topology``), once; returns its exchange."""
        exchange, spec, binding = delay_topology(bucket_ms)
        if spec.name in self._fresh():
            return exchange.name
        async with self._declaring_lock():
            declared = self._fresh()
            if spec.name not in declared:
                await self.transport.declare_exchange(exchange)
                await self.transport.declare_queue(spec)
                await self.transport.bind(binding)
                declared.add(spec.name)
        return exchange.name

    async def declare_chord(self, group_id: str) -> str:
        """Declare the queue holding a chord's progress; returns its name.

        Not cached: the queue expires on its own (``x-expires``) and each declaration
        renews it.
        """
        spec = chord_queue(group_id, self.chord_expires)
        await self.transport.declare_queue(spec)
        return spec.name

    async def declare_route(self, route: Route) -> None:
        """Declare what ``route`` needs: its queue's topology and its delay bucket."""
        if route.queue is not None:
            await self.declare(route.queue)
        if route.delay_ms is not None:
            await self.declare_delay(route.delay_ms)

    def _forget(self, route: Route) -> None:
        if route.queue is not None:
            self._declared.discard(route.queue.name)
        if route.delay_ms is not None:
            self._declared.discard(delay_topology(route.delay_ms)[1].name)

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, message: TaskMessage, route: Route, *, mandatory: bool = True) -> None:
        """Publish a task message along ``route`` (declared first), confirmed.

        :raises PublishError: the broker did not confirm it, or nothing would receive it.
        :raises BrokerConnectionError: the connection did not come back in time.
        :raises EncodeError: an argument is not serialisable.
        """
        await self.publish_envelope(self.envelope(message), route, mandatory=mandatory)

    async def publish_task(self, message: TaskMessage, options: Options | None = None) -> None:
        """Publish ``message`` where ``options`` route it, delayed if it is not due."""
        await self.publish(message, self.route(options or Options(), message.eta))

    async def publish_envelope(
        self, envelope: Envelope, route: Route, *, mandatory: bool = True
    ) -> None:
        """Publish an encoded task message along ``route`` (see :meth:`publish`)."""
        await self.connect()
        await self.declare_route(route)
        try:
            await self._send(envelope, route, mandatory)
        except PublishError as exc:
            if route.queue is None:
                raise
            # Declared here before, unroutable now: the queue was deleted behind the cache.
            log.warning("publish to %r failed (%s); declaring it again", route.routing_key, exc)
            self._forget(route)
            await self.declare_route(route)
            await self._send(envelope, route, mandatory)

    async def _send(self, envelope: Envelope, route: Route, mandatory: bool) -> None:
        exchange = route.exchange
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=route.routing_key, mandatory=mandatory
        )

    async def send(
        self, envelope: Envelope, routing_key: str, *, exchange: str = "", mandatory: bool = False
    ) -> None:
        """Publish a message that is not a task (a result, a chord part), confirmed;
        nothing is declared for it."""
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=routing_key, mandatory=mandatory
        )

    async def publish_plan(self, todo: Plan) -> None:
        """Declare the chords of ``todo``, then publish its messages concurrently.

        :raises PartialPublishError: some of several messages were not sent (every
            publish has ended by then; the error says which were sent).
        :raises PublishError: the only message was not sent.
        :raises EncodeError: an argument is not serialisable; nothing was sent.
        """
        for group_id in todo.chords:
            await self.declare_chord(group_id)
        if len(todo.messages) == 1:  # a chain's next step: no task for one publish
            only = todo.messages[0]
            await self.publish_task(only.message, only.options)
            return
        # Encoded before anything is sent: an unserialisable member sends nothing.
        ready = [
            (o.message.id, self.envelope(o.message), self.route(o.options, o.message.eta))
            for o in todo.messages
        ]
        failed: dict[str, BrokerError] = {}

        async def one(task_id: str, envelope: Envelope, route: Route) -> None:
            try:
                await self.publish_envelope(envelope, route)
            except BrokerError as exc:
                failed[task_id] = exc

        async with asyncio.TaskGroup() as group:
            for item in ready:
                group.create_task(one(*item))
        if failed:
            sent = [task_id for task_id, _, _ in ready if task_id not in failed]
            raise PartialPublishError(sent, failed)
