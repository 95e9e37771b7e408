"""The worker's pure and local parts: outcome backoff, thread slots, the registry."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from aioqueue import App
from aioqueue.exceptions import ConfigurationError, TimeLimitExceeded
from aioqueue.worker import execute
from aioqueue.worker.limits import ThreadSlots
from aioqueue.worker.retry import Backoff

pytestmark = pytest.mark.anyio


def test_backoff_is_bounded_and_doubles() -> None:
    assert Backoff(attempts=1).delays() == []
    assert Backoff(attempts=5, first=0.5, longest=3).delays() == [0.5, 1.0, 2.0, 3.0]


def test_two_functions_cannot_share_a_name() -> None:
    app = App("names")

    @app.task(name="same")
    async def one() -> None: ...

    with pytest.raises(ConfigurationError, match="'same' is already registered"):

        @app.task(name="same")
        async def other() -> None: ...


async def test_a_sync_task_past_its_limit_keeps_its_thread_slot() -> None:
    app = App("limits")
    release = threading.Event()

    @app.task
    def stuck() -> None:
        release.wait(10)

    slots = ThreadSlots(1)
    try:
        started = time.monotonic()
        with pytest.raises(TimeLimitExceeded):
            await execute.call_with_limit(app.tasks[stuck.name], ((), {}), slots, 0.05)
        assert time.monotonic() - started < 5
        # The thread runs on: its slot is not given to the next sync task.
        assert slots.busy == 1
        with anyio.move_on_after(0.2) as waited:
            await slots.run(lambda: None)
        assert waited.cancelled_caught, "a second thread started beyond the limit"
        release.set()
        with anyio.fail_after(5):
            assert await slots.run(lambda: 42) == 42
        assert slots.busy == 0
    finally:
        release.set()
        slots.close()
