"""``Task[P, R]``: what ``@app.task`` returns.

A task keeps the decorated function's parameters ``P`` and result ``R`` in its type:
``await task.delay(*args, **kwargs)`` gives an ``AsyncResult[R]``, ``task.s(...)`` a
``Signature[R]``, and ``await task(*args, **kwargs)`` runs the function here, without a
broker. Sending goes through the :class:`Sender` protocol, which the app implements.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast

import anyio.to_thread

from .result import AsyncResult
from .signature import Options, Signature

__all__ = ("Sender", "Task")

P = ParamSpec("P")
R = TypeVar("R")


class Sender(Protocol):
    """What a task needs from its app to be sent."""

    async def send(self, sig: Signature[R]) -> AsyncResult[R]: ...


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
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (no broker); sync functions run in a thread."""
        if self.is_async:
            return await cast(Callable[P, Awaitable[R]], self.fn)(*args, **kwargs)
        call = functools.partial(self.fn, *args, **kwargs)
        return cast(R, await anyio.to_thread.run_sync(call))

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """A partial: in a chain, the previous result is prepended to ``args``."""
        return Signature(self.name, args, kwargs, self.options)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """An immutable signature: in a chain, it ignores the previous result."""
        return Signature(self.name, args, kwargs, self.options, immutable=True)

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task with its default options; see :meth:`apply_async`."""
        return await self.sender.send(Signature(self.name, args, kwargs, self.options))

    async def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        priority: int | None = None,
        ignore_result: bool | None = None,
        task_id: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        headers: dict[str, Any] | None = None,
    ) -> AsyncResult[R]:
        """Send the task with explicit arguments and options.

        Arguments are not checked against ``P`` here (use :meth:`delay` for that); the
        options are described on :class:`~aioqueue.Options`.

        :raises PublishError: the broker did not confirm the message.
        :raises EncodeError: an argument is not serialisable.
        """
        options = Options(
            queue=queue,
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
            self.name, tuple(args), dict(kwargs or {}), self.options.merged(options)
        )
        return await self.sender.send(sig)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task whose default send options include ``options``."""
        clone = cast(Task[P, R], object.__new__(Task))
        clone.__dict__.update(self.__dict__)
        clone.options = replace(self.options).merged(Options(**options))
        return clone
