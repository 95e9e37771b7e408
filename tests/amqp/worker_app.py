"""The app ``test_process.py`` runs in worker subprocesses.

Configured from the environment: ``AIOQUEUE_TEST_BROKER`` (the broker URL),
``AIOQUEUE_TEST_QUEUE`` (its default queue) and ``AIOQUEUE_TEST_MARKS`` (a directory
where each task run appends a line to a file named after its arguments).
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from aioqueue import App

app = App(
    "process-test",
    broker=os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    default_queue=os.environ.get("AIOQUEUE_TEST_QUEUE", "celery"),
)


async def _mark(name: str) -> None:
    marks = os.environ.get("AIOQUEUE_TEST_MARKS")
    if marks:
        async with await anyio.open_file(Path(marks) / name, "a") as file:
            await file.write(f"{os.getpid()}\n")


@app.task(name="process.slow_multiply")
async def slow_multiply(x: int, y: int, seconds: float) -> int:
    await _mark(f"{x}-{y}")
    await anyio.sleep(seconds)
    return x * y


@app.task(name="process.blocking_multiply")
def blocking_multiply(x: int, y: int) -> int:
    return x * y
