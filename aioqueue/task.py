"""``Task[P, R]``: what ``@app.task`` returns.

A task keeps the decorated function's parameters ``P`` and result ``R`` in its type:
``await task.delay(*args, **kwargs)`` gives an ``AsyncResult[R]``, ``task.s(...)`` a
``Signature[R]``, and ``await task(*args, **kwargs)`` runs the function here, without a
broker. Sending goes through the :class:`~aioqueue.canvas.Sender` protocol, which the
app implements.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, NoReturn, ParamSpec, TypedDict, TypeVar, cast

import anyio.to_thread

from .canvas import Chunks, Sender, Signature
from .exceptions import ArgumentsError, ConfigurationError, MaxRetriesExceededError, Retry
from .options import Options
from .request import Request, current_request
from .result import AsyncResult
from .retries import RetryPolicy

__all__ = ("Task", "TaskSettings")

P = ParamSpec("P")
R = TypeVar("R")


class TaskSettings(TypedDict, total=False):
    """What ``@app.task(...)`` takes besides ``bind``.

    Send options, defaults of every call: ``queue``, ``exchange``, ``routing_key``,
    ``priority``, ``ignore_result``, ``time_limit`` (hard, seconds: an async task is
    cancelled, a sync one fails while its thread runs on) and ``soft_time_limit``
    (seconds: :class:`~aioqueue.exceptions.SoftTimeLimitExceeded` is raised inside an
    async task). ``name``: the registered name (default ``module.function``).

    Retries (see :class:`~aioqueue.retries.RetryPolicy`): ``autoretry_for``,
    ``max_retries``, ``default_retry_delay``, ``retry_backoff``, ``retry_backoff_max``,
    ``retry_jitter``. ``acks_late`` and ``rate_limit`` (``"10/s"``, ``"100/m"``): see
    :class:`Task`. ``track_started``: the worker reports ``STARTED`` before running it
    (default: the app's ``track_started``).
    """

    name: str
    queue: str
    exchange: str
    routing_key: str
    priority: int
    ignore_result: bool
    time_limit: float
    soft_time_limit: float
    autoretry_for: tuple[type[BaseException], ...]
    max_retries: int | None
    default_retry_delay: float
    retry_backoff: bool | float
    retry_backoff_max: float
    retry_jitter: bool
    acks_late: bool
    rate_limit: str | float
    track_started: bool


class Task(Generic[P, R]):
    """A registered task.

    :param sender: the app that sends it.
    :param fn: the task's function, ``async def`` or plain ``def`` (run in a thread).
    :param name: the registered name, ``module.function`` by default.
    :param options: default send options (queue, ignore_result, time limits, ...).
    :param bind: ``fn`` takes the task itself first (Celery's ``bind=True``), for
        ``self.retry(...)`` and ``self.request``.
    :param retry_policy: when and how it retries (see :class:`~aioqueue.retries.RetryPolicy`).
    :param acks_late: ack its message once its outcome is published (the default: a
        worker that dies meanwhile loses nothing, the task may run again); ``False`` acks
        it when the task starts: at most once, lost if the worker dies meanwhile.
    :param rate_limit: tasks per second at most, per worker (see ``aioqueue.ratelimit``).
    :param track_started: the worker reports ``STARTED`` (Celery's ``{"pid",
        "hostname"}``) to the caller before it runs the task.
    """

    def __init__(
        self,
        sender: Sender,
        fn: Callable[..., Awaitable[R]] | Callable[..., R],
        *,
        name: str,
        options: Options,
        bind: bool = False,
        retry_policy: RetryPolicy | None = None,
        acks_late: bool = True,
        rate_limit: float | None = None,
        track_started: bool = False,
    ) -> None:
        self.sender = sender
        self.fn = fn
        self.name = name
        self.options = options
        self.bind = bind
        self.retry_policy = retry_policy or RetryPolicy()
        self.acks_late = acks_late
        self.rate_limit = rate_limit
        self.track_started = track_started
        self.is_async = inspect.iscoroutinefunction(fn)
        signature = inspect.signature(fn)
        if bind:
            if not signature.parameters:
                raise ConfigurationError(f"task {name!r}: bind=True needs a first parameter")
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        # The parameters a caller gives (without the task itself when bound).
        self.signature = signature
        # How many positional arguments the function takes when it has only plain
        # parameters (no defaults, *args, **kwargs or keyword-only ones), else -1: the
        # worker then calls it without inspect's slower binding.
        params = self.signature.parameters.values()
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        self.plain_arity = len(self.signature.parameters) if plain else -1
        functools.update_wrapper(self, fn)

    @property
    def request(self) -> Request:
        """The request this task serves now (inside the task only; see
        :func:`aioqueue.current_request`)."""
        return current_request()

    def retry(
        self,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
    ) -> NoReturn:
        """Inside the task: run it again later; use as ``raise self.retry(...)``.

        The worker publishes the next attempt (same id, ``retries`` + 1) into the
        broker's delay queues, waits for its confirm, then acks the current message; the
        caller sees ``RETRY`` and its ``get()`` waits for the final outcome.

        :param countdown: seconds until the next attempt (default: the policy's
            ``default_retry_delay``).
        :param eta: the time of the next attempt instead.
        :param exc: the error retried for; raised instead once retries are exhausted.
        :param max_retries: this call's limit instead of the policy's.
        :raises Retry: always, unless retries are exhausted.
        :raises MaxRetriesExceededError: retries are exhausted and ``exc`` is not given.
        """
        request = current_request()
        if not self.retry_policy.retries_left(request.retries, max_retries):
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} kwargs:{request.kwargs}"
            )
        when: float | datetime = self.retry_policy.default_retry_delay
        if eta is not None:
            when = eta
        elif countdown is not None:
            when = countdown
        raise Retry(when, exc)

    def call(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function with these arguments (and the task first when bound); the
        worker's entry point."""
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def bind_arguments(
        self, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` checked against the task's parameters: by a caller before
        sending (as Celery does), and by the worker before calling.

        :raises ArgumentsError: (a ``TypeError``) they do not fit; it names the task.
        """
        if not kwargs and len(args) == self.plain_arity:
            return tuple(args), {}  # the common case, without inspect's binding
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentsError(f"task {self.name!r}: {exc}") from None
        return bound.args, bound.kwargs

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (no broker); sync functions run in a thread."""
        if self.is_async:
            return cast(R, await self.call(*args, **kwargs))
        call = functools.partial(self.call, *args, **kwargs)
        return cast(R, await anyio.to_thread.run_sync(call))

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A partial: in a chain, the previous result is prepended to ``args``.

        (Its arguments are not checked against the task's: a partial has some missing.)
        """
        return Signature(self.name, args, kwargs, self.options, app=self.sender)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """An immutable signature: in a chain, it ignores the previous result."""
        return Signature(self.name, args, kwargs, self.options, immutable=True, app=self.sender)

    def map(self, items: Iterable[Any]) -> Signature[list[R]]:
        """One ``celery.map`` task calling this task with each item; returns the list."""
        return self._builtin("celery.map", [list(i) if isinstance(i, tuple) else i for i in items])

    def starmap(self, items: Iterable[Iterable[Any]]) -> Signature[list[R]]:
        """One ``celery.starmap`` task calling this task with each item unpacked."""
        return self._builtin("celery.starmap", [list(i) for i in items])

    def chunks(self, items: Iterable[Iterable[Any]], n: int) -> Chunks[R]:
        """The items in batches of ``n``, each batch one ``celery.starmap`` task."""
        if n < 1:
            raise ValueError("chunk size must be at least 1")
        return Chunks(self.s(), tuple(tuple(i) for i in items), n)

    def _builtin(self, name: str, items: list[Any]) -> Signature[list[R]]:
        task: Signature[R] = Signature(self.name, options=self.options)
        return Signature(
            name,
            kwargs={"task": task.to_dict(), "it": items},
            options=self.options,
            app=self.sender,
        )

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task with its default options; see :meth:`apply_async`.

        :raises ArgumentsError: (a ``TypeError``) the arguments do not fit the task.
        """
        self.bind_arguments(args, kwargs)
        sig: Signature[R] = Signature(self.name, args, kwargs, self.options)
        return cast(AsyncResult[R], await self.sender.send_canvas(sig))

    async def delay_many(self, calls: Iterable[Iterable[Any]]) -> list[AsyncResult[R]]:
        """Send one task per item of ``calls`` (the positional arguments of one call),
        with the task's default options, all at once: the messages are published
        together and their confirms awaited together (see ``App.send_many``).
        Returns the promises, in order.

        :raises ArgumentsError: (a ``TypeError``) a call does not fit the task; nothing
            was sent.
        :raises PartialPublishError: only some were sent (it names which).
        """
        # send_many checks every call against the registered task before sending.
        sigs: list[Signature[R]] = [
            Signature(self.name, tuple(call), {}, self.options) for call in calls
        ]
        return cast(list[AsyncResult[R]], await self.sender.send_many(sigs))

    async def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
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
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        headers: dict[str, Any] | None = None,
        link: Signature[Any] | Sequence[Signature[Any]] = (),
        link_error: Signature[Any] | Sequence[Signature[Any]] = (),
    ) -> AsyncResult[R]:
        """Send the task with explicit arguments and options.

        The arguments are checked against the task's parameters (not typed as ``P``:
        :meth:`delay` is); the options are described on :class:`~aioqueue.Options`.

        :param link: signatures applied with the result once the task succeeded.
        :param link_error: signatures applied with the task's id if it failed.

        :raises ArgumentsError: (a ``TypeError``) the arguments do not fit the task.
        :raises PublishError: the broker did not confirm the message.
        :raises EncodeError: an argument is not serialisable.
        """
        args, kwargs = tuple(args), dict(kwargs or {})
        self.bind_arguments(args, kwargs)
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
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            headers=headers,
        )
        sig: Signature[R] = Signature(
            self.name,
            args,
            kwargs,
            self.options.merged(options),
            link=(link,) if isinstance(link, Signature) else tuple(link),
            link_error=(link_error,) if isinstance(link_error, Signature) else tuple(link_error),
        )
        return cast(AsyncResult[R], await self.sender.send_canvas(sig))

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task whose default send options include ``options``."""
        clone = cast(Task[P, R], object.__new__(Task))
        clone.__dict__.update(self.__dict__)
        clone.options = self.options.merged(Options(**options))
        return clone
