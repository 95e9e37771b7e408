"""``task-sent`` events: a client telling monitors about each task it publishes.

Celery sends them when ``task_send_sent_event`` is on; here ``App(send_sent_event=True)``.
:func:`sent_event` decides the event (pure); :class:`SentEvents` publishes it on
``celeryev`` right after the task message, transient like every event. A lost event is
logged and dropped: the task was sent, and that is what the caller awaits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from . import events
from .exceptions import AioQueueError
from .message import TaskMessage
from .routing import Route
from .topology import Broadcast, Queue
from .transport.base import Envelope, ExchangeSpec, Transport

__all__ = ("SentEvents", "sent_event")

log = logging.getLogger("aioqueue.events")

_EXCHANGE = ExchangeSpec(events.EVENT_EXCHANGE, type="topic")


def sent_event(source: events.EventSource, message: TaskMessage, route: Route) -> dict[str, object]:
    """The ``task-sent`` event for ``message`` published along ``route`` (pure)."""
    queue = next(
        (d.name for d in route.declare if isinstance(d, Queue | Broadcast)), route.routing_key
    )
    return events.task_sent(
        source,
        task_id=message.id,
        name=message.task,
        args=message.args,
        kwargs=message.kwargs,
        root_id=message.root_id or message.id,
        parent_id=message.parent_id,
        retries=message.retries,
        eta=message.eta.isoformat() if message.eta else None,
        expires=message.expires.isoformat() if message.expires else None,
        queue=queue,
        exchange=route.exchange,
        routing_key=route.routing_key,
    )


class SentEvents:
    """Publishes a client's ``task-sent`` events.

    :param transport: the client's connection.
    :param hostname: the node name the events carry; by default Celery's client name,
        ``gen<pid>@<host>``, the task messages' ``origin``.
    """

    def __init__(self, transport: Transport, hostname: str | None = None) -> None:
        self.transport = transport
        if hostname is None:
            hostname = f"gen{os.getpid()}@{socket.gethostname()}"
        self.source = events.EventSource(hostname)
        self._generation = -1  # the connection the exchange was declared on

    async def send(self, messages: list[tuple[TaskMessage, Route]]) -> None:
        """Publish one ``task-sent`` per ``(message, route)``, a group's concurrently;
        failures are logged only."""
        try:
            if self._generation != self.transport.generation:
                await self.transport.declare_exchange(_EXCHANGE)
                self._generation = self.transport.generation
        except AioQueueError as exc:
            log.warning("%d task-sent event(s) not sent: %s", len(messages), exc)
            return
        async with asyncio.TaskGroup() as group:
            for message, route in messages:
                group.create_task(self._publish(message, route))

    async def _publish(self, message: TaskMessage, route: Route) -> None:
        key, body = events.encode_events([sent_event(self.source, message, route)], multi=False)
        envelope = Envelope(
            body=body, headers={"hostname": self.source.hostname}, persistent=False, priority=0
        )
        try:
            await self.transport.publish(envelope, exchange=events.EVENT_EXCHANGE, routing_key=key)
        except AioQueueError as exc:
            log.warning("task-sent event of task %s not sent: %s", message.id, exc)
