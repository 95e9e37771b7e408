"""The worker: consumes queues, runs tasks, reports results, acks last.

For every delivery, in this order: decode and check it (bad input is dead-lettered to
``<queue>.dlq`` and, when the message names a ``reply_to``, the caller gets a FAILURE
instead of waiting forever); report it REVOKED if it was revoked (``revocations.py``;
the worker's ``pidbox.py`` receives the revocations); move it to a delay bucket if it
is not due yet; run the task; publish its outcome (its state, what follows it in a
workflow) and wait for the broker's confirms; only then ack. A worker that dies before
the ack loses nothing: the broker redelivers the message.

Every delivery ends in a defined outcome:

- acked, once its outcome is confirmed;
- returned to its queue (rejected with requeue) when the connection went or the broker
  did not confirm in time: it runs again, here or elsewhere;
- dead-lettered with the reason when it is bad input, or when its outcome could not be
  published on a healthy connection after the retries of ``outcome_backoff`` (a link to
  a missing exchange, a refused chord commit); the promises waiting further down the
  workflow are told it failed.

The worker depends on the broker layer and the task registry only, never on the app.
Concurrency is the number of tasks in flight; each queue's prefetch follows it so the
broker never hands this worker more than it can start. Stopping cancels the consumers
first, lets running tasks finish within ``shutdown_timeout``, cancels the rest, then
closes the consumers' channels, so whatever is still unacked returns to its queue.
A consumer the broker stops (its queue deleted) or that cannot resume after a
reconnection makes :meth:`Worker.wait_failed` return: a worker that consumes nothing
must not look alive.

A task that finishes after its channel died cannot be acked, and the broker redelivers
it, usually to this same worker once it has reconnected. The worker remembers the
outcome of the tasks it concluded lately (``finished.py``, which lists the duplicates
that can still happen): such a redelivery is not run again, only what was not confirmed
is done again (its outcome and follow-ups published, when their confirms were lost),
then it is acked. A redelivery that arrives while the first copy still runs here waits
for it. With a ``health_file``, the worker touches that file every ``health_interval``
seconds while the broker shows every queue it consumes with a consumer, and leaves it
alone otherwise, so that a probe reading its age sees a worker that consumes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from .. import events, request
from ..broker import Broker
from ..exceptions import (
    AioQueueError,
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    EncodeError,
    MessageError,
    PartialPublishError,
    PublishError,
    Retry,
)
from ..message import ResultMessage, State, TaskMessage, utc_now
from ..ratelimit import TokenBucket
from ..registry import Registry
from ..request import DeliveryInfo, Request
from ..routing import Route, delay_bucket_ms
from ..task import Task
from ..topology import (
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    ORIGIN_HEADER,
    REDELIVERIES_HEADER,
    Broadcast,
    Destination,
    chord_run_lease,
)
from ..transport.base import Consumer, Delivery, Envelope, Publish
from . import chord, execute, tasklog
from . import events as worker_events
from .blocking import BlockWatch
from .completion import Followups, followups
from .events import WorkerEvents
from .finished import DEFAULT_CAPACITY, FinishedTasks
from .inspection import WorkerView, broker_info
from .limits import ThreadSlots
from .pidbox import Pidbox, default_hostname
from .retry import Backoff
from .revocations import Revocations

__all__ = ("Worker",)

log = logging.getLogger("aioqueue.worker")

_OUTCOME_BACKOFF = Backoff()
# Seconds a rate-limited task may wait here; beyond it waits in the broker's delay queues.
_MAX_RATE_WAIT_S = 1.0
# How long a copy of a chord-fired message waits while another copy runs.
_COPY_RECHECK_MS = 1024


class _Settled:
    """A delivery acked already (a task with ``acks_late=False``): settling it again
    does nothing."""

    def __init__(self, delivery: Delivery) -> None:
        self.envelope = delivery.envelope
        self.queue = delivery.queue
        self.redelivered = delivery.redelivered

    async def ack(self) -> None:
        pass

    async def reject(self, *, requeue: bool) -> None:
        pass


class Worker:
    """Runs registered tasks from one or more queues.

    Usually made by ``app.worker(...)``; use it as ``async with worker:``.

    :param broker: the broker layer it consumes from and publishes through.
    :param registry: the tasks it can run.
    :param queues: names, :class:`~aioqueue.Queue` or :class:`~aioqueue.Broadcast`
        objects (default: the default queue and every queue and broadcast the app
        defines); a name the app does not define is a queue of the default shape.
    :param exclude: names not to consume (Celery's ``-X``).
    :param concurrency: tasks in flight at once; sync tasks run in a pool of as many
        threads (a sync task past its time limit keeps its thread until it returns).
    :param prefetch: unacked messages per queue (default: ``concurrency``).
    :param shutdown_timeout: seconds running tasks may take to finish when stopping.
    :param max_redeliveries: a message redelivered more often (its worker died or
        lost its connection each time) goes to the ``.dlq`` instead of running again.
    :param outcome_backoff: how often publishing a task's outcome is retried on a
        healthy connection before the message is dead-lettered.
    :param hostname: the worker's name for remote control (Celery's nodename, e.g.
        ``worker1@host``); unique among running workers. Default: unique per worker,
        ``aioqueue.<id>@<host>``.
    :param revoke_expires: seconds a revocation this worker records is kept.
    :param block_warning: an async task that blocks the event loop longer than this
        many seconds is named in a WARNING (0: not watched; ``aioqueue.worker.blocking``).
    :param finished_records: task ids whose outcome the worker remembers, so that a
        redelivery of a task it finished (its ack lost with the connection) is not run
        again (``aioqueue.worker.finished``); 0 remembers none.
    :param health_file: a file touched every ``health_interval`` seconds while every
        queue is consumed, left to age otherwise (for container probes).
    :param health_interval: seconds between two touches of ``health_file``.
    :param events: send Celery-format events (``-E``) on ``celeryev`` for Flower and
        ``celery events``; sent in the background, never failing or delaying a task.
    """

    def __init__(
        self,
        broker: Broker,
        registry: Registry,
        *,
        queues: Iterable[str | Destination] | None = None,
        exclude: Iterable[str] = (),
        concurrency: int = 100,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
        max_redeliveries: int = 5,
        outcome_backoff: Backoff = _OUTCOME_BACKOFF,
        hostname: str | None = None,
        revoke_expires: float = 10_800.0,
        block_warning: float = 0.1,
        finished_records: int = DEFAULT_CAPACITY,
        health_file: str | os.PathLike[str] | None = None,
        health_interval: float = 5.0,
        events: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if health_interval <= 0:
            raise ValueError("health_interval must be a positive number of seconds")
        self.broker = broker
        self.registry = registry
        given = list(queues or ())
        chosen = broker.topology.consumed(
            [q if isinstance(q, str) else q.name for q in given], exclude
        )
        objects = {q.name: q for q in given if not isinstance(q, str)}
        self.queues: list[Destination] = [objects.get(q.name, q) for q in chosen]
        # A broadcast's queue of this worker is named with this, unique per worker.
        self.id = uuid.uuid4().hex[:12]
        self.concurrency = concurrency
        self.prefetch = prefetch or concurrency
        self.shutdown_timeout = shutdown_timeout
        self.outcome_backoff = outcome_backoff
        self.max_redeliveries = max_redeliveries
        self.processed = 0
        # Per task name, for ``inspect stats`` (Celery's ``total``).
        self._totals: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        #: The worker's name; its pidbox queue is ``<hostname>.celery.pidbox``.
        self.hostname: str = hostname or default_hostname(self.id)
        # What is revoked (read for every message) and the running tasks a terminate
        # cancels; the pidbox applies the revoke commands.
        self.revocations = Revocations(broker.transport, expires=revoke_expires)
        # What the pidbox answers inspect commands from; the worker keeps it current.
        transport = broker.transport
        self._view = WorkerView(
            tasks=registry.user_tasks,
            concurrency=concurrency,
            totals=lambda: self._totals,
            broker=broker_info(
                getattr(transport, "nodes", ()),
                connect_timeout=getattr(transport, "connect_timeout", None),
            ),
            hostname=self.hostname,
            prefetch=self.prefetch,
            decode=lambda envelope: execute.decode(envelope, broker.codec),
            queues=lambda: [(n, self._queue(n)) for n in self._consuming],
        )
        self._pidbox = Pidbox(broker, self.revocations, self.hostname, self._view, self)
        self._by_name = {q.name: q for q in self.queues}
        self._threads = ThreadSlots(concurrency)
        self._consumers: list[Consumer] = []
        # The consumer of each queue consumed now (cancel_consumer takes it out).
        self._by_consumer: dict[str, Consumer] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[Any]] = set()
        self._failure: BrokerError | None = None
        # Made again in start(): asyncio primitives belong to the first loop that waits
        # on them, and a worker may run again in another loop.
        self._slots = asyncio.Semaphore(concurrency)
        self._idle = asyncio.Event()
        self._hurry = asyncio.Event()
        self._failed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._shutdown = asyncio.Event()
        # A stop that remote control's shutdown started (stop() then waits for it).
        self._stopping: asyncio.Task[None] | None = None
        self._closing = False  # stop() has begun: no consumer is added any more
        self._changing = asyncio.Lock()  # add_consumer / cancel_consumer, one at a time
        # Whether task events are logged (INFO): read once, in start().
        self._info = log.isEnabledFor(logging.INFO)
        self._block_watch = (
            BlockWatch(block_warning, Worker._run.__code__, _running_task)
            if block_warning > 0
            else None
        )
        self._consuming: list[str] = []
        self._finished = FinishedTasks(finished_records)
        # Task id -> the asyncio task processing its message here: a redelivery of it
        # waits for that one to end, then reads the record.
        self._in_progress: dict[str, asyncio.Task[Any]] = {}
        self.health_file = None if health_file is None else Path(health_file)
        self.health_interval = health_interval
        # Celery-format events (-E); None when off, so each hook costs one attribute check.
        self._events: WorkerEvents | None = (
            WorkerEvents(
                broker.transport,
                self.hostname,
                active=lambda: len(self._running),
                processed=lambda: self.processed,
            )
            if events
            else None
        )

    async def __aenter__(self) -> Self:
        await self.start()
        self.announce()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, declare each queue's topology (with its ``.dlq``) and start consuming.

        :raises DeclarationConflictError: a queue or exchange exists with other settings.
        :raises BrokerError: a queue cannot be declared or consumed.
        """
        self._slots = asyncio.Semaphore(self.concurrency)
        self._idle, self._hurry = asyncio.Event(), asyncio.Event()
        self._failed, self._stopped = asyncio.Event(), asyncio.Event()
        self._shutdown, self._stopping = asyncio.Event(), None
        self._closing, self._changing = False, asyncio.Lock()
        self._idle.set()
        self._failure = None
        self._info = log.isEnabledFor(logging.INFO)
        await self.broker.connect()
        names = [await self._declare(queue) for queue in self.queues]
        try:
            # Revocations before any task queue: no task runs before the worker knows
            # what is revoked. The pidbox consumes first, so that a command sent while
            # the store is read reaches this worker either way.
            pidbox = await self._pidbox.start()
            self._watchers.add(asyncio.create_task(self._watch(self._pidbox.queue, pidbox)))
            await self.revocations.start()
            for name in names:
                self._keep(name, await self._consume(name))
        except BaseException:
            await self.stop()
            raise
        self._consuming = names
        if self._events is not None:
            await self._events.start()
        if self._block_watch is not None:
            self._block_watch.start()
        if self.health_file is not None:
            # A watcher: stop() cancels it, and the file ages from then on.
            self._watchers.add(asyncio.create_task(self._keep_health(self.health_file)))

    def announce(self) -> None:
        """Log which queues the worker consumes (``async with worker`` does it once
        started; the command line does it after its banner)."""
        log.info("worker consuming %s", ", ".join(self._consuming))

    async def _watch(self, queue: str, consumer: Consumer) -> None:
        error = await consumer.wait_lost()
        log.error("worker stopped consuming %s: %s", queue, error)
        if self._failure is None:
            self._failure = error
        self._failed.set()

    async def wait_failed(self) -> BrokerError:
        """Wait until a queue can no longer be consumed; returns why."""
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    async def wait_shutdown(self) -> None:
        """Wait until remote control asked this worker to shut down (``control
        shutdown``); the worker is stopping by itself then, and :meth:`stop` waits for
        that stop to end."""
        await self._shutdown.wait()

    def request_shutdown(self) -> None:
        """Stop as on SIGTERM, in the background: what remote control's ``shutdown``
        does (:meth:`wait_shutdown` returns, :meth:`wait_stopped` once stopped)."""
        if self._stopping is None:
            self._shutdown.set()
            self._stopping = asyncio.create_task(self.stop())

    async def add_consumer(self, queue: str, definition: Destination | None) -> bool:
        """Declare ``queue`` and consume it, as if it had been given at the start
        (``definition``: its shape; ``None``: the app's definition of that name, or the
        default shape). ``False`` when it is consumed already.

        :raises ConfigurationError: the worker is stopping.
        :raises DeclarationConflictError: it exists with other settings.
        :raises BrokerError: it cannot be declared or consumed.
        """
        # One change of the queues at a time: two commands for one queue add it once.
        async with self._changing:
            if any(q == queue or self._queue(q).name == queue for q in self._consuming):
                return False
            name = await self._declare(definition or self.broker.queue(queue))
            consumer = await self._consume(name)
            if self._closing:
                # stop() began meanwhile, and would not see this consumer.
                await consumer.close()
                raise ConfigurationError(f"worker {self.hostname!r} is stopping: no queue added")
            self._keep(name, consumer)
            self._consuming.append(name)
            return True

    async def _declare(self, destination: Destination) -> str:
        """Declare ``destination`` (a conflict stops the worker: consuming a queue shaped
        otherwise would not do what the app says: priorities, ordering, ...); the name
        of the queue to consume."""
        await self.broker.declare(destination, strict=True)
        name = destination.name
        if isinstance(destination, Broadcast):
            name = await self.broker.declare_worker_queue(destination, self.id)
        self._by_name[name] = destination
        return name

    async def _consume(self, name: str) -> Consumer:
        return await self.broker.transport.consume(name, self._on_delivery, prefetch=self.prefetch)

    def _keep(self, name: str, consumer: Consumer) -> None:
        """Hold ``consumer`` of ``name`` until the worker stops, watched for its loss."""
        self._consumers.append(consumer)
        self._by_consumer[name] = consumer
        self._watchers.add(asyncio.create_task(self._watch(name, consumer)))

    async def cancel_consumer(self, queue: str) -> None:
        """Stop consuming ``queue`` (a name given at the start or added since): no new
        deliveries; what was received from it still runs and is acked.

        :raises ConfigurationError: the worker does not consume it.
        """
        async with self._changing:
            names = [q for q in self._consuming if q == queue or self._queue(q).name == queue]
            if not names:
                consuming = ", ".join(self._consuming) or "none"
                raise ConfigurationError(
                    f"worker {self.hostname!r} does not consume {queue!r} "
                    f"(it consumes: {consuming})"
                )
            for name in names:
                consumer = self._by_consumer.pop(name, None)
                self._consuming.remove(name)
                if consumer is not None:
                    # Closed with the others when the worker stops: what it delivered
                    # runs to its end and is acked on its channel meanwhile.
                    await consumer.cancel()

    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        """Set the rate limit of ``task_name`` (tasks per second; ``None``: none) from
        its next message on. The registry's task is changed: in an embedded worker,
        the app's, for every worker of the process.

        :raises UnknownTaskError: no such task is registered.
        """
        task = self.registry.lookup(task_name)
        task.rate_limit = rate
        self._buckets.pop(task_name, None)

    async def wait_overrun(self) -> None:
        """Wait until a sync task has run past its hard time limit: it failed with
        ``TimeLimitExceeded``, but its thread runs on, as a thread cannot be stopped
        (returns at once if that happened already). A child of ``aioqueue worker
        --processes`` then stops and exits, which ends the thread."""
        await self._threads.wait_overrun()

    def hurry(self) -> None:
        """Make a :meth:`stop` in progress cancel running tasks now (a second signal)."""
        self._hurry.set()

    async def stop(self) -> None:
        """Stop consuming, let running tasks finish (bounded), cancel the rest, and close
        the consumers (what is unacked returns to its queue). While a stop started by
        remote control's ``shutdown`` runs, this waits for it instead."""
        stopping = self._stopping
        if stopping is not None and stopping is not asyncio.current_task():
            await asyncio.shield(stopping)
            return
        await self._stop()

    async def _stop(self) -> None:
        self._closing = True
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        consumers, self._consumers = self._consumers, []
        self._by_consumer = {}
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
            waits = [asyncio.ensure_future(e.wait()) for e in (self._idle, self._hurry)]
            await asyncio.wait(waits, timeout=self.shutdown_timeout, return_when="FIRST_COMPLETED")
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        leftover = list(self._running)
        if leftover:
            log.warning("cancelling %d task(s); their messages return to the queue", len(leftover))
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
        for consumer in consumers:
            try:
                await consumer.close()
            except AioQueueError as exc:
                log.warning("closing consumer: %s", exc)
        # Last: until every task has ended, a terminate may still come for one.
        await self.revocations.aclose()
        await self._pidbox.aclose()
        if self._events is not None:
            await self._events.aclose()
        self._threads.close()
        if self._block_watch is not None:
            self._block_watch.stop()
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
            if self._slots.locked():
                # Received, not started: shown as reserved while it waits for a slot.
                with self._view.waiting(delivery):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
            try:
                await self._process(delivery)
            finally:
                self._slots.release()
        except BrokerConnectionError as exc:
            # The connection went, or the broker did not confirm in time: the message
            # runs again (if the channel is gone, the broker returns it by itself).
            log.error("returning a delivery on %s to its queue: %s", delivery.queue, exc)
            await self._settle(delivery.reject(requeue=True), delivery)
        except Exception as exc:
            log.exception("unexpected error processing a delivery on %s", delivery.queue)
            # Parked rather than left unacked: it would hold a slot until the channel dies.
            error = MessageError(f"unexpected error in the worker: {type(exc).__name__}: {exc}")
            await self._park(delivery, error)
        finally:
            self._running.discard(current)
            if not self._running:
                self._idle.set()

    def _read(
        self, delivery: Delivery
    ) -> tuple[TaskMessage, Task[Any, Any]] | tuple[TaskMessage | None, MessageError]:
        """The delivery's message and its task, or the message (if it decoded) and why it
        cannot be run."""
        try:
            message = execute.decode(delivery.envelope, self.broker.codec)
        except MessageError as exc:
            return None, exc
        if self._info:
            fields = tasklog.fields(message.task, message.id, "received")
            log.info(tasklog.received(message.task, message.id), extra=fields)
        if self._events is not None:
            self._events.task(worker_events.received(self._events.source, message))
        try:
            return message, self.registry.lookup(message.task)
        except MessageError as exc:
            return message, exc

    async def _process(self, delivery: Delivery) -> None:
        message, task = self._read(delivery)
        if isinstance(task, MessageError):
            await self._dead_letter(delivery, task, message)
            return
        assert message is not None
        if await self._finished_already(delivery, message):
            return
        if (revoked := self.revocations.revoked(message)) is not None:
            self._revoked_event(message.id, expired=False)
            # Queued or delayed when it (or its workflow, or its group) was revoked: like
            # an expired task, REVOKED to its caller and down its workflow.
            log.info("task %s[%s] revoked (%s), not run", message.task, message.id, revoked)
            await self._conclude(delivery, message, execute.revoked_state(message.id, "revoked"))
            return
        due = execute.when_due(message.eta, message.expires, utc_now())
        if due.expired:
            expires = message.expires.isoformat() if message.expires else "?"
            log.info("task %s[%s] expired at %s, not run", message.task, message.id, expires)
            state = execute.revoked_state(message.id, "expired", expires)
            self._revoked_event(message.id, expired=True)
            await self._conclude(delivery, message, state)
            return
        if due.delay_bucket_ms is not None:
            await self._delay(delivery, due.delay_bucket_ms)
            return
        if due.wait_s:
            await self._hold(delivery, message, due.wait_s)
        if delivery.redelivered and await self._redelivered_too_often(delivery, message):
            return
        try:
            bound = execute.bind(task, message)
            # A chord member whose body nothing could ever run (a Celery client's chord
            # is joined in that client's result backend) is not run either: its caller
            # and the body's are told why, and the message waits in the .dlq.
            chord.check_joinable(message)
        except MessageError as exc:
            await self._dead_letter(delivery, exc, message)
            return
        if task.rate_limit is not None and await self._rate_limited(delivery, task, message):
            return
        delivery = await self._ack_early(delivery, task)
        group_id = chord.fired_by(message)
        if group_id is not None:
            await self._run_fired(delivery, task, bound, message, group_id)
        else:
            outcome = await self._run(task, bound, message, delivery)
            if isinstance(outcome, Retry):
                await self._retry(delivery, message, outcome)
            else:
                await self._conclude(delivery, message, outcome)
        self.processed += 1
        self._totals[message.task] = self._totals.get(message.task, 0) + 1

    async def _hold(self, delivery: Delivery, message: TaskMessage, wait_s: float) -> None:
        """Wait the last moments before ``message`` is due (shown as scheduled)."""
        with self._view.holding(delivery, message):
            # A millisecond more: uvloop's timers are millisecond-grained and may fire early.
            await asyncio.sleep(wait_s + 0.001)

    def _revoked_event(self, task_id: str, *, expired: bool) -> None:
        if self._events is not None:
            source = self._events.source
            self._events.task(events.task_revoked(source, task_id=task_id, expired=expired))

    def _rejected_events(
        self, delivery: Delivery, error: MessageError, message: TaskMessage | None
    ) -> None:
        assert self._events is not None
        source = self._events.source
        if message is not None:
            task_id: str | None = message.id
        else:
            headers = delivery.envelope.headers
            task_id = _str_or_none(headers.get("id")) or delivery.envelope.correlation_id
        if not task_id:
            return  # an event without a task id would mean nothing to a monitor
        self._events.task(events.task_rejected(source, task_id=task_id, requeue=False))
        if message is not None:
            # Its caller is told FAILURE: so are monitors, as Celery does for an
            # unknown task (task-failed after the rejection).
            self._events.task(
                events.task_failed(source, task_id=task_id, exception=error, traceback="")
            )

    async def _ack_early(self, delivery: Delivery, task: Task[Any, Any]) -> Delivery:
        """The delivery to settle once the task ran: ``delivery``, or for a task with
        ``acks_late=False`` a stand-in, the delivery being acked now, before it runs."""
        if task.acks_late:
            return delivery
        # At most once, as the task asks: acked before it runs.
        await self._ack(delivery)
        return _Settled(delivery)

    async def _redelivered_too_often(self, delivery: Delivery, message: TaskMessage) -> bool:
        """Count a redelivery; dead-letter a message redelivered more than
        ``max_redeliveries`` times (it may be what kills its workers). Returns whether
        this delivery was dealt with here.

        A quorum queue counts deliveries itself (``x-delivery-count``). On a classic
        queue the worker counts them in a header of a copy it publishes in place of the
        redelivered message (confirmed before the original is acked).
        """
        headers = delivery.envelope.headers
        counted = headers.get("x-delivery-count")
        if isinstance(counted, int):
            if counted <= self.max_redeliveries:
                return False
            count = counted
        else:
            count = _int_or_zero(headers.get(REDELIVERIES_HEADER)) + 1
            if count <= self.max_redeliveries:
                envelope = replace(
                    delivery.envelope, headers={**headers, REDELIVERIES_HEADER: count}
                )
                route = Route("", delivery.queue, (self._queue(delivery.queue),))
                await self.broker.publish_envelope(envelope, route)
                await self._ack(delivery)
                return True
        error = MessageError(
            f"task {message.task}[{message.id}] was redelivered {count} times (more than "
            f"max_redeliveries={self.max_redeliveries}): it may be killing its workers"
        )
        await self._dead_letter(delivery, error, message)
        return True

    async def _rate_limited(
        self, delivery: Delivery, task: Task[Any, Any], message: TaskMessage
    ) -> bool:
        """Wait for the task's rate limit; a long wait is spent in the broker's delay
        queues instead, so the message is not held here. Returns whether it was."""
        assert task.rate_limit is not None
        bucket = self._buckets.get(task.name)
        if bucket is None:
            bucket = self._buckets[task.name] = TokenBucket(task.rate_limit)
        now = time.monotonic()
        wait = bucket.wait(now)
        if wait > _MAX_RATE_WAIT_S:
            bucket_ms = delay_bucket_ms(wait * 1000)
            if bucket_ms is not None:
                await self._delay(delivery, bucket_ms)
                return True
        wait = bucket.take(now)
        if wait > 0:
            with self._view.waiting(delivery, message):
                await asyncio.sleep(wait)
        return False

    async def _retry(self, delivery: Delivery, message: TaskMessage, retry: Retry) -> None:
        """Publish the next attempt (into the delay queues), tell the caller RETRY, then
        ack: confirmed before the ack, so nothing is lost in between."""
        now = utc_now()
        attempt = execute.next_attempt(message, retry, now)
        attempt.extra_headers.pop(REDELIVERIES_HEADER, None)
        assert attempt.eta is not None
        if self._info:
            fields = tasklog.fields(message.task, message.id, "retried")
            log.info(tasklog.retried(message.task, message.id, attempt.eta, retry), extra=fields)
        bucket = delay_bucket_ms((attempt.eta - now).total_seconds() * 1000)
        route = Route("", delivery.queue, (self._queue(delivery.queue),), bucket)

        try:
            await self._retrying(
                f"retry of task {message.id}", lambda: self.broker.publish(attempt, route)
            )
            await self._report(message, execute.retry_state(message, retry))
        except BrokerConnectionError:
            raise
        except BrokerError as exc:
            await self._abandon(delivery, message, exc)
            return
        await self._ack(delivery)

    async def _run_fired(
        self,
        delivery: Delivery,
        task: Task[Any, Any],
        bound: tuple[tuple[Any, ...], dict[str, Any]],
        message: TaskMessage,
        group_id: str,
    ) -> None:
        """A message a chord's firing published: run it unless a copy of it ran
        (``aioqueue.worker.chord`` says why there may be copies)."""
        lease = await self.broker.transport.acquire_lease(chord_run_lease(message.id))
        if lease is None:
            # A copy runs elsewhere right now: this one looks again a little later.
            await self._delay(delivery, _COPY_RECHECK_MS)
            return
        try:
            if await chord.body_ran(self.broker, group_id, message.id):
                log.warning(
                    "task %s[%s] of chord %s ran already; not again",
                    message.task,
                    message.id,
                    group_id,
                )
                await self._ack(delivery)
                return
            state = await self._run(task, bound, message, delivery)
            if isinstance(state, Retry):
                await self._retry(delivery, message, state)
                return

            async def record() -> None:
                await chord.mark_body_ran(self.broker, group_id, message.id)

            await self._conclude(delivery, message, state, before_ack=record)
        finally:
            await lease.release()

    async def _conclude(
        self,
        delivery: Delivery,
        message: TaskMessage,
        state: ResultMessage,
        *,
        before_ack: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Publish the outcome, then ack; an outcome that cannot be published on a
        healthy connection dead-letters the message (the module docstring says why)."""
        # Written out rather than shared with _retry: the hot path, one frame less.
        # A chord-fired task (before_ack) is not recorded: its run mark decides.
        record = before_ack is None
        try:
            await self._finish(message, state)
            if before_ack is not None:
                await self._retrying(f"record of task {message.id}", before_ack)
        except BrokerConnectionError:
            if record:
                # Its redelivery publishes this outcome instead of running the task.
                self._finished.record(message.id, state, confirmed=False)
            raise
        except BrokerError as exc:
            await self._abandon(delivery, message, exc)
            return
        if record:
            # Before the ack: if the ack is lost, the redelivery is only acked.
            self._finished.record(message.id, state, confirmed=True)
        await self._ack(delivery)

    async def _finished_already(self, delivery: Delivery, message: TaskMessage) -> bool:
        """Deal with a redelivery of a task concluded here: ack it, after publishing its
        outcome if that was not confirmed. Returns whether it was such a redelivery;
        if not, the message is noted as processed here until its handler ends."""
        if not _maybe_copy(delivery):
            self._track(message.id)
            return False
        running = self._in_progress.get(message.id)
        if running is not None and running is not asyncio.current_task():
            # The first copy still runs here (its channel died under it): its outcome
            # decides what this copy does.
            await asyncio.wait((running,))
        finished = self._finished.get(message.id)
        if finished is None:
            self._track(message.id)
            return False
        if finished.confirmed:
            log.info(
                "task %s[%s] finished here already; acking its redelivery",
                message.task,
                message.id,
            )
            await self._ack(delivery)
        else:
            log.info(
                "task %s[%s] finished here already; publishing its outcome again",
                message.task,
                message.id,
            )
            await self._conclude(delivery, message, finished.state)
        return True

    def _track(self, task_id: str) -> None:
        """Note that the current asyncio task processes ``task_id`` (until it ends)."""
        current = asyncio.current_task()
        assert current is not None
        known = self._in_progress.get(task_id)
        if known is not None and not known.done():
            return  # a copy of a message processed here already: that one is tracked

        def untrack(task: asyncio.Task[Any]) -> None:
            if self._in_progress.get(task_id) is task:
                del self._in_progress[task_id]

        self._in_progress[task_id] = current
        current.add_done_callback(untrack)

    async def _keep_health(self, path: Path) -> None:
        """Touch ``path`` every ``health_interval`` seconds while every queue is consumed."""
        while True:
            if await self._consuming_all():
                try:
                    await asyncio.to_thread(path.touch)
                except OSError as exc:
                    log.warning("cannot touch the health file %s: %s", path, exc)
            await asyncio.sleep(self.health_interval)

    async def _consuming_all(self) -> bool:
        """Whether the broker shows a consumer on every queue this worker consumes
        (asked, not assumed: a connection lost or a consumer cancelled shows here)."""
        if self._failed.is_set():
            return False
        try:
            async with asyncio.timeout(self.health_interval):
                for name in self._consuming:
                    state = await self.broker.transport.inspect_queue(name)
                    if state is None or state.consumers < 1:
                        return False
        except (TimeoutError, AioQueueError):
            return False
        return True

    async def _finish(self, message: TaskMessage, state: ResultMessage) -> None:
        """Publish what follows the task together with its result; then its chord part."""
        if not (message.chain or message.callbacks or message.errbacks or message.chord):
            await self._report(message, state)  # the common case: a task on its own
            return
        codec = self.broker.codec
        try:
            todo = followups(message, state, codec)
        except AioQueueError as exc:
            # The workflow after this task cannot be continued: the task fails.
            state = execute.failure_state(message.id, exc)
            todo = followups(message, state, codec)
        if not todo.tasks.messages and not todo.states:
            await self._report(message, state)
        elif _reply_queue(message) is None:
            await self._continue(message, todo)  # a chain's earlier step: no result to send
        else:
            if todo.tasks.messages and state.status is State.SUCCESS:
                # Celery's children are what a success set off; errbacks are not.
                state = state.model_copy(update={"children": todo.children()})
            # What follows goes out first: the next step of a chain is the workflow's
            # critical path, the result is not. Both are confirmed before the ack.
            await _together(self._continue(message, todo), self._report(message, state))
        if message.chord is not None:
            await self._record_member(message, state)
        for member in todo.chord_members:
            await self._record_member(member, state.model_copy(update={"task_id": member.id}))

    async def _record_member(self, member: TaskMessage, state: ResultMessage) -> None:
        what = f"chord part of task {member.id}"
        await self._retrying(what, lambda: self._record_part(member, state))

    async def _continue(self, message: TaskMessage, todo: Followups) -> None:
        pending = todo.tasks

        async def attempt() -> None:
            nonlocal pending
            try:
                if pending.messages:
                    await self.broker.publish_plan(pending)
            except PartialPublishError as exc:
                # Only what was not sent is sent again: the rest must not run twice.
                pending = replace(
                    pending, messages=[o for o in pending.messages if o.message.id in exc.failed]
                )
                raise
            pending = replace(pending, messages=[])
            await self._send_states(todo.states)

        await self._retrying(f"what follows task {message.task}[{message.id}]", attempt)

    async def _send_states(self, states: list[Publish]) -> None:
        for p in states:
            await self.broker.send(p.envelope, p.routing_key)

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run ``attempt``, again after a failure on a healthy connection, bounded."""
        delays = self.outcome_backoff.delays()
        for tries, delay in enumerate([*delays, None], start=1):
            try:
                await attempt()
                return
            except BrokerConnectionError:
                raise
            except BrokerError as exc:
                if delay is None:
                    raise PublishError(f"{what}: not published after {tries} tries: {exc}") from exc
                log.warning("%s: publish failed (%s); trying again in %g s", what, exc, delay)
                await asyncio.sleep(delay)

    async def _record_part(self, message: TaskMessage, state: ResultMessage) -> None:
        try:
            await chord.record_part(self.broker, message, state)
        except MessageError as exc:
            # The chord cannot be tracked (e.g. a Celery client's chord has no
            # chord_size): its promise fails now rather than never.
            log.error("chord of task %s[%s]: %s", message.task, message.id, exc)
            body = message.chord or {}
            body_id = str((body.get("options") or {}).get("task_id"))
            failure = execute.failure_state(body_id, exc)
            await self._send_states(execute.failure_fanout(self.broker.codec, body, failure))

    async def _run(
        self,
        task: Task[Any, Any],
        bound: tuple[tuple[Any, ...], dict[str, Any]],
        message: TaskMessage,
        delivery: Delivery,
    ) -> ResultMessage | Retry:
        """Call the task as ``message`` asks; its state, or the retry it asked for.

        It runs where a ``revoke(terminate=True)`` covering ``message`` finds it: so
        cancelled, the task is REVOKED ``["terminated"]``.
        """
        hard, soft = message.timelimit
        hard = hard or task.options.time_limit
        soft = soft or task.options.soft_time_limit
        if task.track_started:
            await self._report(message, execute.started_state(message, self.hostname))
        token = request.enter(self._request, message, bound, delivery)
        running = self.revocations.running(message)
        outcome: ResultMessage | Retry
        if self._events is not None:
            self._events.task(events.task_started(self._events.source, task_id=message.id))
        started = time.perf_counter()
        try:
            with running, self._view.running(message, delivery):
                value = await execute.call_with_limit(task, bound, self._threads, hard, soft)
            # A result that cannot travel fails the task here, before anything is sent.
            if not running.terminated and _sends_result(message):
                self.broker.codec.encode(value)
        except Retry as retry:
            outcome = retry
        except EncodeError as exc:
            error = EncodeError(f"task {message.task!r} returned an unserialisable result: {exc}")
            duration = time.perf_counter() - started
            fields = tasklog.fields(message.task, message.id, "failed", duration)
            log.error(tasklog.unserialisable(message.task, message.id, exc), extra=fields)
            outcome = execute.failure_state(message.id, error)
        except Exception as exc:
            outcome = self._after_error(task, message, exc, time.perf_counter() - started)
        else:
            outcome = execute.success_state(message, None if running.terminated else value, [])
            if self._info and not running.terminated:
                duration = time.perf_counter() - started
                fields = tasklog.fields(message.task, message.id, "succeeded", duration)
                line = tasklog.succeeded(message.task, message.id, duration, value)
                log.info(line, extra=fields)
        finally:
            request.leave(token)
        if self._events is not None:
            duration = time.perf_counter() - started
            event = worker_events.outcome(self._events.source, message, outcome, duration)
            self._events.task(event)
        if running.terminated:
            # Whatever the task did once cancelled (returned, raised), it was terminated.
            log.info("task %s[%s] terminated by a revoke", message.task, message.id)
            return execute.revoked_state(message.id, "terminated")
        return outcome

    def _after_error(
        self, task: Task[Any, Any], message: TaskMessage, exc: Exception, duration: float
    ) -> ResultMessage | Retry:
        """What a task that raised ``exc`` comes to: a retry, if its policy says so."""
        policy = task.retry_policy
        if isinstance(exc, policy.autoretry_for) and policy.retries_left(message.retries):
            return Retry(policy.countdown(message.retries), exc)
        fields = tasklog.fields(message.task, message.id, "failed", duration)
        log.error(tasklog.failed(message.task, message.id, exc), exc_info=exc, extra=fields)
        return execute.failure_state(message.id, exc)

    def _request(
        self,
        message: TaskMessage,
        bound: tuple[tuple[Any, ...], dict[str, Any]],
        delivery: Delivery,
    ) -> Request:
        return Request(
            id=message.id,
            task=message.task,
            args=bound[0],
            kwargs=bound[1],
            retries=message.retries,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
            group_index=message.group_index,
            eta=message.eta,
            expires=message.expires,
            reply_to=message.reply_to,
            delivery_info=DeliveryInfo(delivery.queue, redelivered=delivery.redelivered),
            hostname=self.hostname,
            priority=message.priority,
            headers=message.extra_headers,
        )

    async def _report(self, message: TaskMessage, state: ResultMessage) -> None:
        """Send ``state`` to the caller, if it asked for results."""
        reply_to = _reply_queue(message)
        if reply_to is None:
            return
        if message.group is not None or message.parent_id is not None:
            # Celery's results name the task's group and parent when it has them.
            state = state.model_copy(
                update={"group_id": message.group, "parent_id": message.parent_id}
            )
        codec = self.broker.codec
        envelope = Envelope(
            body=codec.encode(state.body()),
            content_type=codec.content_type,
            content_encoding=codec.content_encoding,
            correlation_id=message.id,
            persistent=False,
        )
        # Not mandatory: a caller that went away (its reply queue gone) wants nothing.
        await self.broker.send(envelope, reply_to)

    async def _ack(self, delivery: Delivery) -> None:
        await self._settle(delivery.ack(), delivery)

    async def _settle(self, settling: Awaitable[None], delivery: Delivery) -> None:
        try:
            await settling
        except BrokerError as exc:
            log.warning(
                "settling on %s failed (%s); the broker will redeliver", delivery.queue, exc
            )

    def _queue(self, name: str) -> Destination:
        return self._by_name.get(name) or self.broker.queue(name)

    async def _delay(self, delivery: Delivery, bucket_ms: int) -> None:
        envelope = delivery.envelope
        # Back to the queue it came from, which may be a worker's broadcast queue.
        route = Route("", delivery.queue, (self._queue(delivery.queue),), bucket_ms)
        await self.broker.publish_envelope(
            replace(envelope, headers=execute.strip_broker_headers(envelope.headers)), route
        )
        await self._ack(delivery)

    async def _to_dlq(self, delivery: Delivery, error: BaseException) -> None:
        """Publish the delivery to its ``.dlq`` with the reason (mandatory, confirmed)."""
        envelope = delivery.envelope
        log.error("dead-lettering a message from %s: %s", delivery.queue, error)
        headers = {
            **envelope.headers,
            ERROR_HEADER: str(error),
            ERROR_TYPE_HEADER: type(error).__name__,
            ORIGIN_HEADER: delivery.queue,
        }
        definition = self._queue(delivery.queue)
        route = Route("", definition.dlq, (definition,))
        await self.broker.publish_envelope(replace(envelope, headers=headers), route)

    async def _park(self, delivery: Delivery, error: BaseException) -> None:
        """Dead-letter and ack; if even that fails, return the message to its queue."""
        try:
            await self._to_dlq(delivery, error)
        except AioQueueError as exc:
            log.error(
                "cannot dead-letter a message from %s (%s); returning it", delivery.queue, exc
            )
            await self._settle(delivery.reject(requeue=True), delivery)
            return
        await self._ack(delivery)

    async def _abandon(self, delivery: Delivery, message: TaskMessage, error: BrokerError) -> None:
        """The outcome cannot be published: dead-letter, tell the waiting promises."""
        failure = execute.failure_state(message.id, error)
        try:
            await self._send_states(
                execute.failure_fanout(self.broker.codec, execute.downstream(message), failure)
            )
        except BrokerError as exc:
            log.warning("task %s: telling the workflow it failed: %s", message.id, exc)
        await self._park(delivery, error)

    async def _dead_letter(
        self, delivery: Delivery, error: MessageError, message: TaskMessage | None = None
    ) -> None:
        """Park bad input in ``<queue>.dlq`` with the reason, tell the caller, ack."""
        await self._to_dlq(delivery, error)
        if self._events is not None:
            self._rejected_events(delivery, error, message)
        if message is not None:
            # A failure like any other (as Celery marks an unknown task): the caller is
            # told, errbacks run, steps chained after it fail, its chord records it.
            await self._conclude(delivery, message, execute.failure_state(message.id, error))
            return
        envelope = delivery.envelope
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
        rows = [("hostname", self.hostname)]
        rows += [("concurrency", f"{self.concurrency} (prefetch {self.prefetch})")]
        rows += [("queue", q.describe()) for q in self.queues]
        return rows


async def _together(*steps: Awaitable[None]) -> None:
    """Run ``steps`` concurrently, each to its end, in one task group; then raise the
    first error (a connection error first: it decides what happens to the message)."""
    errors: list[Exception] = []

    async def run(step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:
            errors.append(exc)

    first, *rest = steps
    async with asyncio.TaskGroup() as group:
        for step in rest:
            group.create_task(run(step))
        await run(first)
    if errors:
        raise next((e for e in errors if isinstance(e, BrokerConnectionError)), errors[0])


def _maybe_copy(delivery: Delivery) -> bool:
    """Whether a delivery may be a second copy of a message: redelivered by the broker,
    or published again by a worker counting redeliveries."""
    return delivery.redelivered or REDELIVERIES_HEADER in delivery.envelope.headers


def _reply_queue(message: TaskMessage) -> str | None:
    """Where this task's states go to its caller, if it asked for them."""
    return None if message.ignore_result else message.reply_to or None


def _sends_result(message: TaskMessage) -> bool:
    """Whether the result leaves this worker: to the caller or into the workflow."""
    return _reply_queue(message) is not None or bool(
        message.chain or message.callbacks or message.chord
    )


def _running_task(frame: FrameType) -> tuple[str, str] | None:
    """The task a frame of :meth:`Worker._run` runs (read by the block watch's thread)."""
    message = frame.f_locals.get("message")
    return (message.task, message.id) if isinstance(message, TaskMessage) else None


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
