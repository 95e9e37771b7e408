"""The worker: consumes queues, runs tasks, reports results, acks last.

For every delivery, in this order: decode and check it (bad input is dead-lettered to
``<queue>.dlq`` and, when the message names a ``reply_to``, the caller gets a FAILURE
instead of waiting forever); move it to a delay bucket if it is not due yet; run the
task; publish its state and wait for the broker's confirm; only then ack. A worker that
dies before the ack loses nothing: the broker redelivers the message.

Concurrency is the number of tasks in flight; each queue's prefetch follows it so the
broker never hands this worker more than it can start. Stopping cancels the consumers
first, lets running tasks finish within ``shutdown_timeout``, then cancels the rest,
whose messages go back to the queue unacked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from ..exceptions import AioQueueError, BrokerError, EncodeError, MessageError
from ..message import ResultMessage, TaskMessage, utc_now
from ..routing import Queue, delay_topology, dlq_name
from ..transport.base import Consumer, Delivery, Envelope
from . import execute
from .chord import record_part
from .completion import followups

if TYPE_CHECKING:
    from ..app import App

__all__ = ("Worker",)

log = logging.getLogger("aioqueue.worker")


class Worker:
    """Runs an app's tasks from one or more queues.

    :param app: the app whose tasks run here.
    :param queues: queue names or :class:`~aioqueue.routing.Queue` objects
        (default: the app's default queue).
    :param concurrency: tasks in flight at once (sync tasks share a thread limiter of
        the same size).
    :param prefetch: unacked messages per queue (default: ``concurrency``).
    :param shutdown_timeout: seconds running tasks may take to finish when stopping.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Iterable[str | Queue] | None = None,
        concurrency: int = 100,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        names = list(queues) if queues is not None else [app.default_queue]
        self.queues = [q if isinstance(q, Queue) else app.queue(q) for q in names]
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency
        self.shutdown_timeout = shutdown_timeout
        self.processed = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._consumers: list[Consumer] = []
        self._running: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopped = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, declare each queue's topology (with its ``.dlq``) and start consuming."""
        await self.app.connect()
        for queue in self.queues:
            await self.app.declare(queue)
        for queue in self.queues:
            consumer = await self.app.transport.consume(
                queue.name, self._on_delivery, prefetch=self.prefetch
            )
            self._consumers.append(consumer)
        log.info("worker consuming %s", ", ".join(q.name for q in self.queues))

    async def stop(self) -> None:
        """Stop consuming, let running tasks finish (bounded), cancel the rest."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            try:
                await consumer.cancel()
            except AioQueueError as exc:
                log.warning("cancelling consumer: %s", exc)
        if self._running:
            log.info(
                "waiting up to %g s for %d running task(s)",
                self.shutdown_timeout,
                len(self._running),
            )
            with anyio.move_on_after(self.shutdown_timeout):
                await self._idle.wait()
        leftover = list(self._running)
        if leftover:
            log.warning("cancelling %d task(s); their messages return to the queue", len(leftover))
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()

    # -- one delivery --------------------------------------------------------------------

    async def _on_delivery(self, delivery: Delivery) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._running.add(current)
        self._idle.clear()
        try:
            async with self._slots:
                await self._process(delivery)
        except BrokerError as exc:
            # The outcome could not be published: leave the message unacked so the
            # broker redelivers it when this channel goes.
            log.error("delivery on %s left unacked: %s", delivery.queue, exc)
        except Exception as exc:
            log.exception("unexpected error processing a delivery on %s", delivery.queue)
            # Parked rather than left unacked: it would hold a slot until the channel dies.
            error = MessageError(f"unexpected error in the worker: {type(exc).__name__}: {exc}")
            try:
                await self._dead_letter(delivery, error)
            except AioQueueError as dead:
                log.error("delivery on %s left unacked: %s", delivery.queue, dead)
        finally:
            self._running.discard(current)
            if not self._running:
                self._idle.set()

    async def _process(self, delivery: Delivery) -> None:
        app = self.app
        try:
            message = execute.decode(delivery.envelope, app.codec)
        except MessageError as exc:
            await self._dead_letter(delivery, exc)
            return
        try:
            task = execute.lookup(app.tasks, message)
        except MessageError as exc:
            await self._dead_letter(delivery, exc, message)
            return
        due = execute.when_due(message.eta, message.expires, utc_now())
        if due.expired:
            log.info("task %s[%s] expired, not run", message.task, message.id)
            await self._finish(message, execute.revoked_state(message.id, "expired"))
            await self._ack(delivery)
            return
        if due.delay_bucket_ms is not None:
            await self._delay(delivery, due.delay_bucket_ms)
            return
        try:
            bound = execute.bind(task, message)
        except MessageError as exc:
            await self._dead_letter(delivery, exc, message)
            return
        state = await self._run(task, bound, message)
        await self._finish(message, state)
        await self._ack(delivery)
        self.processed += 1

    async def _finish(self, message: TaskMessage, state: ResultMessage) -> None:
        """Publish what follows the task together with its result; then its chord part."""
        app = self.app
        if not (message.chain or message.callbacks or message.errbacks or message.chord):
            await self._report(message, state)  # the common case: a task on its own
            return
        try:
            todo = followups(message, state, app.codec)
        except AioQueueError as exc:
            # The workflow after this task cannot be continued: the task fails.
            state = execute.failure_state(message.id, exc)
            todo = followups(message, state, app.codec)
        if not todo.tasks.messages and not todo.states:
            await self._report(message, state)
        else:
            if todo.tasks.messages:
                state = state.model_copy(update={"children": todo.children()})
            # The result and what follows are published together, their confirms
            # awaited at once. What follows goes out first, from this task: the next
            # step of a chain is the workflow's critical path, the result is not.
            report = asyncio.ensure_future(self._report(message, state))
            try:
                await app.publish_plan(todo.tasks)
                for p in todo.states:
                    await app.transport.publish(p.envelope, routing_key=p.routing_key)
            finally:
                await report
        if message.chord is not None:
            await self._record_part(message, state)
        for member in todo.chord_members:
            await self._record_part(member, state.model_copy(update={"task_id": member.id}))

    async def _record_part(self, message: TaskMessage, state: ResultMessage) -> None:
        try:
            await record_part(self.app, message, state)
        except MessageError as exc:
            # The chord cannot be tracked (e.g. a Celery client's chord has no
            # chord_size): its promise fails now rather than never.
            log.error("chord of task %s[%s]: %s", message.task, message.id, exc)
            body = message.chord or {}
            body_id = str((body.get("options") or {}).get("task_id"))
            failure = execute.failure_state(body_id, exc)
            for p in execute.failure_fanout(self.app.codec, body, failure):
                await self.app.transport.publish(p.envelope, routing_key=p.routing_key)

    async def _run(self, task: Any, bound: Any, message: TaskMessage) -> ResultMessage:
        limit = message.timelimit[0] or task.options.time_limit
        try:
            value = await execute.call_with_limit(task, bound, self._limiter, limit)
            # A result that cannot travel fails the task here, before anything is sent.
            if _sends_result(message):
                self.app.codec.encode(value)
        except EncodeError as exc:
            error = EncodeError(f"task {message.task!r} returned an unserialisable result: {exc}")
            return execute.failure_state(message.id, error)
        except Exception as exc:
            log.info("task %s[%s] raised %s: %s", message.task, message.id, type(exc).__name__, exc)
            return execute.failure_state(message.id, exc)
        return execute.success_state(message, value, [])

    async def _report(self, message: TaskMessage, state: ResultMessage) -> None:
        """Send ``state`` to the caller, if it asked for results."""
        if not message.reply_to or message.ignore_result:
            return
        envelope = Envelope(
            body=self.app.codec.encode(state.body()),
            content_type=self.app.codec.content_type,
            content_encoding=self.app.codec.content_encoding,
            correlation_id=message.id,
            persistent=False,
        )
        await self.app.transport.publish(envelope, routing_key=message.reply_to)

    async def _ack(self, delivery: Delivery) -> None:
        try:
            await delivery.ack()
        except BrokerError as exc:
            log.warning("ack on %s failed (%s); the broker will redeliver", delivery.queue, exc)

    async def _delay(self, delivery: Delivery, bucket_ms: int) -> None:
        await self.app.declare_delay(bucket_ms)
        envelope = delivery.envelope
        await self.app.transport.publish(
            replace(envelope, headers=execute.strip_broker_headers(envelope.headers)),
            exchange=delay_topology(bucket_ms)[0].name,
            routing_key=delivery.queue,
        )
        await self._ack(delivery)

    async def _dead_letter(
        self, delivery: Delivery, error: MessageError, message: TaskMessage | None = None
    ) -> None:
        """Park the message in ``<queue>.dlq`` with the reason, tell the caller, ack."""
        envelope = delivery.envelope
        log.error("dead-lettering a message from %s: %s", delivery.queue, error)
        headers = {
            **envelope.headers,
            "x-aioqueue-error": str(error),
            "x-aioqueue-error-type": type(error).__name__,
            "x-aioqueue-queue": delivery.queue,
        }
        await self.app.transport.publish(
            replace(envelope, headers=headers), routing_key=dlq_name(delivery.queue)
        )
        if message is not None:
            # A failure like any other (as Celery marks an unknown task): the caller is
            # told, errbacks run, steps chained after it fail, its chord records it.
            await self._finish(message, execute.failure_state(message.id, error))
            await self._ack(delivery)
            return
        task_id = _str_or_none(envelope.headers.get("id"))
        task_id = task_id or envelope.correlation_id
        reply_to = envelope.reply_to
        ignore = envelope.headers.get("ignore_result")
        if task_id and reply_to and ignore is not True:
            state = execute.failure_state(task_id, error)
            stub = TaskMessage(id=task_id, task="?", reply_to=reply_to)
            await self._report(stub, state)
        await self._ack(delivery)

    # -- description ---------------------------------------------------------------------

    def describe(self) -> list[tuple[str, str]]:
        """What the banner shows, as (label, value) rows."""
        rows = [("concurrency", f"{self.concurrency} (prefetch {self.prefetch})")]
        for q in self.queues:
            route = f"exchange={q.exchange_name} type={q.exchange_type} key={q.binding_key}"
            rows.append(("queue", f"{q.name} ({route})"))
        return rows


def _sends_result(message: TaskMessage) -> bool:
    """Whether the result leaves this worker: to the caller or into the workflow."""
    wants_reply = bool(message.reply_to) and not message.ignore_result
    return wants_reply or bool(message.chain or message.callbacks or message.chord)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
