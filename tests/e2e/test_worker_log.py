"""The worker's log, as Celery's: a task received, succeeded (with its result), failed
(with its traceback), retried; a result that cannot travel; a task that blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from aioqueue import App
from tests.e2e.conftest import MakeApp

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging
LOGGER = "aioqueue.worker"


def _tasks(app: App) -> dict[str, Any]:
    @app.task(name="log.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="log.fail")
    async def fail() -> None:
        raise ValueError("went wrong")

    @app.task(name="log.odd")
    async def odd() -> object:
        return object()

    @app.task(name="log.block")
    async def block(seconds: float) -> str:
        time.sleep(seconds)  # noqa: ASYNC251 (what the warning is about)
        return "done"

    @app.task(name="log.wait")
    async def wait(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    return {"add": add, "fail": fail, "odd": odd, "block": block, "wait": wait}


def _lines(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and task_id in r.getMessage()]


async def test_received_and_succeeded_at_info(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app("log-ok")
    add = _tasks(app)["add"]
    async with app, app.worker(concurrency=1):
        result = await add.delay(1, 2)
        assert await result.get(timeout=TIMEOUT) == 3
    received, succeeded = _lines(caplog, result.id)
    assert received.levelno == logging.INFO
    assert received.getMessage() == f"Task log.add[{result.id}] received"
    assert (received.task, received.task_id, received.event) == ("log.add", result.id, "received")  # type: ignore[attr-defined]
    assert succeeded.levelno == logging.INFO
    message = succeeded.getMessage()
    assert message.startswith(f"Task log.add[{result.id}] succeeded in ") and message.endswith(
        "s: 3"
    )
    assert succeeded.event == "succeeded" and 0 <= succeeded.duration < TIMEOUT  # type: ignore[attr-defined]


async def test_a_failure_at_error_with_its_traceback(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-fail")
    fail = _tasks(app)["fail"]
    async with app, app.worker(concurrency=1):
        result = await fail.delay()
        with pytest.raises(ValueError, match="went wrong"):
            await result.get(timeout=TIMEOUT)
    (failed,) = _lines(caplog, result.id)  # nothing at INFO: received is not there
    assert failed.levelno == logging.ERROR
    assert failed.getMessage() == f"Task log.fail[{result.id}] raised ValueError: went wrong"
    assert failed.exc_info is not None and failed.exc_info[0] is ValueError
    assert failed.event == "failed"  # type: ignore[attr-defined]
    assert 'raise ValueError("went wrong")' in caplog.text  # the traceback


async def test_an_unserialisable_result_at_error(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-odd")
    odd = _tasks(app)["odd"]
    async with app, app.worker(concurrency=1):
        result = await odd.delay()
        with pytest.raises(Exception, match="unserialisable"):
            await result.get(timeout=TIMEOUT)
    (line,) = _lines(caplog, result.id)
    assert line.levelno == logging.ERROR
    assert (
        f"Task log.odd[{result.id}] returned a result that cannot be serialised"
        in line.getMessage()
    )


async def test_a_retry_at_info(make_app: MakeApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = make_app("log-retry")
    calls: list[int] = []

    @app.task(name="log.again", autoretry_for=(OSError,), max_retries=2, default_retry_delay=0)
    async def again() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("not yet")
        return len(calls)

    async with app, app.worker(concurrency=1):
        result = await again.delay()
        assert await result.get(timeout=TIMEOUT) == 2
    events = [getattr(r, "event", None) for r in _lines(caplog, result.id)]
    assert events == ["received", "retried", "received", "succeeded"]
    (retried,) = [r for r in _lines(caplog, result.id) if getattr(r, "event", None) == "retried"]
    assert retried.levelno == logging.INFO
    assert retried.getMessage().startswith(f"Task log.again[{result.id}] retry at ")
    assert "not yet" in retried.getMessage()


async def test_nothing_per_task_at_the_default_level(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-quiet")
    add = _tasks(app)["add"]
    async with app, app.worker(concurrency=4):
        results = [await add.delay(i, i) for i in range(20)]
        assert [await r.get(timeout=TIMEOUT) for r in results] == [2 * i for i in range(20)]
    assert [r for r in caplog.records if r.name == LOGGER] == []


async def test_a_task_blocking_the_loop_is_named(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-block")
    tasks = _tasks(app)
    async with app, app.worker(concurrency=2, block_warning=0.1):
        waited = await tasks["wait"].delay(0.4)  # awaits: blocks nothing
        assert await waited.get(timeout=TIMEOUT) == "done"
        assert _lines(caplog, waited.id) == []
        # Long enough that the watching thread sees the stall even on a loaded machine.
        blocked = await tasks["block"].delay(0.6)
        assert await blocked.get(timeout=TIMEOUT) == "done"
    (warning,) = _lines(caplog, blocked.id)
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert message.startswith(f"task log.block[{blocked.id}] blocked the event loop for ")
    assert message.endswith("run CPU work in a sync task or --processes")
    assert warning.event == "blocked" and 0.55 <= warning.duration <= 1.5  # type: ignore[attr-defined]


async def test_a_stall_that_ends_outside_the_task_still_names_it(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-block-after")

    @app.task(name="log.block_then_callback")
    async def block_then_callback() -> str:
        # Runs after this task's step, on asyncio before the late heartbeat: the stall
        # goes on with no task on the loop thread's stack (uvloop runs the heartbeat
        # first, so the task's part is a stall of its own).
        asyncio.get_running_loop().call_soon(time.sleep, 0.4)
        time.sleep(0.4)  # noqa: ASYNC251 (what the warning is about)
        return "done"

    async with app, app.worker(concurrency=1, block_warning=0.1):
        blocked = await block_then_callback.delay()
        assert await blocked.get(timeout=TIMEOUT) == "done"
    (warning,) = _lines(caplog, blocked.id)
    assert warning.getMessage().startswith(
        f"task log.block_then_callback[{blocked.id}] blocked the event loop for "
    )
    assert 0.35 <= warning.duration <= 2.0  # type: ignore[attr-defined]


async def test_block_warning_zero_watches_nothing(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    app = make_app("log-unwatched")
    block = _tasks(app)["block"]
    async with app, app.worker(concurrency=1, block_warning=0):
        result = await block.delay(0.2)
        assert await result.get(timeout=TIMEOUT) == "done"
    assert _lines(caplog, result.id) == []
