"""The app the event tests run in worker subprocesses: broker and queue from the
environment (``AIOQUEUE_TEST_BROKER``, ``AIOQUEUE_TEST_QUEUE``)."""

from __future__ import annotations

import os

from aioqueue import App

app = App(
    "events",
    broker=os.environ.get("AIOQUEUE_TEST_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    default_queue=os.environ.get("AIOQUEUE_TEST_QUEUE", "events"),
)


@app.task(name="ev.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="ev.fail")
async def fail() -> None:
    raise ValueError("boom")
