"""A worker's event dispatcher: sends Celery-format events without ever holding a task up.

Tasks only append to a list (:meth:`WorkerEvents.task`); one background task sends what
has gathered as a ``task.multi`` batch, and another sends the heartbeat every
:data:`~aioqueue.events.HEARTBEAT_FREQ` seconds. A failed publish is logged and dropped:
events are for monitors, and a task never fails because one was lost.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import Any

from aioqueue import events
from aioqueue.exceptions import AioQueueError, Retry
from aioqueue.message import ResultMessage, State, TaskMessage
from aioqueue.transport.base import Envelope, ExchangeSpec, Transport

__all__ = ("WorkerEvents", "outcome", "received")

log = logging.getLogger("aioqueue.worker.events")

# Celery declares it so (kombu Exchange('celeryev', type='topic'), durable by default).
EXCHANGE = ExchangeSpec(events.EVENT_EXCHANGE, type="topic")


class WorkerEvents:
    """Sends one worker's events on ``celeryev``."""

    def __init__(
        self,
        transport: Transport,
        hostname: str,
        *,
        active: Callable[[], int],
        processed: Callable[[], int],
        freq: float = events.HEARTBEAT_FREQ,
    ) -> None:
        self.transport = transport
        self.source = events.EventSource(hostname)
        self.freq = freq
        self._active = active
        self._processed = processed
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Declare the exchange, send ``worker-online`` and start the background senders."""
        self._wake = asyncio.Event()
        await self.transport.declare_exchange(EXCHANGE)
        await self._send_worker("online")
        self._tasks = [
            asyncio.create_task(self._flush_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]

    def task(self, event: dict[str, Any]) -> None:
        """Queue a task event to be sent with the next batch; never waits."""
        self._pending.append(event)
        self._wake.set()

    async def aclose(self) -> None:
        """Send what is queued, then ``worker-offline``, and stop."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._flush()
        await self._send_worker("offline")

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.freq)
            await self._send_worker("heartbeat")

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._send(batch, multi=True)

    async def _send_worker(self, kind: str) -> None:
        event = events.worker_event(
            self.source, kind, active=self._active(), processed=self._processed(), freq=self.freq
        )
        await self._send([event], multi=False)

    async def _send(self, batch: list[dict[str, Any]], *, multi: bool) -> None:
        key, body = events.encode_events(batch, multi=multi)
        envelope = Envelope(
            body=body, headers={"hostname": self.source.hostname}, persistent=False, priority=0
        )
        try:
            await self.transport.publish(envelope, exchange=events.EVENT_EXCHANGE, routing_key=key)
        except AioQueueError as exc:
            log.warning("%d event(s) not sent: %s", len(batch), exc)


def received(source: events.EventSource, message: TaskMessage) -> dict[str, Any]:
    """``task-received`` for ``message``."""
    return events.task_received(
        source,
        task_id=message.id,
        name=message.task,
        args=message.args,
        kwargs=message.kwargs,
        root_id=message.root_id,
        parent_id=message.parent_id,
        retries=message.retries,
        eta=message.eta.isoformat() if message.eta else None,
        expires=message.expires.isoformat() if message.expires else None,
    )


def outcome(
    source: events.EventSource,
    message: TaskMessage,
    state: ResultMessage | Retry,
    runtime: float,
) -> dict[str, Any]:
    """The event telling how a run of ``message`` ended: succeeded, failed, retried or
    revoked (terminated)."""
    if isinstance(state, Retry):
        return events.task_retried(
            source,
            task_id=message.id,
            exception=state.exc,
            traceback="".join(traceback.format_exception(state)),
        )
    if state.status is State.SUCCESS:
        return events.task_succeeded(
            source, task_id=message.id, result=state.result, runtime=runtime
        )
    if state.status is State.REVOKED:
        return events.task_revoked(source, task_id=message.id, terminated=True)
    return events.task_failed(
        source,
        task_id=message.id,
        exception=_exception_repr(state.result),
        traceback=state.traceback or "",
    )


def _exception_repr(result: Any) -> str:
    # Celery's repr(exc) from the FAILURE state's parts: ValueError('boom').
    if not isinstance(result, dict):
        return repr(result)
    arguments = ", ".join(repr(a) for a in result.get("exc_message") or [])
    return f"{result.get('exc_type', 'Exception')}({arguments})"
