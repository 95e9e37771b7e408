"""The benchmark's tasks, and an app serving them for ``aioqueue worker``.

``run.py`` builds its in-process worker and client apps with :func:`make`; for the
separate-process worker of W5 it runs

    aioqueue worker -A bench_tasks:app -c 1000

from this directory, with the broker URL in ``AIOQUEUE_BENCH_URL`` and the queue in
``AIOQUEUE_BENCH_QUEUE`` (``run.py`` sets both; each run uses a queue of its own).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from aioqueue import App, Task

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
URL_ENV = "AIOQUEUE_BENCH_URL"
QUEUE_ENV = "AIOQUEUE_BENCH_QUEUE"

# Registered under fixed names so a client and a worker built by separate calls of
# make() (or in separate processes) agree on them.
ADD = "bench.add"
NAP = "bench.nap"
PUBLISH_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Bench:
    """An app with the benchmark's tasks registered on it."""

    app: App
    add: Task[[int, int], int]
    nap: Task[[float], None]


def make(name: str, url: str, queue: str) -> Bench:
    """A new app on ``url`` whose default queue is ``queue``, with both tasks."""
    # A burst of 10,000 publishes on a loaded machine can take longer than the default
    # 30 s to be confirmed in full; the ceiling sets no deadline either.
    app = App(name, broker=url, default_queue=queue, publish_timeout=PUBLISH_TIMEOUT)

    @app.task(name=ADD)
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name=NAP)
    async def nap(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return Bench(app, add, nap)


app = make(
    "bench-worker",
    os.environ.get(URL_ENV, DEFAULT_URL),
    os.environ.get(QUEUE_ENV, "bench.aioqueue"),
).app
