"""The multiply service: an app and its tasks, served by a worker.

    aioqueue worker -A examples.multiply:app -c 100

The broker URL comes from ``AIOQUEUE_BROKER`` (default: RabbitMQ on localhost).
"""

from __future__ import annotations

import os

from aioqueue import App

BROKER = os.environ.get("AIOQUEUE_BROKER", "amqp://guest:guest@localhost:5672//")

app = App(
    "multiply",
    broker=BROKER,
    result_backend="rpc://",
    default_queue=os.environ.get("AIOQUEUE_QUEUE", "celery"),
)


@app.task
async def multiply(x: int, y: int) -> int:
    """Multiply two numbers (an ``async def`` task runs on the worker's event loop)."""
    return x * y


@app.task
def blocking_multiply(x: int, y: int) -> int:
    """The same, as a plain function: sync tasks run in a worker thread."""
    return x * y


@app.task
async def divide(x: float, y: float) -> float:
    """Fails with ZeroDivisionError for ``y == 0``: the caller gets the same exception."""
    return x / y
