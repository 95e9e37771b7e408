"""``App``: the task registry and composition root.

An app holds its configuration, one transport, the codec and the result backend, and is
an async context manager: ``async with App(...) as app`` connects, and leaving the block
closes everything the app opened. Nothing happens at construction (no connection, no
event loop, no signal handlers), so an app can be defined at import time in any module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, overload

from .builtins import builtin_tasks
from .canvas import Canvas, Plan, Signature, freeze, plan, result_of
from .config import amqp_url, broker_scheme, mask_url, result_backend_scheme
from .exceptions import ConfigurationError, PreconditionFailedError
from .message import TaskMessage, utc_now
from .options import Options, build_message
from .result import DEFAULT_EXCEPTION_MODULES, AsyncResult, ResultBackend
from .results.disabled import DisabledBackend
from .results.rpc import RpcBackend
from .routing import Queue, chord_queue, delay_bucket_ms, delay_topology
from .serialization import Codec
from .task import Task
from .transport.amqp import AmqpTransport
from .transport.base import Envelope, Transport
from .transport.memory import MemoryTransport

if TYPE_CHECKING:
    from .worker.consumer import Worker

__all__ = ("App",)

log = logging.getLogger("aioqueue.app")

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """An aioqueue application.

    :param name: the app's name; names tasks defined in ``__main__``.
    :param broker: ``amqp://user:pass@host:port/vhost``, ``amqps://...``, or
        ``memory://`` (in-process, the default), or a :class:`Transport` instance that
        the caller owns (shared by several apps in one process, e.g. in tests).
    :param result_backend: ``rpc://`` (results travel to the caller's reply queue), or
        ``None`` to disable results.
    :param default_queue: where tasks go without a ``queue`` option.
    :param queues: queue definitions (arguments such as ``x-max-priority`` or
        ``x-queue-type``, exchange types), used wherever this app declares a queue of
        that name: when sending to it and when a worker consumes it.
    :param accept_pickle: let workers accept pickle bodies (unsafe; warns).
    :param exception_modules: modules whose exception types a failed task raises again
        on the caller as themselves; builtins, asyncio and aioqueue's own are always
        allowed, as are the modules that define this app's tasks.
    :param publish_timeout: seconds a publish may wait for a lost connection to return.
    :param chord_expires: seconds a chord's progress is kept in RabbitMQ after its last
        activity (also once it completed, for members redelivered late).
    """

    def __init__(
        self,
        name: str,
        *,
        broker: str | Transport = "memory://",
        result_backend: str | None = "rpc://",
        default_queue: str = "celery",
        queues: Iterable[Queue] = (),
        accept_pickle: bool = False,
        exception_modules: Iterable[str] = (),
        publish_timeout: float = 30.0,
        chord_expires: float = 86_400.0,
    ) -> None:
        self.name = name
        self.chord_expires = chord_expires
        self.default_queue = default_queue
        self.queues = {q.name: q for q in queues}
        self.codec = Codec(accept_pickle=accept_pickle)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._exception_modules = frozenset(exception_modules) | DEFAULT_EXCEPTION_MODULES
        if isinstance(broker, str):
            self.broker_url = broker
            self.transport = _make_transport(broker, name, publish_timeout)
            self._owns_transport = True
        else:
            self.broker_url = f"{type(broker).__name__}()"
            self.transport = broker
            self._owns_transport = False
        self.result_backend_url = result_backend
        self.results: ResultBackend
        self._rpc: RpcBackend | None = None
        if result_backend_scheme(result_backend) == "rpc":
            self._rpc = RpcBackend(
                self.transport, self.codec, exception_modules=self.exception_modules
            )
            self.results = self._rpc
        else:
            self.results = DisabledBackend(self.exception_modules)
        self._declared: set[str] = set()
        self._declaring = asyncio.Lock()
        self._connected = False
        for builtin_name, fn in builtin_tasks(self.tasks).items():
            self.task(name=builtin_name)(fn)

    def __repr__(self) -> str:
        return f"<App {self.name} broker={mask_url(self.broker_url)}>"

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
    ) -> Task[Any, Any] | _TaskDecorator:
        """Register ``fn`` as a task: ``@app.task`` or ``@app.task(name=..., queue=...)``.

        :param name: the registered name (default ``module.function``).
        :param queue: the task's default queue.
        :param ignore_result: the worker sends no result by default.
        :param time_limit: default hard time limit in seconds.
        :raises ConfigurationError: another function is registered under that name.
        """
        options = Options(queue=queue, ignore_result=ignore_result, time_limit=time_limit)

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or self._default_name(func)
            existing = self.tasks.get(task_name)
            if existing is not None and existing.fn is not func:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            task: Task[Any, Any] = Task(self, func, name=task_name, options=options)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else _TaskDecorator(register)

    def _default_name(self, fn: Callable[..., Any]) -> str:
        module = fn.__module__
        if module == "__main__":
            module = self.name
        return f"{module}.{fn.__qualname__}"

    def exception_modules(self) -> frozenset[str]:
        """Modules whose exception types are rebuilt on the caller (see the class doc)."""
        return self._exception_modules | {t.fn.__module__ for t in self.tasks.values()}

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
        """Connect to the broker (idempotent).

        :raises BrokerConnectionError: the broker cannot be reached.
        """
        if not self._connected:
            await self.transport.connect()
            self._connected = True

    async def aclose(self) -> None:
        """Close the result backend and, if the app made it, the transport."""
        if self._rpc is not None:
            await self._rpc.aclose()
        if self._owns_transport:
            await self.transport.aclose()
        self._connected = False
        self._declared.clear()

    def worker(
        self,
        queues: Iterable[str | Queue] | None = None,
        *,
        concurrency: int = 100,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
    ) -> Worker:
        """A worker for this app, to use as ``async with app.worker(...):``.

        See :class:`aioqueue.Worker` for the parameters.
        """
        from .worker.consumer import Worker  # the worker layer sits above the app

        return Worker(
            self,
            queues=queues,
            concurrency=concurrency,
            prefetch=prefetch,
            shutdown_timeout=shutdown_timeout,
        )

    # -- sending -------------------------------------------------------------------------

    async def send_canvas(self, canvas: Canvas) -> AsyncResult[Any]:
        """Send a signature, chain, group or chord and return its promise.

        A group's (or chord header's) messages are published concurrently, their
        confirms awaited together.

        :raises PublishError: the broker did not confirm a message.
        :raises EncodeError: an argument is not serialisable.
        """
        await self.connect()
        reply_to = None
        if self._rpc is not None:
            await self._rpc.start()
            reply_to = self._rpc.reply_to
        if isinstance(canvas, Signature) and not canvas.link and not canvas.link_error:
            # The common case, without the canvas machinery.
            opts = canvas.options
            message = build_message(
                canvas.task,
                canvas.args,
                canvas.kwargs,
                opts,
                # Celery sends reply_to even with ignore_result; the header tells the worker.
                reply_to=reply_to,
            )
            await self.publish(message, opts)
            return AsyncResult(message.id, self.results)
        node = freeze(canvas.to_dict(), reply_to)
        await self.publish_plan(plan(node))
        return result_of(node, self.results)

    async def publish_plan(self, todo: Plan) -> None:
        """Declare the chords of ``todo``, then publish its messages concurrently."""
        for group_id in todo.chords:
            await self.declare_chord(group_id)
        if len(todo.messages) == 1:  # a chain's next step: no task for one publish
            await self.publish(todo.messages[0].message, todo.messages[0].options)
        else:
            await asyncio.gather(*(self.publish(o.message, o.options) for o in todo.messages))

    async def send_task(
        self,
        name: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
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
            countdown=countdown,
            eta=eta,
            expires=expires,
            priority=priority,
            ignore_result=ignore_result,
            task_id=task_id,
            headers=headers,
        )
        return await self.send_canvas(Signature(name, tuple(args), dict(kwargs or {}), options))

    def envelope(self, message: TaskMessage) -> Envelope:
        """The wire form of a task message."""
        return Envelope(
            body=self.codec.encode(message.body()),
            headers=message.headers(),
            content_type=self.codec.content_type,
            content_encoding=self.codec.content_encoding,
            correlation_id=message.id,
            reply_to=message.reply_to,
            priority=message.priority,
        )

    async def publish(self, message: TaskMessage, options: Options | None = None) -> None:
        """Publish a built task message where ``options`` route it, delayed if not due.

        :raises PublishError: the broker did not confirm the message.
        """
        await self.publish_envelope(self.envelope(message), message.eta, options or Options())

    async def publish_envelope(
        self, envelope: Envelope, eta: datetime | None, options: Options
    ) -> None:
        """Publish an encoded task message (see :meth:`publish`)."""
        exchange, routing_key = await self.route(options, eta)
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=routing_key, mandatory=True
        )

    async def route(self, options: Options, eta: datetime | None) -> tuple[str, str]:
        """Where a task message with these options goes: ``(exchange, routing_key)``.

        Declares the target queue (or the delay bucket, for a message not yet due).
        """
        queue = options.queue or self.default_queue
        if options.exchange is not None:
            return options.exchange, options.routing_key or queue
        await self.declare(self.queue(queue))
        bucket = None
        if eta is not None:
            bucket = delay_bucket_ms((eta - utc_now()).total_seconds() * 1000)
        if bucket is None:
            return "", queue
        await self.declare_delay(bucket)
        return delay_topology(bucket)[0].name, queue

    def queue(self, name: str) -> Queue:
        """The definition of queue ``name``: from ``App(queues=...)``, else the default."""
        return self.queues.get(name) or Queue(name)

    async def declare(self, queue: Queue) -> None:
        """Declare a queue's exchange, the queue, its ``.dlq`` and the binding, once.

        A queue that exists with other arguments (declared by a worker that knows its
        definition) is used as it is, with a warning.
        """
        if queue.name in self._declared:
            return
        async with self._declaring:
            if queue.name in self._declared:
                return
            exchange, (spec, dlq), binding = queue.topology()
            await self.transport.declare_exchange(exchange)
            try:
                await self.transport.declare_queue(spec)
            except PreconditionFailedError as exc:
                log.warning(
                    "queue %r exists with other arguments; using it as it is (give its "
                    "definition in App(queues=[...]) to declare it alike): %s",
                    queue.name,
                    exc,
                )
                self._declared.add(queue.name)
                return
            await self.transport.declare_queue(dlq)
            await self.transport.bind(binding)
            self._declared.add(queue.name)

    async def declare_chord(self, group_id: str) -> str:
        """Declare the queue holding a chord's progress; returns its name."""
        spec = chord_queue(group_id, self.chord_expires)
        await self.transport.declare_queue(spec)
        return spec.name

    async def declare_delay(self, bucket_ms: int) -> None:
        """Declare one delay bucket (see ``aioqueue.routing``), once."""
        exchange, spec, binding = delay_topology(bucket_ms)
        if spec.name in self._declared:
            return
        async with self._declaring:
            await self.transport.declare_exchange(exchange)
            await self.transport.declare_queue(spec)
            await self.transport.bind(binding)
            self._declared.add(spec.name)


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


def _make_transport(url: str, name: str, publish_timeout: float) -> Transport:
    if broker_scheme(url) == "memory":
        return MemoryTransport()
    return AmqpTransport(amqp_url(url), publish_timeout=publish_timeout, connection_name=name)
