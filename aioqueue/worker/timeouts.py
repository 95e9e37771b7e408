"""Time limits of an async task: a soft one raised inside it, a hard one that cancels it.

asyncio can only interrupt a task by cancelling it. The soft limit therefore cancels the
task running the coroutine and, as that cancellation arrives, takes it back
(``Task.uncancel``) and throws :class:`SoftTimeLimitExceeded` into the coroutine where
it waits instead: the task sees an ordinary exception it may catch to clean up, and it
keeps running until it returns or its hard limit cancels it for good. Any other
cancellation (the hard limit, a revocation, the worker stopping) passes through as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from ..exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

__all__ = ("run_with_limits",)

T = TypeVar("T")


class _SoftLimit:
    """Drives a coroutine, and throws the soft-limit error into it when told to."""

    __slots__ = ("_coro", "_error", "_pending", "_task")

    def __init__(self, coro: Coroutine[Any, Any, Any], task: asyncio.Task[Any], error: str) -> None:
        self._coro = coro
        self._task = task
        self._error = error
        self._pending = False

    def fire(self) -> None:
        """The soft limit passed: wake the task, whatever it awaits."""
        self._pending = True
        self._task.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        value: Any = None
        throw: BaseException | None = None
        while True:
            try:
                if throw is not None:
                    error, throw = throw, None
                    yielded = coro.throw(error)
                else:
                    yielded = coro.send(value)
            except StopIteration as stop:
                return stop.value
            value = None
            try:
                value = yield yielded
            except asyncio.CancelledError as exc:
                if self._pending:
                    self._pending = False
                    self._task.uncancel()
                    throw = SoftTimeLimitExceeded(self._error)
                else:
                    throw = exc
            except BaseException as exc:
                throw = exc


async def run_with_limits(
    coro: Coroutine[Any, Any, T], *, soft: float | None, hard: float | None, what: str
) -> T:
    """Await ``coro`` within its limits (seconds; ``None``: none).

    :param what: names the task in the errors.
    :raises SoftTimeLimitExceeded: (inside the coroutine) past ``soft``.
    :raises TimeLimitExceeded: past ``hard``: the coroutine was cancelled.
    """
    if soft is None and hard is None:
        return await coro
    task = asyncio.current_task()
    assert task is not None
    runner: Any = coro
    timer = None
    if soft is not None and (hard is None or soft < hard):
        limit = _SoftLimit(coro, task, f"{what} exceeded its soft time limit of {soft:g} s")
        timer = asyncio.get_running_loop().call_later(soft, limit.fire)
        runner = limit
    deadline = asyncio.timeout(hard)
    try:
        async with deadline:
            return await runner  # type: ignore[no-any-return]
    except TimeoutError:
        if not deadline.expired():
            raise  # the task's own TimeoutError
        raise TimeLimitExceeded(f"{what} exceeded its time limit of {hard:g} s") from None
    finally:
        if timer is not None:
            timer.cancel()
