"""Threads for sync tasks, bounded by the worker's concurrency.

A sync task runs in a thread of the worker's own pool. A thread cannot be stopped from
outside, so a sync task past its time limit fails at once (``TimeLimitExceeded``) while
its thread runs on to its end: it keeps its thread slot until then. Threads therefore
never exceed ``concurrency``; when every slot is held by such threads, the next sync
task waits for one to end (async tasks are not affected).

Such a thread is an *overrun*: :meth:`ThreadSlots.wait_overrun` returns once there has
been one, so that a process that must not keep runaway threads (a child of
``aioqueue worker --processes``) can stop and leave; only the end of the process ends
the thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..exceptions import TimeLimitExceeded

__all__ = ("ThreadSlots",)

T = TypeVar("T")


class ThreadSlots:
    """At most ``size`` threads running sync task functions.

    :param size: the number of threads.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ThreadPoolExecutor | None = None
        self._free: asyncio.Semaphore | None = None
        self._busy = 0
        self._overruns = 0
        self._overrunning = 0
        # Set for good at the first overrun: the thread may run as long as the process.
        self._overran = asyncio.Event()

    @property
    def busy(self) -> int:
        """Threads running a function now (including those past their time limit)."""
        return self._busy

    @property
    def overruns(self) -> int:
        """How many functions ran past their time limit while their thread still ran."""
        return self._overruns

    @property
    def overrunning(self) -> int:
        """Threads running now a function past its time limit."""
        return self._overrunning

    async def wait_overrun(self) -> None:
        """Wait until a function has run past its time limit with its thread still
        running (at once if one has already, even if that thread has ended since)."""
        await self._overran.wait()

    async def run(
        self, fn: Callable[..., T], *args: Any, limit: float | None = None, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a thread; the slot is held until it returns.

        Cancelling the caller stops the wait, not the thread.

        :param limit: seconds the function may run, counted from when it has a thread.
        :raises TimeLimitExceeded: it ran past ``limit`` (its thread runs on: an overrun).
        """
        if self._free is None or self._executor is None:
            self._free = asyncio.Semaphore(self.size)
            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="aioqueue-task")
        free = self._free
        await free.acquire()
        try:
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            future = asyncio.get_running_loop().run_in_executor(self._executor, call)
        except BaseException:
            free.release()
            raise
        self._busy += 1
        overrun = False

        def ended(done: asyncio.Future[T]) -> None:
            self._busy -= 1
            if overrun:
                self._overrunning -= 1
            free.release()
            if not done.cancelled():
                done.exception()  # retrieved: nobody may be awaiting it any more

        future.add_done_callback(ended)
        # Shielded: a cancelled caller must not mark the future done while its thread runs.
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await asyncio.shield(future)
        except TimeoutError:
            if not timer.expired():
                raise  # the function's own TimeoutError
            if not future.done():
                overrun = True
                self._overruns += 1
                self._overrunning += 1
                self._overran.set()
            raise TimeLimitExceeded(f"{limit:g} s") from None

    def close(self) -> None:
        """Let the pool go; threads still running end on their own."""
        executor, self._executor, self._free = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if not self._overran.is_set():
            # It may be waited on in another event loop next time; a set one never blocks.
            self._overran = asyncio.Event()
