"""The app the fault tests run in worker subprocesses, and their clients too.

:func:`create_app` builds it; the module-level ``app`` (what ``-A tests.faults.worker_app``
names) is configured from the environment: ``AIOQUEUE_TEST_BROKER`` (the broker URL),
``AIOQUEUE_TEST_QUEUE`` (its default queue), ``AIOQUEUE_TEST_LOG`` (a file where every
task run appends one line, ``<what> <pid> <detail>``, so that a test can tell which
worker ran what, and how often) and ``AIOQUEUE_TEST_MAX_MESSAGE_SIZE`` (the app's
``max_message_size``, if set).
"""

from __future__ import annotations

import os
import signal
import time

import anyio

from aioqueue import App
from aioqueue.serialization import DEFAULT_MAX_MESSAGE_SIZE


def log(what: str, detail: object = "") -> None:
    """Append one line to the log file (one ``write`` on an ``O_APPEND`` file: lines
    from several processes do not interleave)."""
    path = os.environ.get("AIOQUEUE_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {os.getpid()} {detail}\n".encode())
    finally:
        os.close(fd)


# What ``faults.hog`` keeps alive: memory this process holds until it ends.
_HELD: list[bytes] = []


def create_app(broker: str, queue: str, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> App:
    app = App("faults", broker=broker, default_queue=queue, max_message_size=max_message_size)

    @app.task(name="faults.slow_multiply")
    async def slow_multiply(x: int, y: int, seconds: float) -> int:
        log("multiply", f"{x}-{y}")
        await anyio.sleep(seconds)
        return x * y

    @app.task(name="faults.blocking_multiply")
    def blocking_multiply(x: int, y: int) -> int:
        return x * y

    @app.task(name="faults.add")
    async def add(x: int, y: int) -> int:
        log("add", f"{x},{y}")
        return x + y

    @app.task(name="faults.slow_add")
    async def slow_add(x: int, y: int, seconds: float) -> int:
        log("start", x)
        await anyio.sleep(seconds)
        log("done", x)
        return x + y

    @app.task(name="faults.xsum")
    async def xsum(values: list[int]) -> int:
        log("xsum", len(values))
        return sum(values)

    @app.task(name="faults.die")
    async def die(x: int) -> None:
        """A poison message: kills its worker (a moment after it starts, so the test
        sees the worker's banner first)."""
        log("die", x)
        await anyio.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)

    @app.task(name="faults.boom")
    async def boom(x: int) -> int:
        log("boom", x)
        raise ValueError(f"boom {x}")

    @app.task(name="faults.stuck", time_limit=0.5)
    def stuck(seconds: float) -> None:
        # Blocks its thread: past its hard time limit the thread cannot be stopped.
        log("stuck", seconds)
        time.sleep(seconds)

    @app.task(name="faults.hog")
    def hog(mib: int) -> int:
        log("hog", mib)
        _HELD.append(b"\x01" * (mib * 2**20))  # written to: resident, not just reserved
        return mib

    return app


app = create_app(
    os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    os.environ.get("AIOQUEUE_TEST_QUEUE", "celery"),
    max_message_size=int(
        os.environ.get("AIOQUEUE_TEST_MAX_MESSAGE_SIZE", DEFAULT_MAX_MESSAGE_SIZE)
    ),
)
