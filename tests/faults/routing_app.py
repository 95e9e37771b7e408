"""The app the routing process tests run: two queues, a topic exchange and a broadcast.

Configured from the environment like ``worker_app``: ``AIOQUEUE_TEST_BROKER``,
``AIOQUEUE_TEST_QUEUE`` (the default queue, and the prefix of every other name) and
``AIOQUEUE_TEST_LOG`` (each run appends ``<task> <pid> <value>``).
"""

from __future__ import annotations

import os

from aioqueue import App, Broadcast, Exchange, Queue
from tests.faults.worker_app import log


def create_app(broker: str, prefix: str) -> App:
    orders = Exchange(f"{prefix}.orders", "topic")
    app = App(
        "routing",
        broker=broker,
        default_queue=prefix,
        queues=[
            Queue(f"{prefix}.qa", max_priority=5),
            Queue(f"{prefix}.qb"),
            Queue(f"{prefix}.orders", exchange=orders, routing_key="orders.*"),
            Broadcast(f"{prefix}.reload"),
        ],
        task_routes={
            "routing.a": f"{prefix}.qa",
            "routing.b": {"queue": f"{prefix}.qb"},
            "routing.order": {"exchange": orders.name, "routing_key": "orders.created"},
            "routing.reload": f"{prefix}.reload",
        },
    )
    for name in ("a", "b", "order", "reload"):
        _record(app, f"routing.{name}")
    return app


def _record(app: App, name: str) -> None:
    @app.task(name=name)
    async def record(value: int) -> int:
        log(name, value)
        return value


app = create_app(
    os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    os.environ.get("AIOQUEUE_TEST_QUEUE", "routing"),
)
