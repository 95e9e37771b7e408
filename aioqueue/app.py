"""``App``: the composition root.

An app wires the pieces below it: its configuration (``config``), the task registry
(``registry``), the broker layer (``broker``: transport, codec, declarations, the one
publish path) and the result backend (``results/``); it registers tasks, sends them,
and makes the runtimes that depend on those pieces and never on the app
(``app.worker()``). It is an async context manager: ``async with App(...) as app``
connects, and leaving the block closes everything the app opened; an app can be opened
again afterwards, from any event loop. Nothing happens at construction (no connection,
no event loop, no signal handlers), so an app can be defined at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import fields, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, Self, TypeVar, Unpack, overload

from .beat import Beat
from .broker import Broker
from .builtins import builtin_tasks
from .canvas import Canvas, Outgoing, Plan, Signature, freeze, plan, result_of
from .config import (
    AppConfig,
    TlsOption,
    amqp_url,
    broker_from_env,
    broker_scheme,
    check_connect_budget,
    mask_url,
    normalize_broker_url,
    result_backend_from_env,
    result_backend_scheme,
)
from .control import Control
from .options import Options, build_message
from .ratelimit import parse_rate
from .registry import Registry
from .result import AsyncResult, attach_control
from .results.base import ResultBackend
from .results.disabled import DisabledBackend
from .results.rpc import RpcBackend
from .retries import RetryPolicy
from .routing import Routes, TaskRoutes
from .sentevents import SentEvents
from .serialization import DEFAULT_MAX_MESSAGE_SIZE, Codec
from .task import Task, TaskSettings
from .topology import Destination
from .transport.amqp import AmqpTransport
from .transport.base import Transport
from .transport.memory import MemoryTransport
from .worker import Worker

__all__ = ("App",)

log = logging.getLogger("aioqueue.app")

# Seconds. RabbitMQ drops a silent connection after a few heartbeats: with 1 s, a
# leader whose network went away loses its lease in about 3 s (a standby then leads
# within its next poll). Only the lease connection beats this often.
_LEASE_HEARTBEAT = 1

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """An aioqueue application.

    :param name: the app's name; names tasks defined in ``__main__``.
    :param broker: ``amqp://user:pass@host:port/vhost``, ``amqps://...``, or
        ``memory://`` (in-process), or a :class:`Transport` instance that the caller
        owns (shared by several apps in one process, e.g. in tests). Left out (``None``):
        the ``AIOQUEUE_BROKER_URL`` environment variable if it is set, else
        ``memory://``; a broker given here is never overridden by the environment.
        Several RabbitMQ nodes: ``amqp://user:pass@h1:5672,h2:5673/vhost``, URLs
        separated by ``;``, or a list of URLs; they are tried in order, on the first
        connection and whenever the connection is lost.
    :param result_backend: ``rpc://`` (results travel to the caller's reply queue), or
        ``None`` to disable results.
    :param default_queue: where tasks go without a route.
    :param queues: the app's :class:`~aioqueue.Queue` and :class:`~aioqueue.Broadcast`
        definitions (bindings to exchanges, priorities, quorum, limits), used wherever
        this app declares one of that name: when sending to it and when a worker
        consumes it. A worker consumes them all by default.
    :param task_routes: Celery's ``task_routes``: which tasks go where, below the
        task's and the call's own options (see :data:`aioqueue.routing.TaskRoutes`).
    :param accept_pickle: let workers accept pickle bodies (unsafe; warns).
    :param max_message_size: the largest message body, in bytes, a worker decodes
        (default 10 MiB); a larger one is dead-lettered unread, its caller told.
    :param exception_modules: modules whose exception types a failed task raises again
        on the caller as themselves; builtins, asyncio and aioqueue's own are always
        allowed, as are the modules that define this app's tasks.
    :param publish_timeout: seconds a publish may take, the broker's confirm included
        (also while the connection is being restored), before it fails.
    :param chord_expires: seconds a chord's progress is kept in RabbitMQ after its last
        activity (also once it completed, for members redelivered late).
    :param result_expires: seconds a result that arrived is kept for a caller that has
        not asked for it yet; older ones are dropped (their status reads PENDING).
    :param heartbeat: AMQP heartbeat in seconds (unless the URL gives ``heartbeat=``): a
        peer whose network went away is noticed after about two of them, by RabbitMQ
        (which then frees the beat lease it held) and by this process.
    :param revoke_expires: seconds a revocation is kept (in RabbitMQ, for workers that
        start later, and in each worker's memory); after that a revoked task that has
        still not reached a worker would run. Celery's window is 3 h too.
    :param track_started: every task reports ``STARTED`` before it runs, unless its
        ``@app.task(track_started=...)`` says otherwise (Celery's ``task_track_started``).
    :param connect_timeout: seconds connecting (``async with app``, a worker's start)
        may take in all, every node and retry included, before it fails with
        :class:`~aioqueue.BrokerConnectionError`; also the longest one reconnection
        attempt to a node may take.
    :param connect_retries: how many more rounds over the broker's nodes connecting
        makes after the first failed, within ``connect_timeout``, paused by a jittered
        exponential backoff. A node that refused the credentials or the vhost is not
        tried again. Reconnecting after a lost connection never gives up.
    :param ssl: TLS for an ``amqps://`` broker: an ``ssl.SSLContext``, or
        :class:`aioqueue.config.TLS` (``ca``, ``cert``, ``key``, ``server_hostname``,
        ``verify``) or a mapping of the same; a failed handshake is a
        :class:`~aioqueue.BrokerConnectionError` saying why.
    :param result_persistent: results waiting for this client survive a broker restart
        (its reply queue is a quorum queue, results are acknowledged once received);
        see :mod:`aioqueue.results.rpc`.
    :param send_sent_event: publish a Celery-format ``task-sent`` event on ``celeryev``
        for each task message this app sends (Celery's ``task_send_sent_event``), for
        Flower and ``aioqueue events``; off, it costs nothing.
    :param intermediate_results: the steps of a chain before its last send their
        results to this client too, so ``result.parent.get()`` works as in Celery. Off
        (the default), only the last step's result is sent: a chain of ``n`` steps
        costs ``n - 1`` publishes fewer, a failure anywhere still reaches the last
        step's promise, and an earlier step's ``get()`` raises
        :class:`~aioqueue.ResultNotSentError`. ``chain.apply_async(intermediate_results=
        ...)`` decides for one chain.
    """

    def __init__(
        self,
        name: str,
        *,
        broker: str | Sequence[str] | Transport | None = None,
        result_backend: str | None = "rpc://",
        default_queue: str = "celery",
        queues: Iterable[Destination] = (),
        task_routes: TaskRoutes = None,
        accept_pickle: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        exception_modules: Iterable[str] = (),
        publish_timeout: float = 30.0,
        chord_expires: float = 86_400.0,
        result_expires: float = 3_600.0,
        heartbeat: int = 10,
        revoke_expires: float = 10_800.0,
        track_started: bool = False,
        connect_timeout: float = 30.0,
        connect_retries: int = 3,
        ssl: TlsOption | None = None,
        result_persistent: bool = False,
        send_sent_event: bool = False,
        intermediate_results: bool = False,
    ) -> None:
        if broker is None:
            broker = broker_from_env(os.environ)
        elif not isinstance(broker, str) and isinstance(broker, Sequence):
            broker = normalize_broker_url(broker)
        self.config = AppConfig(
            name=name,
            broker_url=broker if isinstance(broker, str) else None,
            result_backend=result_backend,
            default_queue=default_queue,
            publish_timeout=publish_timeout,
            chord_expires=chord_expires,
            result_expires=result_expires,
            connect_timeout=connect_timeout,
            connect_retries=connect_retries,
        )
        self.name = name
        self.track_started = track_started
        self.intermediate_results = intermediate_results
        self._announced: int | None = None  # the transport generation last logged
        self.registry = Registry(exception_modules)
        if isinstance(broker, str):
            transport = _make_transport(
                broker, name, publish_timeout, heartbeat, self.config, ssl=ssl
            )
        else:
            transport = broker
        self.broker = Broker(
            transport,
            Codec(accept_pickle=accept_pickle, max_message_size=max_message_size),
            owns_transport=isinstance(broker, str),
            default_queue=default_queue,
            queues=queues,
            routes=Routes(task_routes),
            chord_expires=chord_expires,
        )
        self.results: ResultBackend
        if result_backend_scheme(result_backend) == "rpc":
            self.results = RpcBackend(
                transport,
                self.broker.codec,
                exception_modules=self.registry.exception_modules,
                unclaimed_ttl=result_expires,
                persistent=result_persistent,
            )
        else:
            self.results = DisabledBackend(self.registry.exception_modules)
        #: Periodic tasks: entries in code and at runtime, and the scheduler
        #: (``async with app.beat:``; see :class:`aioqueue.beat.Beat`).
        lease_transport = None
        if isinstance(broker, str) and broker_scheme(broker) == "amqp":
            # Leadership on a connection of its own with a short heartbeat: RabbitMQ
            # frees the lease within seconds of a leader's network going away.
            lease_transport = AmqpTransport(
                amqp_url(broker, _LEASE_HEARTBEAT),
                publish_timeout=publish_timeout,
                connection_name=f"{name} beat lease",
                connect_timeout=connect_timeout,
                connect_retries=connect_retries,
                ssl=ssl,
            )
        self._lease_transport = lease_transport
        self.beat = Beat(name, self.broker, self.registry, lease_transport=lease_transport)
        #: Remote control, as Celery's: ``await app.control.revoke(task_id)``.
        self.control = Control(self.broker, revoke_expires=revoke_expires)
        self._sent_events = SentEvents(transport) if send_sent_event else None
        for builtin_name, fn in builtin_tasks(self.registry).items():
            self.task(name=builtin_name)(fn)

    @classmethod
    def from_env(cls, name: str, **overrides: Any) -> Self:
        """An app configured by the environment: ``AIOQUEUE_BROKER_URL`` (else
        ``memory://``) and ``AIOQUEUE_RESULT_BACKEND`` (``rpc://``, or empty or
        ``disabled`` for none; else ``rpc://``). Explicit arguments win over both.

        :param name: the app's name.
        :param overrides: any other :class:`App` argument (``broker=`` included).
        :raises ConfigurationError: a variable holds an unsupported URL.
        """
        if "broker" not in overrides:
            overrides["broker"] = broker_from_env(os.environ)
        if "result_backend" not in overrides:
            overrides["result_backend"] = result_backend_from_env(os.environ, "rpc://")
        return cls(name, **overrides)

    @property
    def tasks(self) -> Registry:
        """The registered tasks by name."""
        return self.registry

    @property
    def transport(self) -> Transport:
        """The connection to the broker (shared with :attr:`broker`)."""
        return self.broker.transport

    @property
    def codec(self) -> Codec:
        """Encodes and decodes message bodies (shared with :attr:`broker`)."""
        return self.broker.codec

    @property
    def broker_url(self) -> str:
        """The broker URL this app was made with (unmasked: see ``mask_url``), or the
        type of the transport it was given."""
        url = self.config.broker_url
        return url if url is not None else f"{type(self.transport).__name__}()"

    @property
    def broker_node(self) -> str | None:
        """The URL (unmasked) of the broker node the app is connected to now, of its
        several; ``None`` while it is not connected, or for a transport it was given."""
        transport = self.transport
        return transport.node if isinstance(transport, AmqpTransport) else None

    def set_connect_budget(
        self, *, timeout: float | None = None, retries: int | None = None
    ) -> None:
        """Change ``connect_timeout`` and ``connect_retries`` (see :class:`App`) after
        construction, e.g. from the command line; effective from the next connect.

        :raises ConfigurationError: a value is out of range.
        """
        timeout = self.config.connect_timeout if timeout is None else timeout
        retries = self.config.connect_retries if retries is None else retries
        check_connect_budget(timeout, retries)
        self.config = replace(self.config, connect_timeout=timeout, connect_retries=retries)
        for transport in (self.transport, self._lease_transport):
            if isinstance(transport, AmqpTransport):
                transport.connect_timeout = timeout
                transport.connect_retries = retries

    @property
    def result_backend_url(self) -> str | None:
        """The result backend URL (``None``: results are disabled)."""
        return self.config.result_backend

    @property
    def default_queue(self) -> str:
        """Where tasks go without a ``queue`` option."""
        return self.config.default_queue

    def __repr__(self) -> str:
        return f"<App {self.name} broker={mask_url(self.broker_url)}>"

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, /, *, bind: Literal[True], **settings: Unpack[TaskSettings]
    ) -> _BoundTaskDecorator: ...

    @overload
    def task(
        self, /, *, bind: Literal[False] = False, **settings: Unpack[TaskSettings]
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        bind: bool = False,
        **settings: Unpack[TaskSettings],
    ) -> Task[Any, Any] | _TaskDecorator | _BoundTaskDecorator:
        """Register ``fn`` as a task: ``@app.task`` or ``@app.task(name=..., queue=...)``.

        :param bind: the function takes the task first (``self.retry``, ``self.request``).
        :param settings: see :class:`~aioqueue.task.TaskSettings`.
        :raises ConfigurationError: another function is registered under that name, or
            a setting is invalid.
        """
        options = Options(
            queue=settings.get("queue"),
            exchange=settings.get("exchange"),
            routing_key=settings.get("routing_key"),
            priority=settings.get("priority"),
            ignore_result=settings.get("ignore_result"),
            time_limit=settings.get("time_limit"),
            soft_time_limit=settings.get("soft_time_limit"),
        )
        policy = RetryPolicy(
            **{k: v for k, v in settings.items() if k in _RETRY_SETTINGS}  # type: ignore[arg-type]
        )
        rate = settings.get("rate_limit")

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task: Task[Any, Any] = Task(
                self,
                func,
                name=settings.get("name") or self._default_name(func),
                options=options,
                bind=bind,
                retry_policy=policy,
                acks_late=settings.get("acks_late", True),
                rate_limit=None if rate is None else parse_rate(rate),
                track_started=settings.get("track_started", self.track_started),
            )
            self.registry.add(task)
            return task

        if fn is not None:
            return register(fn)
        return _BoundTaskDecorator(register) if bind else _TaskDecorator(register)

    def _default_name(self, fn: Callable[..., Any]) -> str:
        module = fn.__module__
        if module == "__main__":
            module = self.name
        return f"{module}.{fn.__qualname__}"

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect to the broker (idempotent; concurrent callers share one connection).

        :raises BrokerConnectionError: the broker cannot be reached.
        """
        await self.broker.connect()
        if self._announced != self.transport.generation:
            # Once per connection, not per call: which broker this process talks to.
            self._announced = self.transport.generation
            node = self.broker_node
            log.info("app %s: connected to broker %s", self.name, mask_url(node or self.broker_url))

    async def aclose(self) -> None:
        """Close the result backend and, if the app made it, the transport.

        The app can be opened again afterwards (in this event loop or another).
        """
        try:
            await self.results.aclose()
        finally:
            await self.broker.aclose()

    def worker(
        self,
        queues: Iterable[str | Destination] | None = None,
        *,
        exclude: Iterable[str] = (),
        concurrency: int = 100,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
        hostname: str | None = None,
        max_redeliveries: int = 5,
        block_warning: float = 0.1,
        finished_records: int = 10_000,
        health_file: str | os.PathLike[str] | None = None,
        health_interval: float = 5.0,
        events: bool = False,
    ) -> Worker:
        """A worker for this app, to use as ``async with app.worker(...):``.

        See :class:`aioqueue.Worker` for the parameters.
        """
        return Worker(
            self.broker,
            self.registry,
            queues=queues,
            exclude=exclude,
            concurrency=concurrency,
            prefetch=prefetch,
            shutdown_timeout=shutdown_timeout,
            hostname=hostname,
            revoke_expires=self.control.revoke_expires,
            max_redeliveries=max_redeliveries,
            block_warning=block_warning,
            finished_records=finished_records,
            health_file=health_file,
            health_interval=health_interval,
            events=events,
        )

    # -- sending -------------------------------------------------------------------------

    def check_arguments(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Check a call of ``task`` against its parameters when it is registered here
        (as a signature's ``delay`` does); a task known by name only goes unchecked.

        :raises ArgumentsError: (a ``TypeError``) the arguments do not fit the task.
        """
        registered = self.registry.get(task)
        if registered is not None:
            registered.bind_arguments(args, kwargs)

    async def send_canvas(
        self, canvas: Canvas, *, intermediate_results: bool | None = None
    ) -> AsyncResult[Any]:
        """Send a signature, chain, group or chord and return its promise.

        A group's (or chord header's) messages are published together (written to the
        broker in a few writes), their confirms awaited together.

        :param intermediate_results: whether a chain's earlier steps send their results
            (``None``: the app's ``intermediate_results``).

        :raises PublishError: the broker did not confirm a message.
        :raises PartialPublishError: only some of a group's messages were sent.
        :raises EncodeError: an argument is not serialisable (nothing was sent).
        """
        await self.broker.connect()
        await self.results.start()
        if intermediate_results is None:
            intermediate_results = self.intermediate_results
        todo, result = self._prepared(canvas, self.results.reply_to, intermediate_results)
        await self._publish(todo)
        return result

    async def send_many(self, signatures: Iterable[Signature[Any]]) -> list[AsyncResult[Any]]:
        """Send many tasks at once, one message per signature (none of Celery's group
        headers): every message is encoded first, then all are published together
        (written to the broker in a few writes) and their confirms awaited together.
        Returns their promises, in order.

        :raises ArgumentsError: a call does not fit its task (nothing was sent).
        :raises EncodeError: an argument is not serialisable (nothing was sent).
        :raises PartialPublishError: only some messages were sent (it names which).
        :raises PublishError: the only message was not sent.
        """
        sigs = list(signatures)
        for sig in sigs:
            self.check_arguments(sig.task, sig.args, sig.kwargs)
        await self.broker.connect()
        await self.results.start()
        todo = Plan()
        results: list[AsyncResult[Any]] = []
        for sig in sigs:
            part, result = self._prepared(sig, self.results.reply_to, self.intermediate_results)
            todo.extend(part)
            results.append(result)
        await self._publish(todo)
        return results

    def _prepared(
        self, canvas: Canvas, reply_to: str | None, intermediate_results: bool
    ) -> tuple[Plan, AsyncResult[Any]]:
        """The messages that send ``canvas``, and its promise (nothing is sent yet)."""
        if isinstance(canvas, Signature) and not canvas.link and not canvas.link_error:
            # The common case, without the canvas machinery.
            opts = canvas.options
            message = build_message(
                canvas.task,
                canvas.args,
                canvas.kwargs,
                opts,
                # Nobody waits for a result the task is told not to send.
                reply_to=None if opts.ignore_result else reply_to,
            )
            result = AsyncResult[Any](message.id, self.results, control=self.control)
            return Plan([Outgoing(message, opts)]), result
        node = freeze(canvas.to_dict(), reply_to, intermediate_results=intermediate_results)
        todo = plan(node)
        result = result_of(node, self.results)
        attach_control(result, self.control)
        return todo, result

    async def _publish(self, todo: Plan) -> None:
        """Publish ``todo`` (see ``Broker.publish_plan``), then its ``task-sent`` events."""
        await self.broker.publish_plan(todo)
        if self._sent_events is not None:
            await self._sent_events.send(
                [(o.message, self.broker.route(o.options, o.message)) for o in todo.messages]
            )

    async def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        exchange: str | None = None,
        routing_key: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        priority: int | None = None,
        ignore_result: bool | None = None,
        task_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> AsyncResult[Any]:
        """Send a task known only by its name (it need not be registered here).

        The options are described on :class:`~aioqueue.Options`.
        """
        options = Options(
            queue=queue,
            exchange=exchange,
            routing_key=routing_key,
            countdown=countdown,
            eta=eta,
            expires=expires,
            priority=priority,
            ignore_result=ignore_result,
            task_id=task_id,
            headers=headers,
        )
        return await self.send_canvas(Signature(name, tuple(args), dict(kwargs or {}), options))


_RETRY_SETTINGS = frozenset(f.name for f in fields(RetryPolicy))


class _TaskDecorator:
    """What ``@app.task(...)`` with options returns: keeps ``P`` and ``R`` for mypy."""

    def __init__(self, register: Callable[[Callable[..., Any]], Task[Any, Any]]) -> None:
        self._register = register

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        return self._register(fn)


class _BoundTaskDecorator:
    """What ``@app.task(bind=True, ...)`` returns: the task's parameters without the
    first (the task itself)."""

    def __init__(self, register: Callable[[Callable[..., Any]], Task[Any, Any]]) -> None:
        self._register = register

    @overload
    def __call__(
        self, fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[Any, P], R], /) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Task[Any, Any]:
        return self._register(fn)


def _make_transport(
    url: str,
    name: str,
    publish_timeout: float,
    heartbeat: int,
    config: AppConfig,
    *,
    ssl: TlsOption | None = None,
) -> Transport:
    if broker_scheme(url) == "memory":
        return MemoryTransport()
    return AmqpTransport(
        amqp_url(url, heartbeat),
        publish_timeout=publish_timeout,
        connection_name=name,
        connect_timeout=config.connect_timeout,
        connect_retries=config.connect_retries,
        ssl=ssl,
    )
