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
from typing import Any, Generic, ParamSpec, TypeVar, cast

import anyio.to_thread

from .canvas import Chunks, Sender, Signature
from .options import Options
from .result import AsyncResult

__all__ = ("Task",)

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A registered task.

    :param sender: the app that sends it.
    :param fn: the task's function, ``async def`` or plain ``def`` (run in a thread).
    :param name: the registered name, ``module.function`` by default.
    :param options: default send options (queue, ignore_result, ...).
    """

    def __init__(
        self,
        sender: Sender,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str,
        options: Options,
    ) -> None:
        self.sender = sender
        self.fn = fn
        self.name = name
        self.options = options
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        # How many positional arguments the function takes when it has only plain
        # parameters (no defaults, *args, **kwargs or keyword-only ones), else -1: the
        # worker then calls it without inspect's slower binding.
        params = self.signature.parameters.values()
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        self.plain_arity = len(self.signature.parameters) if plain else -1
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (no broker); sync functions run in a thread."""
        if self.is_async:
            return await cast(Callable[P, Awaitable[R]], self.fn)(*args, **kwargs)
        call = functools.partial(self.fn, *args, **kwargs)
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
        """Send the task with its default options; see :meth:`apply_async`."""
        sig: Signature[R] = Signature(self.name, args, kwargs, self.options)
        return cast(AsyncResult[R], await self.sender.send_canvas(sig))

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

        Arguments are not checked against ``P`` here (use :meth:`delay` for that); the
        options are described on :class:`~aioqueue.Options`.

        :param link: signatures applied with the result once the task succeeded.
        :param link_error: signatures applied with the task's id if it failed.

        :raises PublishError: the broker did not confirm the message.
        :raises EncodeError: an argument is not serialisable.
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
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            headers=headers,
        )
        sig: Signature[R] = Signature(
            self.name,
            tuple(args),
            dict(kwargs or {}),
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
