"""``aioqueue events``: read the ``celeryev`` stream (Celery's or aioqueue's workers).

:func:`describe` (pure) makes one terminal line of an event; :func:`watch` consumes a
queue of its own, exclusive to its connection (RabbitMQ 4.3 refuses transient shared
queues), bound to every routing key, and hands each event to a callback.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .events import EVENT_EXCHANGE
from .transport.base import BindingSpec, Delivery, ExchangeSpec, QueueSpec, Transport

__all__ = ("describe", "watch")

# The fields worth a glance, per event type, in this order.
_SHOWN: dict[str, tuple[str, ...]] = {
    "task-received": ("args", "kwargs", "retries", "eta"),
    "task-sent": ("args", "kwargs", "queue"),
    "task-succeeded": ("result", "runtime"),
    "task-failed": ("exception",),
    "task-retried": ("exception",),
    "task-revoked": ("terminated", "expired"),
    "task-rejected": ("requeue",),
    "worker-online": ("sw_ident", "sw_ver"),
    "worker-heartbeat": ("active", "processed"),
    "worker-offline": ("processed",),
}


def describe(event: dict[str, Any]) -> str:
    """One line: time, hostname, type, task name[id] and the fields that matter to it."""
    when = datetime.fromtimestamp(float(event.get("timestamp", 0.0)), UTC)
    parts = [when.strftime("%H:%M:%S.%f")[:-3], str(event.get("hostname")), str(event.get("type"))]
    if "uuid" in event:
        name = event.get("name")
        parts.append(f"{name}[{event['uuid']}]" if name else f"[{event['uuid']}]")
    for key in _SHOWN.get(str(event.get("type")), ()):
        if key in event:
            parts.append(f"{key}={event[key]}")
    return " ".join(parts)


def _events_of(body: bytes) -> list[dict[str, Any]]:
    decoded = json.loads(body)
    # A worker's batch (task.multi) is a list; everything else one object.
    items = decoded if isinstance(decoded, list) else [decoded]
    return [item for item in items if isinstance(item, dict)]


async def watch(
    transport: Transport,
    show: Callable[[dict[str, Any]], None],
    *,
    limit: int | None = None,
    timeout: float | None = None,
) -> int:
    """Show events until ``limit`` were seen or ``timeout`` seconds passed (else forever);
    the number shown."""
    queue = f"celeryev.{uuid.uuid4()}"
    await transport.declare_exchange(ExchangeSpec(EVENT_EXCHANGE, type="topic"))
    await transport.declare_queue(QueueSpec(queue, durable=False, exclusive=True))
    await transport.bind(BindingSpec(queue, EVENT_EXCHANGE, "#"))
    seen = 0
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        nonlocal seen
        try:
            events = _events_of(delivery.envelope.body)
        except ValueError:
            return  # not JSON: not an event we can show
        for event in events:
            if limit is not None and seen >= limit:
                break
            show(event)
            seen += 1
        if limit is not None and seen >= limit:
            done.set()

    consumer = await transport.consume(queue, handle, prefetch=100, no_ack=True)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        pass
    finally:
        await consumer.close()
        await transport.delete_queue(queue)
    return seen
