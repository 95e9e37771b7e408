"""The beat runtime: entries in code and at runtime, one leader, ticks sent once.

Any number of beat instances may run (in every worker with ``--beat``, standalone with
``aioqueue beat``, embedded with ``async with app.beat:``); exactly one leads. The
design, with RabbitMQ as the only shared state:

- **Leadership** is the transport's lease ``aioqueue.beat.leader.<app>``: on RabbitMQ an
  exclusive queue owned by the leader's connection. Only one connection can hold it,
  and RabbitMQ drops it the moment that connection goes (a process killed closes its
  socket at once; a network that goes away is noticed by the heartbeat, which the app
  sets to 1 s on a connection kept for the lease alone). A leader checks that it still
  holds the lease after recording a slot and before sending its tick. Standbys ask
  for the lease every ``poll`` seconds, so one takes over within about ``poll``. An
  exclusive queue was chosen over a single-active-consumer queue because the holder
  learns at once, from its own connection, when it lost it: a leader whose lease is
  lost stops before its next tick.
- **Last runs** live in the state queue ``aioqueue.beat.<app>`` (durable, persistent, one
  record per entry: the latest slot dealt with). A leader records a slot *before* it
  sends the tick: a leader killed in between loses that tick (within the failover
  window) but no slot is ever sent twice, and a new leader reads what was recorded.
- **Tick ids** derive from the entry and the slot (``entry.tick_id``), so a tick is
  named alike by every instance; a tick expires once its slot is an interval old.
- **Runtime entries** (``await app.beat.add(...)``) live in the state queue
  ``aioqueue.beat.entries.<app>`` and are read by the leader every ``poll`` seconds, so a
  change made from any process applies within about ``poll`` seconds, and survives
  restarts of every beat instance and of the broker. A runtime entry overrides an entry
  in code of the same name; removing it brings the code entry back.
- **Missed slots** (no leader for a while) follow each entry's ``catch_up`` policy
  (``aioqueue.beat.entry``): by default one catch-up tick, no backlog replay.

Bad data found in the broker (an entry or a record that does not decode) is logged
and set aside; beat keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from ..broker import Broker
from ..canvas import freeze, plan
from ..exceptions import AioQueueError, BrokerError, ConfigurationError
from ..message import utc_now
from ..registry import Registry
from ..topology import beat_names
from ..transport.base import Lease, Transport
from .crontab import crontab
from .entry import CatchUp, Entry, decode_entry, due, encode_entry, next_wake
from .schedule import Schedule, at, every

__all__ = ("Beat", "Role")

log = logging.getLogger("aioqueue.beat")

Role = Literal["stopped", "standby", "leader"]

# How long stop() lets a leader finish the pass it is in.
_STOP_WAIT = 10.0


class _Canvas(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class Beat:
    """Periodic tasks of an app: ``app.beat``.

    :param name: the app's name: beats of the same name share a leader and entries.
    :param broker: the broker layer ticks are sent through.
    :param registry: the tasks this process knows (an entry for another is accepted
        with a warning: the worker that runs it may know it).
    :param poll: seconds between a standby's attempts to lead, and between the
        leader's reads of the runtime entries.
    :param lease_transport: a connection of its own for the leader lease (started and
        closed with the beat), e.g. with a short heartbeat, so that RabbitMQ notices
        within seconds a leader whose network went away; default: the broker's.
    """

    def __init__(
        self,
        name: str,
        broker: Broker,
        registry: Registry,
        *,
        poll: float = 1.0,
        lease_transport: Transport | None = None,
    ) -> None:
        if poll <= 0:
            raise ConfigurationError(f"beat poll must be positive, got {poll}")
        self._lease_name, self._state, self._stored = beat_names(name)
        self._broker = broker
        self._registry = registry
        self._own_leases = lease_transport
        self._leases = lease_transport or broker.transport
        self.poll = poll
        self._code: dict[str, Entry] = {}
        self._runtime: dict[str, Entry] = {}
        self._set_aside: set[str] = set()
        self.role: Role = "stopped"
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.sent = 0

    # -- entries in code -----------------------------------------------------------

    def every(
        self,
        interval: float,
        canvas: _Canvas,
        *,
        name: str,
        anchor: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        expires: float | None = None,
        catch_up: CatchUp = "once",
    ) -> Entry:
        """Send ``canvas`` every ``interval`` seconds (a fixed grid from ``anchor``)."""
        schedule = every(interval, anchor)
        return self._define(self._entry(name, schedule, canvas, queue, priority, expires, catch_up))

    def crontab(
        self,
        expression: str,
        canvas: _Canvas,
        *,
        name: str,
        tz: str = "UTC",
        queue: str | None = None,
        priority: int | None = None,
        expires: float | None = None,
        catch_up: CatchUp = "once",
    ) -> Entry:
        """Send ``canvas`` at the times of a cron expression in timezone ``tz``.

        :raises ConfigurationError: the expression is invalid (naming the field).
        """
        schedule = crontab(expression, tz=tz)
        return self._define(self._entry(name, schedule, canvas, queue, priority, expires, catch_up))

    def at(self, when: datetime, canvas: _Canvas, *, name: str, queue: str | None = None) -> Entry:
        """Send ``canvas`` once, at ``when``."""
        return self._define(self._entry(name, at(when), canvas, queue, None, 0, "once"))

    def _define(self, entry: Entry) -> Entry:
        if entry.name in self._code:
            raise ConfigurationError(f"a beat entry named {entry.name!r} is already defined")
        self._code[entry.name] = entry
        return entry

    def _entry(
        self,
        name: str,
        schedule: Schedule,
        canvas: _Canvas,
        queue: str | None,
        priority: int | None,
        expires: float | None,
        catch_up: CatchUp,
    ) -> Entry:
        node = canvas.to_dict()
        entry = Entry(name, schedule, node, queue, priority, expires, catch_up)
        if node.get("subtask_type") is None and entry.task not in self._registry:
            log.warning(
                "beat entry %r sends task %r, which this process does not know (the worker "
                "that runs it may)",
                name,
                entry.task,
            )
        return entry

    # -- runtime entries -----------------------------------------------------------

    async def add(
        self,
        name: str,
        schedule: Schedule,
        canvas: _Canvas,
        *,
        queue: str | None = None,
        priority: int | None = None,
        expires: float | None = None,
        catch_up: CatchUp = "once",
    ) -> Entry:
        """Add (or replace) a runtime entry, stored in RabbitMQ; the leader applies it
        within about ``poll`` seconds. It overrides an entry in code of the same name."""
        entry = self._entry(name, schedule, canvas, queue, priority, expires, catch_up)
        await self._broker.connect()
        await self._broker.transport.state_put(self._stored, name, encode_entry(entry))
        return entry

    async def remove(self, name: str) -> None:
        """Remove a runtime entry (an entry in code of that name applies again)."""
        await self._broker.connect()
        await self._broker.transport.state_delete(self._stored, name)

    async def entries(self) -> dict[str, Entry]:
        """Every entry by name: those in code, overridden by the runtime ones."""
        await self._broker.connect()
        stored = await self._broker.transport.state_read(self._stored)
        runtime: dict[str, Entry] = {}
        for name, data in stored.items():
            try:
                runtime[name] = decode_entry(data)
            except ConfigurationError as exc:
                if name not in self._set_aside:
                    log.error("beat: setting aside the stored entry %r: %s", name, exc)
                    self._set_aside.add(name)
        self._runtime = runtime
        return {**self._code, **runtime}

    def known(self) -> list[Entry]:
        """The entries known without asking the broker (for the banner)."""
        return list({**self._code, **self._runtime}.values())

    # -- running -------------------------------------------------------------------

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
        """Connect, try once to lead (so :attr:`role` is known), then run in the
        background until :meth:`stop`."""
        await self._broker.connect()
        if self._own_leases is not None:
            await self._own_leases.connect()
        try:
            await self.entries()  # the runtime ones too, for the banner
        except BrokerError as exc:
            log.warning("beat: cannot read the runtime entries yet: %s", exc)
        self._stopping = asyncio.Event()  # of this loop: beat may run again in another
        lease = await self._try_lead()
        self._runner = asyncio.create_task(self._run(lease), name="aioqueue-beat")

    async def stop(self) -> None:
        """Stop scheduling; a leader gives its lease up for a standby to take.

        A leader first finishes the pass it is in: a slot it recorded is also sent.
        """
        runner, self._runner = self._runner, None
        if runner is not None:
            self._stopping.set()
            done, _ = await asyncio.wait([runner], timeout=_STOP_WAIT)
            if not done:
                log.warning("beat: still busy after %g s; cancelling", _STOP_WAIT)
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if self._own_leases is not None:
            await self._own_leases.aclose()
        self.role = "stopped"

    async def _try_lead(self) -> Lease | None:
        try:
            lease = await self._leases.acquire_lease(self._lease_name)
        except BrokerError as exc:
            log.warning("beat: cannot ask for leadership: %s", exc)
            lease = None
        self.role = "leader" if lease is not None else "standby"
        return lease

    async def _run(self, lease: Lease | None) -> None:
        stopping = self._stopping
        while not stopping.is_set():
            if lease is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self.poll)
                if not stopping.is_set():
                    lease = await self._try_lead()
                continue
            log.info("beat: leading")
            try:
                await self._lead(lease)
            except AioQueueError as exc:
                log.warning("beat: stopped leading: %s", exc)
            except Exception:
                # Beat must outlive a bad entry or a bug: it steps down and tries again.
                log.exception("beat: unexpected error while leading")
                await asyncio.sleep(self.poll)
            finally:
                await _release(lease)
            log.info("beat: no longer leading")
            lease = None
            self.role = "standby"

    async def _lead(self, lease: Lease) -> None:
        transport = self._broker.transport
        last = _last_runs(await transport.state_read(self._state))
        lost = asyncio.ensure_future(lease.wait_lost())
        stopping = asyncio.ensure_future(self._stopping.wait())
        entries = await self.entries()
        refreshed = utc_now().timestamp()
        try:
            # Stopping is checked between passes only: a slot recorded is also sent.
            while lease.held and not stopping.done():
                now = utc_now()
                wake = refreshed + self.poll
                for entry in entries.values():
                    slots, record = due(entry, last.get(entry.name), now)
                    if record is not None and record != last.get(entry.name):
                        if not lease.held:
                            return
                        # Recorded first: a leader that dies before sending loses this
                        # tick rather than letting the next leader send it again.
                        await transport.state_put(
                            self._state, entry.name, record.isoformat().encode()
                        )
                        last[entry.name] = record
                        if not lease.held:
                            return  # lost while recording: another leader may send it
                        for slot in slots:
                            await self._send(entry, slot)
                    following = next_wake(entry, last.get(entry.name), now)
                    if following is not None:
                        wake = min(wake, following.timestamp())
                if utc_now().timestamp() >= refreshed + self.poll:
                    # After the ticks, not before: reading the store must not delay them.
                    entries = await self.entries()
                    refreshed = utc_now().timestamp()
                    continue
                delay = max(0.0, wake - utc_now().timestamp())
                await asyncio.wait([lost, stopping], timeout=delay, return_when="FIRST_COMPLETED")
        finally:
            lost.cancel()
            stopping.cancel()

    async def _send(self, entry: Entry, slot: datetime) -> None:
        node = freeze(entry.tick(slot), None)
        try:
            await self._broker.publish_plan(plan(node))
        except AioQueueError as exc:
            # Recorded already: the tick is lost, never sent twice.
            log.error("beat: tick of %r for %s not sent: %s", entry.name, slot, exc)
            return
        self.sent += 1
        log.info("beat: sent %s[%s] for %s", entry.task, node["options"]["task_id"], entry.name)

    def describe(self) -> list[tuple[str, str]]:
        """What the worker banner shows: the role and the entries."""
        rows = [("beat", f"{self.role} (poll {self.poll:g} s)")]
        rows += [("", entry.describe()) for entry in self.known()]
        return rows


def _last_runs(stored: dict[str, bytes]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for name, data in stored.items():
        try:
            out[name] = datetime.fromisoformat(data.decode())
        except (ValueError, UnicodeDecodeError) as exc:
            log.error("beat: setting aside the last run of %r: %s", name, exc)
    return out


async def _release(lease: Lease) -> None:
    try:
        await lease.release()
    except BrokerError as exc:
        log.debug("beat: releasing the lease: %s", exc)
