"""What a worker must not run: revoked task ids, kept in memory and in the broker.

Where revocations live. Each worker keeps the revoked ids it knows in memory
(:class:`RevokedIds`: id -> expiry), which is all the hot path reads: a few dict
lookups per message, none at all while nothing is revoked, never any I/O. The broker's
state store ``REVOKED_STATE`` (one per vhost) keeps them across restarts: clients write
it before they send a ``revoke`` command (``aioqueue.control``), and a worker writes the
commands of Celery clients, which only send to the pidbox. A worker reads the store
when it starts, before it consumes any task queue, and again after a reconnection
(commands sent while it was cut off reached only the store).

What a revocation covers: a message is revoked when its own id, its ``root_id`` (the
first task of its chain or workflow) or its ``group`` (its group or chord header) is.
So revoking a chain's root stops the steps not run yet, and revoking a group's id its
members; Celery's workers look at the id alone, so for them a group is revoked member
by member (``GroupResult.revoke`` sends both).

The window. A revocation is kept ``revoke_expires`` seconds (3 h by default, Celery's
``REVOKE_EXPIRES``) after it was made, by the clock of whoever recorded it; memory
holds at most ``max_size`` ids (Celery's ``REVOKES_MAX``), shedding those that expire
first. Expired ids leave memory once a minute (:meth:`RevokedIds.prune`, pure); the
store is pruned by whoever notices: a reader deletes the expired records it read, and
a worker whose memory just dropped some reads the store to do so while it holds
``REVOKE_SWEEP_LEASE``, which keeps the fleet from all sweeping at once (and each read
also compacts the store's queue).

``terminate=True`` cancels running tasks: the consumer runs each task inside
:meth:`Revocations.running`, a registry of running tasks by id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable
from types import TracebackType

from ..control import decode_revocation, encode_revocation, revocation_key
from ..exceptions import AioQueueError, BrokerConnectionError, BrokerError, MessageError
from ..message import TaskMessage
from ..topology import REVOKE_SWEEP_LEASE, REVOKED_STATE
from ..transport.base import Transport

__all__ = ("Revocations", "RevokedIds", "Running", "sort_records")

log = logging.getLogger("aioqueue.worker")

# A store kept busy by other readers (a fleet starting together) is read again.
_LOAD_ATTEMPTS = 5
_LOAD_DELAY = 0.5


class RevokedIds:
    """Revoked ids and when each stops being revoked (pure: no I/O, the clock given).

    :param clock: the current Unix time.
    :param max_size: ids kept at most; beyond it, those expiring first are dropped.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, max_size: int = 50_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._clock = clock
        self._max_size = max_size
        self._expires: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._expires)

    def __contains__(self, task_id: object) -> bool:
        expires = self._expires.get(task_id)  # type: ignore[call-overload]
        return expires is not None and expires > self._clock()

    def add(self, task_ids: Iterable[str], expires_at: float) -> None:
        """Revoke ``task_ids`` until ``expires_at``; a later expiry already known wins."""
        known = self._expires
        for task_id in task_ids:
            if expires_at > known.get(task_id, float("-inf")):
                known[task_id] = expires_at
        if len(known) > self._max_size:
            # Rare (a flood of revocations): sorting then is cheaper than keeping order.
            by_expiry = sorted(known.items(), key=lambda item: item[1])
            self._expires = dict(by_expiry[len(known) - self._max_size :])

    def match(self, message: TaskMessage) -> str | None:
        """The revoked id that covers ``message`` (its own, its root's or its group's),
        or ``None``. The hot path: at most three dict lookups, none when nothing is
        revoked; the clock is read only on a hit."""
        known = self._expires
        if not known:
            return None
        for key in (message.id, message.root_id, message.group):
            if key is not None and key in known and known[key] > self._clock():
                return key
        return None

    def prune(self) -> int:
        """Forget the expired ids; returns how many."""
        now = self._clock()
        expired = [task_id for task_id, expires in self._expires.items() if expires <= now]
        for task_id in expired:
            del self._expires[task_id]
        return len(expired)

    def live(self) -> list[str]:
        """The ids revoked now."""
        now = self._clock()
        return [task_id for task_id, expires in self._expires.items() if expires > now]


def sort_records(
    records: dict[str, bytes], now: float
) -> tuple[list[tuple[list[str], float]], list[str], list[str]]:
    """Sort what the state store holds (pure): the live revocations ``(ids, expiry)``,
    the keys of the expired ones (to delete), and the keys of values that are not
    revocations (left alone: something else wrote them)."""
    live: list[tuple[list[str], float]] = []
    expired: list[str] = []
    unreadable: list[str] = []
    for key, value in records.items():
        try:
            ids, expires_at = decode_revocation(value)
        except MessageError:
            unreadable.append(key)
            continue
        if expires_at > now:
            live.append((ids, expires_at))
        else:
            expired.append(key)
    return live, expired, unreadable


class Running:
    """A task running under :meth:`Revocations.running`, which a terminate cancels.

    As a context manager around the task's run: leaving it after a terminate takes the
    cancellation back (``Task.uncancel``) and swallows it, so the code after the block
    reports the task as terminated; any other cancellation (the worker stopping) goes
    on as it is.
    """

    __slots__ = ("_registry", "_task", "keys", "terminated")

    def __init__(self, registry: set[Running], keys: tuple[str | None, ...]) -> None:
        self._registry = registry
        self._task: asyncio.Task[object] | None = None
        self.keys = keys
        self.terminated = False

    def __enter__(self) -> Running:
        self._task = asyncio.current_task()
        self._registry.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._registry.discard(self)
        if not self.terminated or self._task is None:
            return False
        # Ours to take back whether or not the task saw it (it may have caught it).
        remaining = self._task.uncancel()
        return exc_type is asyncio.CancelledError and remaining == 0

    def terminate(self) -> None:
        """Cancel the task (once)."""
        if not self.terminated and self._task is not None:
            self.terminated = True
            self._task.cancel()


class Revocations:
    """A worker's revocations: the ids in memory, the broker's store, running tasks.

    :param transport: where the store is.
    :param expires: seconds a revocation this worker records is kept.
    :param clock: the current Unix time.
    :param max_size: ids kept in memory at most.
    :param store: the state store's name.
    :param check_interval: seconds between looks at the transport (a reconnection
        means reading the store again).
    :param prune_interval: seconds between prunes of memory.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        expires: float = 10_800.0,
        clock: Callable[[], float] = time.time,
        max_size: int = 50_000,
        store: str = REVOKED_STATE,
        check_interval: float = 1.0,
        prune_interval: float = 60.0,
    ) -> None:
        if expires <= 0:
            raise ValueError(f"revoke_expires must be positive, got {expires!r}")
        self.transport = transport
        self.expires = expires
        self.store = store
        self.ids = RevokedIds(clock=clock, max_size=max_size)
        self._clock = clock
        self._check_interval = check_interval
        self._prune_interval = prune_interval
        self._running: set[Running] = set()
        self._loaded = -1  # the transport generation of the last store read
        self._expired: list[str] = []  # store keys found expired, to delete
        self._upkeep: asyncio.Task[None] | None = None

    def revoked(self, message: TaskMessage) -> str | None:
        """The revoked id covering ``message``, if any (see :meth:`RevokedIds.match`)."""
        return self.ids.match(message)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Read the store, then keep memory and the store pruned, in a task of its own.

        :raises BrokerError: the store could not be read.
        """
        await self._load_retrying()
        self._upkeep = asyncio.create_task(self._maintain(), name="aioqueue-revocations")

    async def aclose(self) -> None:
        """Stop the upkeep task (memory is kept: a worker started again reads the store)."""
        upkeep, self._upkeep = self._upkeep, None
        if upkeep is not None:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)

    async def _load_retrying(self) -> None:
        delay = _LOAD_DELAY
        for attempt in range(1, _LOAD_ATTEMPTS + 1):
            try:
                await self.load()
                return
            except BrokerConnectionError:
                raise
            except BrokerError as exc:
                if attempt == _LOAD_ATTEMPTS:
                    raise
                log.warning("reading revocations failed (%s); again in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay *= 2

    async def load(self) -> None:
        """Read the store: its live revocations join memory, its expired ones are noted
        for deletion."""
        generation = self.transport.generation
        live, expired, unreadable = sort_records(
            await self.transport.state_read(self.store), self._clock()
        )
        for ids, expires_at in live:
            self.ids.add(ids, expires_at)
        self._expired = expired
        if unreadable:
            log.warning("%s: %d value(s) are not revocations; ignored", self.store, len(unreadable))
        self._loaded = generation
        log.info("revocations: %d revoked id(s) known", len(self.ids))

    async def _maintain(self) -> None:
        next_prune = time.monotonic() + self._prune_interval
        while True:
            try:
                await self._delete_expired()
                if self.transport.generation != self._loaded:
                    await self.load()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_interval
                    if self.ids.prune():
                        await self._sweep()
            except AioQueueError as exc:
                # Memory still holds what it knew; the next round tries again.
                log.warning("revocations upkeep: %s", exc)
            await asyncio.sleep(self._check_interval)

    async def _delete_expired(self) -> None:
        while self._expired:
            key = self._expired[-1]
            await self.transport.state_delete(self.store, key)
            self._expired.pop()

    async def _sweep(self) -> None:
        """Delete the store's expired records, unless another worker is at it."""
        lease = await self.transport.acquire_lease(REVOKE_SWEEP_LEASE)
        if lease is None:
            return
        try:
            await self.load()
            await self._delete_expired()
        finally:
            await lease.release()

    # -- revoking --------------------------------------------------------------------------

    def revoke(self, task_ids: Collection[str]) -> float:
        """Revoke ``task_ids`` here, for this worker's window; returns the expiry."""
        expires_at = self._clock() + self.expires
        self.ids.add(task_ids, expires_at)
        return expires_at

    async def record(self, task_ids: Collection[str], expires_at: float) -> None:
        """Write a revocation to the store (one a Celery client sent only to the pidbox),
        so that workers started later honour it."""
        key = revocation_key(task_ids)
        await self.transport.state_put(self.store, key, encode_revocation(task_ids, expires_at))

    # -- running tasks ---------------------------------------------------------------------

    def running(self, message: TaskMessage) -> Running:
        """A context manager to run ``message``'s task in, so a terminate finds it."""
        return Running(self._running, (message.id, message.root_id, message.group))

    def terminate(self, task_ids: Collection[str]) -> list[str]:
        """Cancel the running tasks that ``task_ids`` cover; returns their ids."""
        hit: list[str] = []
        for run in list(self._running):
            if not run.terminated and any(k is not None and k in task_ids for k in run.keys):
                run.terminate()
                hit.append(str(run.keys[0]))
        return hit
