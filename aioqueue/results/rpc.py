"""The ``rpc://`` result backend: states arrive on this client's own reply queue.

Every task message this client sends carries ``reply_to`` = the reply queue and
``correlation_id`` = the task id; the worker publishes each state there. The queue is
durable with ``x-expires`` rather than exclusive, so states published while this client
is reconnecting wait for it; RabbitMQ deletes the queue once the client has been gone
for ``reply_queue_expires`` seconds, and :meth:`RpcBackend.aclose` deletes it at once.
A backend opened again after :meth:`RpcBackend.aclose` (a second ``async with app``,
another event loop) starts a new reply queue, and so does the next send once the queue
cannot be consumed again (deleted, or a classic queue whose cluster node is down): the
waiters of results sent to it fail with :class:`BrokerConnectionError`.

With ``persistent`` (``App(result_persistent=True)``) states also survive a broker
restart: the reply queue is a quorum queue, which keeps every message on disk whatever
its delivery mode, so this holds for states from any worker, Celery's included (whose
results are transient by default); and states are acknowledged only once taken in, so
one in flight when the connection drops is delivered again. (A classic queue with
persistent messages would need every worker to publish states with delivery mode 2.)

Waiters are futures keyed by task id; :meth:`RpcBackend.aclose` fails the pending ones,
so no caller hangs on a closed client. States nobody has asked for yet are kept for
``unclaimed_ttl`` seconds and at most ``max_unclaimed`` of them, so a client that sends
without ever reading results does not grow without bound. A state arriving for a task
whose final state a caller has read already (a worker published it again, its confirm
lost with its connection) is ignored: the caller is told once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable

from pydantic import ValidationError

from ..exceptions import (
    AioQueueError,
    BrokerConnectionError,
    BrokerError,
    MessageError,
    ResultTimeoutError,
)
from ..message import ResultMessage
from ..result import rebuild_exception
from ..serialization import Codec
from ..topology import reply_queue
from ..transport.base import Consumer, Delivery, QueueSpec, Transport

__all__ = ("RpcBackend",)

log = logging.getLogger("aioqueue.results")


class RpcBackend:
    """Result backend over a per-client reply queue.

    :param transport: the connected transport to consume from.
    :param codec: decodes result bodies.
    :param exception_modules: modules whose exception types are rebuilt on failure.
    :param max_unclaimed: states kept for results nobody has asked for yet; beyond it
        the oldest are dropped (with a warning).
    :param unclaimed_ttl: seconds such a state is kept; older ones are dropped.
    :param reply_queue_expires: seconds RabbitMQ keeps the queue after this client left.
    :param persistent: states survive a broker restart (see the module's docstring).
    """

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        *,
        exception_modules: Callable[[], Iterable[str]],
        max_unclaimed: int = 100_000,
        unclaimed_ttl: float = 3_600.0,
        reply_queue_expires: float = 600.0,
        persistent: bool = False,
    ) -> None:
        self._transport = transport
        self._codec = codec
        self._exception_modules = exception_modules
        self._max_unclaimed = max_unclaimed
        self._unclaimed_ttl = unclaimed_ttl
        self._expires = reply_queue_expires
        self._persistent = persistent
        self._spec = self._new_queue()
        # task id -> (monotonic time it arrived, state), oldest first.
        self._states: OrderedDict[str, tuple[float, ResultMessage]] = OrderedDict()
        self._next_prune = 0.0
        # Task ids whose final state a caller has read (oldest first, bounded like the
        # unclaimed states): a state arriving for one again is a duplicate.
        self._resolved: OrderedDict[str, None] = OrderedDict()
        # One future per waiting caller, so that one timing out or being cancelled
        # leaves the others alone.
        self._waiters: dict[str, list[asyncio.Future[ResultMessage]]] = {}
        self._consumer: Consumer | None = None
        self._watcher: asyncio.Task[None] | None = None
        # Created inside the running loop: the backend may be opened again in another.
        self._starting: asyncio.Lock | None = None
        self._closed = False

    @property
    def reply_to(self) -> str:
        """The reply queue task messages name."""
        return self._spec.name

    async def start(self) -> None:
        """Declare the reply queue and start consuming it (idempotent)."""
        if self._consumer is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._consumer is not None:
                return
            if self._closed:
                # Opened again: a new queue, so nothing meant for the last one is mixed in.
                self._spec = self._new_queue()
                self._closed = False
            await self._transport.declare_queue(self._spec)
            consumer = await self._transport.consume(
                self.reply_to, self._on_delivery, prefetch=1000, no_ack=not self._persistent
            )
            self._consumer = consumer
            self._watcher = asyncio.get_running_loop().create_task(self._watch(consumer))

    async def _watch(self, consumer: Consumer) -> None:
        """Once the reply queue cannot be consumed again (deleted, or a classic queue
        whose cluster node is down), results sent to it cannot arrive: fail their
        waiters, and let the next send start a new queue rather than wait for nothing."""
        error = await consumer.wait_lost()
        if self._consumer is not consumer:
            return
        lost = self.reply_to
        self._consumer = None
        self._spec = self._new_queue()
        log.error("results sent to %s cannot arrive (%s); a new reply queue follows", lost, error)
        self._fail_waiters(f"reply queue {lost!r} was lost: {error}")

    def _new_queue(self) -> QueueSpec:
        spec = reply_queue(str(uuid.uuid4()), self._expires)
        if not self._persistent:
            return spec
        return QueueSpec(spec.name, arguments={**spec.arguments, "x-queue-type": "quorum"})

    async def aclose(self) -> None:
        """Stop consuming, delete the reply queue and fail every pending waiter."""
        self._closed = True
        self._starting = None
        consumer, self._consumer = self._consumer, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        self._fail_waiters("the app was closed")
        self._states.clear()
        if consumer is not None:
            try:
                await consumer.close()
                await self._transport.delete_queue(self.reply_to)
            except AioQueueError as exc:
                log.debug("reply queue cleanup: %s", exc)

    def _fail_waiters(self, why: str) -> None:
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BrokerConnectionError(why))
        self._waiters.clear()

    def state(self, task_id: str) -> ResultMessage | None:
        kept = self._states.get(task_id)
        return kept[1] if kept is not None else None

    async def wait(self, task_id: str, timeout: float | None) -> ResultMessage:
        seen = self.state(task_id)
        if seen is not None and seen.status.ready:
            return seen
        if self._closed:
            raise BrokerConnectionError("the app was closed")
        future: asyncio.Future[ResultMessage] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        try:
            if timeout is None:
                return await future
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise ResultTimeoutError(task_id, timeout or 0.0) from None
        finally:
            if not future.done():
                self._discard_waiter(task_id, future)

    def _discard_waiter(self, task_id: str, future: asyncio.Future[ResultMessage]) -> None:
        futures = self._waiters.get(task_id, [])
        if future in futures:
            futures.remove(future)
        if not futures:
            self._waiters.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        kept = self._states.pop(task_id, None)
        if kept is not None and kept[1].status.ready:
            # A worker may publish a final state twice (its confirm lost with its
            # connection): the caller has had one, a second is not kept for nobody.
            self._resolved[task_id] = None
            while len(self._resolved) > self._max_unclaimed:
                self._resolved.popitem(last=False)

    def rebuild(self, message: ResultMessage) -> BaseException:
        return rebuild_exception(message, self._exception_modules())

    async def _on_delivery(self, delivery: Delivery) -> None:
        try:
            self._accept(delivery)
        except MessageError as exc:
            log.error("dropping unreadable result on %s: %s", self.reply_to, exc)
        try:
            await delivery.ack()
        except BrokerError as exc:
            # The connection went under it (persistent states are acked): the broker
            # delivers the state again, and a copy of a state taken in changes nothing.
            log.debug("ack on %s failed (%s); the state comes again", self.reply_to, exc)

    def _accept(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        body = self._codec.decode(envelope.body, envelope.content_type)
        if isinstance(body, dict) and "task_id" not in body and envelope.correlation_id:
            body = {**body, "task_id": envelope.correlation_id}
        try:
            message = ResultMessage.model_validate(body)
        except ValidationError as exc:
            raise MessageError(f"not a result message: {exc.errors()[0]['msg']}") from None
        if message.task_id in self._resolved:
            log.debug("ignoring another state of task %s, resolved already", message.task_id)
            return
        # Every state is kept until the caller reads it (AsyncResult.get forgets it):
        # the final one may arrive before anybody waits, or after a waiter timed out.
        now = time.monotonic()
        self._states[message.task_id] = (now, message)
        self._states.move_to_end(message.task_id)
        if message.status.ready:
            for future in self._waiters.pop(message.task_id, ()):
                if not future.done():
                    future.set_result(message)
        self._prune(now)

    def _prune(self, now: float) -> None:
        states = self._states
        if len(states) <= self._max_unclaimed and now < self._next_prune:
            return
        # Ageing is checked at most a few times a second, not for every result.
        self._next_prune = now + min(self._unclaimed_ttl, 1.0) / 4
        while len(states) > self._max_unclaimed:
            dropped, _ = states.popitem(last=False)
            log.warning("dropping unclaimed result of task %s (max_unclaimed reached)", dropped)
        # Oldest first: stop at the first one still young enough.
        while states:
            task_id, (arrived, _) = next(iter(states.items()))
            if now - arrived < self._unclaimed_ttl:
                break
            del states[task_id]
            log.warning(
                "dropping unclaimed result of task %s (older than %g s)", task_id, now - arrived
            )
