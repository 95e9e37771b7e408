"""The one publish path: transport + codec + what was declared on this connection.

Everything that sends a task message (the client, the worker continuing a workflow, and
later beat and remote control) goes through a :class:`Broker`:

1. :func:`aioqueue.routing.resolve` decides the :class:`~aioqueue.routing.Route` (pure);
2. the route's topology (exchanges, queue, ``.dlq``, bindings) and delay bucket are
   declared once per connection: the cache is dropped when the transport reconnects
   (``Transport.generation``), so what the broker lost meanwhile is declared again;
3. the message is encoded and published ``mandatory`` with a publisher confirm. A
   message the broker returns as unroutable although its queue was declared (the queue
   was deleted behind the cache) makes the broker layer declare it again and publish
   once more, so a deleted queue costs one retry rather than every later message.

A canvas's messages are encoded first (an unserialisable argument sends nothing), then
handed to the transport together (``Transport.publish_many``: RabbitMQ gets them in a few
writes and confirms them together); when some fail, the caller learns which were sent
(:class:`~aioqueue.exceptions.PartialPublishError`), and no publish is left running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from .canvas import Plan
from .exceptions import (
    BrokerError,
    DeclarationConflictError,
    PartialPublishError,
    PreconditionFailedError,
    PublishError,
)
from .message import TaskMessage, utc_now
from .options import Options
from .routing import Route, Routes, resolve
from .serialization import Codec
from .topology import (
    Broadcast,
    Declarations,
    Destination,
    Exchange,
    Topology,
    chord_queue,
    delay_topology,
    dlq_name,
)
from .transport.base import Envelope, ExchangeSpec, Publish, QueueSpec, Transport

__all__ = ("Broker",)

log = logging.getLogger("aioqueue.broker")


class Broker:
    """Declares and publishes for an app, a worker, beat and remote control.

    :param transport: the connection to the broker.
    :param codec: encodes message bodies.
    :param owns_transport: :meth:`aclose` closes the transport too.
    :param default_queue: where tasks go without a route.
    :param queues: the queues and broadcasts the app defines, used wherever one of
        that name is declared.
    :param routes: the app's ``task_routes``.
    :param chord_expires: seconds a chord's progress queue outlives its last activity.
    """

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        *,
        owns_transport: bool,
        default_queue: str = "celery",
        queues: Iterable[Destination] = (),
        routes: Routes | None = None,
        chord_expires: float = 86_400.0,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.topology = Topology(queues, default_queue)
        self.routes = routes or Routes()
        self.chord_expires = chord_expires
        self._owns_transport = owns_transport
        # Names declared on this connection; exchanges apart, as a queue and an
        # exchange may share a name.
        self._declared: set[str] = set()
        self._declared_exchanges: set[str] = set()
        self._generation = -1
        # Created inside the running loop: a broker may be opened again in another loop.
        self._connecting: asyncio.Lock | None = None
        self._declaring: asyncio.Lock | None = None
        self._connected = False

    @property
    def default_queue(self) -> str:
        """Where tasks go without a route."""
        return self.topology.default_queue

    @property
    def queues(self) -> Mapping[str, Destination]:
        """The queue and broadcast definitions this broker was given, by name."""
        return self.topology.defined

    def queue(self, name: str) -> Destination:
        """The definition of ``name``: the one given, else the default queue shape."""
        return self.topology.destination(name)

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
        self._declared_exchanges.clear()

    # -- deciding ------------------------------------------------------------------------

    def route(self, options: Options, message: TaskMessage | None = None) -> Route:
        """Where ``message`` sent with ``options`` goes (no I/O; see ``aioqueue.routing``)."""
        if message is None:
            return resolve(options, self.topology)
        eta = message.eta
        return resolve(
            options,
            self.topology,
            task=message.task,
            args=message.args,
            kwargs=message.kwargs,
            routes=self.routes,
            eta=eta,
            now=utc_now() if eta is not None else None,
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
            self._declared_exchanges.clear()
            self._generation = generation
        return self._declared

    async def declare(self, definition: Destination | Exchange, *, strict: bool = False) -> None:
        """Declare a definition's topology once per connection: a queue's exchanges,
        the queue, its ``.dlq`` and its bindings; a broadcast's exchange; an exchange.

        What exists with other settings (declared by someone who knows another
        definition) is used as it is, with a warning, and the rest is declared all the
        same, so nothing is dead-lettered into nowhere; with ``strict`` (a worker
        starting) it is an error instead.

        :raises DeclarationConflictError: ``strict``, and something exists otherwise.
        """
        if isinstance(definition, Exchange):
            if definition.name not in self._fresh_exchanges():
                async with self._declaring_lock():
                    await self._declare_exchange(definition.spec(), strict)
            return
        if definition.name in self._fresh():
            return
        # One declaration at a time: a group's first members must not all declare.
        async with self._declaring_lock():
            declared = self._fresh()
            if definition.name in declared:
                return
            await self._declare_all(definition.declarations(), strict)
            declared.add(definition.name)

    def _fresh_exchanges(self) -> set[str]:
        self._fresh()
        return self._declared_exchanges

    async def _declare_all(self, todo: Declarations, strict: bool) -> None:
        for exchange in todo.exchanges:
            await self._declare_exchange(exchange, strict)
        dead_letters = {dlq_name(spec.name) for spec in todo.queues}
        for spec in todo.queues:
            if spec.name in dead_letters:
                await self._declare_dlq(spec)
            else:
                await self._declare_queue(spec, strict)
        for binding in todo.bindings:
            await self.transport.bind(binding)

    async def declare_worker_queue(self, broadcast: Broadcast, worker_id: str) -> str:
        """Declare one worker's exclusive queue of ``broadcast``; returns its name.

        :raises DeclarationConflictError: the exchange exists as another type.
        """
        todo = broadcast.worker_queue(worker_id)
        async with self._declaring_lock():
            await self._declare_all(todo, strict=True)
        return todo.queues[0].name

    def _declaring_lock(self) -> asyncio.Lock:
        if self._declaring is None:
            self._declaring = asyncio.Lock()
        return self._declaring

    async def _declare_exchange(self, spec: ExchangeSpec, strict: bool) -> None:
        if spec.name in self._fresh_exchanges():
            return
        try:
            await self.transport.declare_exchange(spec)
        except PreconditionFailedError as exc:
            wanted = f"type {spec.type}" + ("" if spec.durable else ", transient")
            if spec.arguments:
                wanted += f", arguments {spec.arguments}"
            self._conflict(DeclarationConflictError("exchange", spec.name, wanted, exc), strict)
        self._declared_exchanges.add(spec.name)

    async def _declare_queue(self, spec: QueueSpec, strict: bool) -> None:
        try:
            await self.transport.declare_queue(spec)
        except PreconditionFailedError as exc:
            wanted = f"arguments {spec.arguments or {}}"
            state = await self.transport.inspect_queue(spec.name)
            held = "" if state is None else f"; it holds {state.messages} message(s)"
            conflict = DeclarationConflictError("queue", spec.name, wanted + held, exc)
            self._conflict(conflict, strict)

    async def _declare_dlq(self, spec: QueueSpec) -> None:
        """Declare a ``.dlq``; one that exists otherwise is used as it is, by a worker
        too: it keeps dead letters all the same (a classic one, declared before its queue
        became a quorum queue, only is not replicated)."""
        try:
            await self.transport.declare_queue(spec)
        except PreconditionFailedError as exc:
            log.warning(
                "%s exists with other settings than aioqueue's (%s); using it as it is. "
                "To have it declared again, empty it (aioqueue dlq replay or purge) and "
                "delete it",
                spec.name,
                exc,
            )

    def _conflict(self, error: DeclarationConflictError, strict: bool) -> None:
        if strict:
            raise error
        log.warning("%s; using it as it is (define it alike in App(queues=[...]))", error)

    async def declare_delay(self, bucket_ms: int, exchange: str = "") -> str:
        """Declare one delay bucket (see ``aioqueue.topology``), once; returns its exchange.

        :param exchange: where the bucket dead-letters its messages.
        """
        bucket, spec, binding = delay_topology(bucket_ms, exchange)
        if spec.name in self._fresh():
            return bucket.name
        async with self._declaring_lock():
            declared = self._fresh()
            if spec.name not in declared:
                await self.transport.declare_exchange(bucket)
                await self.transport.declare_queue(spec)
                await self.transport.bind(binding)
                declared.add(spec.name)
        return bucket.name

    async def declare_chord(self, group_id: str) -> str:
        """Declare the queue holding a chord's progress; returns its name.

        Not cached: the queue expires on its own (``x-expires``) and each declaration
        renews it.
        """
        spec = chord_queue(group_id, self.chord_expires)
        await self.transport.declare_queue(spec)
        return spec.name

    async def declare_route(self, route: Route) -> str:
        """Declare what ``route`` needs; returns the exchange to publish to (its delay
        bucket's while it is not due)."""
        for definition in route.declare:
            await self.declare(definition)
        if route.delay_ms is not None:
            return await self.declare_delay(route.delay_ms, route.exchange)
        return route.exchange

    def _forget(self, route: Route) -> None:
        for definition in route.declare:
            if isinstance(definition, Exchange):
                self._declared_exchanges.discard(definition.name)
            else:
                self._declared.discard(definition.name)
        if route.delay_ms is not None:
            self._declared.discard(delay_topology(route.delay_ms, route.exchange)[1].name)

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, message: TaskMessage, route: Route, *, mandatory: bool = True) -> None:
        """Publish a task message along ``route`` (declared first), confirmed.

        :raises PublishError: the broker did not confirm it, or nothing would receive it.
        :raises BrokerConnectionError: the connection did not come back in time.
        :raises EncodeError: an argument is not serialisable.
        """
        await self.publish_envelope(self.envelope(message), route, mandatory=mandatory)

    async def publish_task(self, message: TaskMessage, options: Options | None = None) -> None:
        """Publish ``message`` where ``options`` and the app's routes send it, delayed
        if it is not due."""
        await self.publish(message, self.route(options or Options(), message))

    async def publish_envelope(
        self, envelope: Envelope, route: Route, *, mandatory: bool = True
    ) -> None:
        """Publish an encoded task message along ``route`` (see :meth:`publish`)."""
        await self.connect()
        exchange = await self.declare_route(route)
        try:
            await self._send(envelope, exchange, route, mandatory)
        except PublishError as exc:
            if not route.declare:
                raise
            # Declared here before, unroutable now: maybe deleted behind the cache.
            log.info("publish to %r failed (%s); declaring it again", route.routing_key, exc)
            self._forget(route)
            exchange = await self.declare_route(route)
            await self._send(envelope, exchange, route, mandatory)

    async def _send(self, envelope: Envelope, exchange: str, route: Route, mandatory: bool) -> None:
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
        """Declare the chords of ``todo``, then publish its messages together.

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
            (o.message.id, self.envelope(o.message), self.route(o.options, o.message))
            for o in todo.messages
        ]
        await self.connect()
        failed: dict[str, BrokerError] = {}
        publishes: list[Publish] = []
        sending: list[tuple[str, Envelope, Route]] = []
        for task_id, envelope, route in ready:
            try:
                exchange = await self.declare_route(route)
            except BrokerError as exc:
                failed[task_id] = exc
                continue
            publishes.append(Publish(envelope, exchange, route.routing_key, mandatory=True))
            sending.append((task_id, envelope, route))
        outcomes = await self.transport.publish_many(publishes)
        again: list[tuple[str, Envelope, Route]] = []
        for item, outcome in zip(sending, outcomes, strict=True):
            if isinstance(outcome, PublishError) and item[2].declare:
                again.append(item)  # declared here before, unroutable now: see publish
            elif outcome is not None:
                failed[item[0]] = outcome
        if again:
            await self._publish_again(again, failed)
        if failed:
            sent = [task_id for task_id, _, _ in ready if task_id not in failed]
            raise PartialPublishError(sent, failed)

    async def _publish_again(
        self, again: list[tuple[str, Envelope, Route]], failed: dict[str, BrokerError]
    ) -> None:
        """Declare again the routes of publishes that could not be routed, and publish
        them once more."""
        for _, _, route in again:
            log.info("publish to %r failed: not routable; declaring it again", route.routing_key)
            self._forget(route)

        async def one(task_id: str, envelope: Envelope, route: Route) -> None:
            try:
                exchange = await self.declare_route(route)
                await self._send(envelope, exchange, route, True)
            except BrokerError as exc:
                failed[task_id] = exc

        async with asyncio.TaskGroup() as group:
            for item in again:
                group.create_task(one(*item))
