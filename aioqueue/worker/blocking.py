"""Names the async task that blocks the worker's event loop (``Worker(block_warning=)``).

An ``async def`` task that computes or calls blocking code without awaiting stalls
every other task of its worker. This watch costs nothing per task: a heartbeat on the
loop (a timer every ``threshold / 4`` seconds, at most 50 ms) notes when it runs, and a
thread wakes as often to look at it. When the heartbeat is late by more than the
threshold, the thread looks at the loop thread's stack for the worker's task call (the
frame of ``code``) and notes which task it is; once the loop runs the heartbeat again,
the lateness is how long it was blocked, and the task is named in a WARNING. The
duration is known to within half a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType

from . import tasklog

__all__ = ("BlockWatch",)

log = logging.getLogger("aioqueue.worker")

# The task a frame of ``code`` runs: its name and id, or None.
Describe = Callable[[FrameType], tuple[str, str] | None]


class BlockWatch:
    """Warns about a task that blocks the running loop longer than ``threshold`` seconds.

    :param threshold: seconds; must be positive.
    :param code: the code of the function that calls a task (its frame is on the loop
        thread's stack while the task runs).
    :param describe: the task a frame of ``code`` runs.
    """

    def __init__(self, threshold: float, code: CodeType, describe: Describe) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.threshold = threshold
        self.interval = min(threshold / 4, 0.05)
        self._code = code
        self._describe = describe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._due = 0.0  # when the next heartbeat is due (monotonic)
        self._culprit: tuple[str, str] | None = None
        self._mixed = False  # the stall showed more than one task

    def start(self) -> None:
        """Start watching the running loop (call it in the loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping.clear()
        self._schedule()
        self._thread = threading.Thread(
            target=self._watch, name="aioqueue-block-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (call it in the loop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = time.monotonic() + self.interval
        self._handle = self._loop.call_later(self.interval, self._beat)

    def _beat(self) -> None:
        late = time.monotonic() - self._due
        # The stall began somewhere in the heartbeat's interval: half of it, on average.
        blocked = late + self.interval / 2
        culprit, mixed = self._culprit, self._mixed
        self._culprit, self._mixed = None, False
        self._schedule()
        if blocked < self.threshold:
            return
        if culprit is None or mixed:
            log.debug(tasklog.blocked(None, None, blocked))
            return
        name, task_id = culprit
        extra = tasklog.fields(name, task_id, "blocked", blocked)
        log.warning(tasklog.blocked(name, task_id, blocked), extra=extra)

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval):
            if time.monotonic() - self._due < self.threshold / 2:
                continue
            culprit = self._running()
            if culprit is None:
                # The loop runs no task now: code between tasks, or the stall just ended
                # and the heartbeat has not run yet. Neither names nor clears a task.
                continue
            if self._culprit is None:
                self._culprit = culprit
            elif culprit != self._culprit:
                self._mixed = True

    def _running(self) -> tuple[str, str] | None:
        """The task the loop thread runs now, read from its stack."""
        frame = sys._current_frames().get(self._loop_thread)
        while frame is not None:
            if frame.f_code is self._code:
                return self._describe(frame)
            frame = frame.f_back
        return None
