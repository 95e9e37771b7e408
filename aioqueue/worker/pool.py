"""A pool of worker processes under one supervisor: ``aioqueue worker --processes N``.

Each child is the ordinary worker command, run again with ``--pool-child``: its own
event loop, connection and :class:`~aioqueue.Worker`. The supervisor has no broker
connection; it starts the children, keeps them running and forwards signals to them.
Between the two there is one Unix socket per child (a socketpair, the child's end
passed as a file descriptor), carrying one JSON object per line:

- child to supervisor: ``{"ready": {...}}`` once it consumes (what its banner would
  have shown; the supervisor prints one banner for the pool when every child is
  ready), and ``{"leaving": {"status": ..., "why": ...}}`` when it stops by itself;
- supervisor to child: nothing. The socket is the child's lifeline: when it reads
  end-of-file, the supervisor is gone (even killed with SIGKILL) and the child stops,
  so no child outlives its pool for longer than its shutdown timeout.

A child leaves by itself, gracefully (it stops consuming, finishes its running tasks,
what is unacked returns to the queue), with a status of :class:`Leave`: after
``--max-tasks-per-child`` tasks, above ``--max-memory-per-child``, when a sync task
ran past its hard time limit (its thread cannot be stopped: only the end of the
process ends it), or when remote control's ``shutdown`` reached it (each child is a
worker of its own name; the pool keeps its number of children). The supervisor then
starts a replacement at once, *after* the old child has exited rather than while it
drains: a child may be named (``-n``), and a name is held by one running worker at a
time (its pidbox queue is exclusive), so a replacement of the same name could not start
beside the old one. A child that stops
on its own is killed once it has taken its shutdown timeout and :data:`KILL_GRACE`
more. Any other exit is a crash: the child is started again after a backoff that
doubles with each crash in a row (:func:`restart_delay`); a pool whose children
cannot start gives up (:func:`judge`).

The decisions (what an exit means, when to restart, when a child must leave, a
child's name) are the pure functions at the top; :class:`Supervisor` and
:class:`ChildLink` do the process and socket work. This module knows nothing of the
app or of the command line: the supervisor is given each child's argv.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Protocol

__all__ = (
    "KILL_GRACE",
    "ChildExit",
    "ChildLimits",
    "ChildLink",
    "ChildReady",
    "Leave",
    "Leaving",
    "Recyclable",
    "Strikes",
    "Supervisor",
    "Verdict",
    "describe_exit",
    "judge",
    "leave_reason",
    "node_name",
    "resident_bytes",
    "restart_delay",
    "wait_leave",
)

log = logging.getLogger("aioqueue.pool")

#: Seconds a stopping child may take beyond its shutdown timeout before it is killed.
KILL_GRACE = 10.0
# A crashed child is started again after this, doubled for each crash in a row, at most
# _LONGEST_RESTART_S.
_FIRST_RESTART_S = 0.5
_LONGEST_RESTART_S = 10.0
# A child that ran this long before it crashed ends the run of crashes.
_STABLE_S = 10.0
# Children of one slot that exit before they consume, in a row, before the pool gives up.
_FAILED_STARTS = 5
# How often a child compares its processed tasks, and its memory, with its limits.
_TASKS_CHECK_S = 0.05
_MEMORY_CHECK_S = 1.0


class Leave(IntEnum):
    """Why a child stopped by itself: its exit status."""

    #: It processed ``--max-tasks-per-child`` tasks.
    MAX_TASKS = 80
    #: Its resident memory passed ``--max-memory-per-child``.
    MAX_MEMORY = 81
    #: A sync task ran past its hard time limit, and its thread could not be stopped.
    TIME_LIMIT = 82
    #: Remote control's ``shutdown`` reached it (``control shutdown -d <child>``).
    SHUTDOWN = 83


_LEFT = {
    Leave.MAX_TASKS: "recycled: it processed its --max-tasks-per-child",
    Leave.MAX_MEMORY: "recycled: its memory passed --max-memory-per-child",
    Leave.TIME_LIMIT: (
        "replaced: a sync task ran past its hard time limit, and its thread cannot be stopped"
    ),
    Leave.SHUTDOWN: "restarted: shut down by remote control (stop a pool with SIGTERM)",
}


# -- decisions (pure) -----------------------------------------------------------------


def node_name(template: str, host: str, index: int | None = None) -> str:
    """A worker's name from ``-n``: ``%h`` is the host, ``%n`` its first label, ``%d``
    the rest (its domain), ``%i`` the child's index in a pool (``0`` outside one),
    ``%%`` a ``%``.

    In a pool, a template without ``%i`` gets ``-%i`` at the end of its name part, so
    that the children's names differ:

    >>> node_name("worker@%h", "box.example.org")
    'worker@box.example.org'
    >>> node_name("worker@%n", "box.example.org", 2)
    'worker-2@box'
    """
    if index is not None and "%i" not in template:
        name, at, rest = template.partition("@")
        template = f"{name}-%i{at}{rest}"
    first, _, domain = host.partition(".")
    values = {"h": host, "n": first, "d": domain, "i": str(index or 0), "%": "%"}
    out, i = [], 0
    while i < len(template):
        char = template[i]
        if char == "%" and i + 1 < len(template) and template[i + 1] in values:
            out.append(values[template[i + 1]])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def describe_exit(returncode: int) -> str:
    """What an exit status says, for the log: ``killed by SIGKILL``, ``exited with
    status 3``, or why it left (a :class:`Leave` status)."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    if returncode in _LEFT:
        return _LEFT[Leave(returncode)]
    return f"exited with status {returncode}"


def restart_delay(crashes: int) -> float:
    """Seconds before a child is started again after ``crashes`` crashes in a row.

    >>> [restart_delay(n) for n in (1, 2, 3, 6)]
    [0.5, 1.0, 2.0, 10.0]
    """
    return min(_FIRST_RESTART_S * 2.0 ** max(crashes - 1, 0), _LONGEST_RESTART_S)


@dataclass(frozen=True, slots=True)
class ChildExit:
    """What the supervisor knows of a child that exited."""

    returncode: int
    ready: bool  # it had said it consumes
    lived: float  # seconds from its start
    stopping: bool  # the pool was stopping (a signal, or giving up)
    why: str | None = None  # what it said as it left, if it did


@dataclass(frozen=True, slots=True)
class Strikes:
    """One slot's recent history: crashes in a row, and starts that failed in a row."""

    crashes: int = 0
    failed_starts: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the supervisor does after a child exited, and says about it."""

    restart_in: float | None  # seconds before its replacement starts; None: none
    level: int  # of the log line
    what: str  # the log line, after ``process <i> (pid <pid>)``
    strikes: Strikes  # for the next verdict on this slot
    give_up: int | None = None  # the pool stops and exits with this status


def judge(ended: ChildExit, strikes: Strikes, *, pool_ready: bool) -> Verdict:
    """Decide what follows a child's ended.

    - While the pool stops: nothing (a child that did not stop cleanly is a warning).
    - A :class:`Leave` status: a replacement, at once.
    - A child that never got ready: before the pool was ever ready, the pool gives up
      with its status (a bad app or broker URL fails fast, as one worker does); later,
      it is started again with backoff, and after :data:`_FAILED_STARTS` such exits
      in a row the pool gives up with status 1.
    - Any other exit is a crash: started again with backoff; a child that had run for
      :data:`_STABLE_S` before it crashed starts a new run of crashes.
    """
    what = ended.why or describe_exit(ended.returncode)
    if ended.stopping:
        level = logging.INFO if ended.returncode == 0 else logging.WARNING
        return Verdict(None, level, "stopped" if ended.returncode == 0 else what, strikes)
    if ended.returncode in _LEFT:
        level = logging.WARNING if ended.returncode == Leave.TIME_LIMIT else logging.INFO
        return Verdict(0.0, level, f"{what}; starting another", Strikes())
    if not ended.ready:
        what = f"{describe_exit(ended.returncode)} before it consumed"
        if not pool_ready:
            status = ended.returncode if ended.returncode > 0 else 1
            return Verdict(None, logging.ERROR, f"{what}; stopping the pool", strikes, status)
        failed = strikes.failed_starts + 1
        if failed >= _FAILED_STARTS:
            what = f"{what}, {failed} times in a row; stopping the pool"
            return Verdict(None, logging.ERROR, what, replace(strikes, failed_starts=failed), 1)
        delay = restart_delay(failed)
        return Verdict(
            delay,
            logging.ERROR,
            f"{what}; starting another in {delay:g} s",
            replace(strikes, failed_starts=failed),
        )
    crashes = 1 if ended.lived >= _STABLE_S else strikes.crashes + 1
    delay = restart_delay(crashes)
    return Verdict(
        delay, logging.ERROR, f"{what}; starting another in {delay:g} s", Strikes(crashes)
    )


@dataclass(frozen=True, slots=True)
class ChildLimits:
    """When a child leaves by itself (``None``: never)."""

    max_tasks: int | None = None
    max_memory: int | None = None  # bytes of resident memory


@dataclass(frozen=True, slots=True)
class Leaving:
    """A child's decision to leave: its exit status and why, for the logs."""

    status: Leave
    why: str

    @property
    def level(self) -> int:
        """How loudly to log it: a recycle is routine, a stuck thread is not."""
        return logging.WARNING if self.status == Leave.TIME_LIMIT else logging.INFO


def leave_reason(limits: ChildLimits, processed: int, rss: int | None) -> Leaving | None:
    """Whether a child that processed ``processed`` tasks and holds ``rss`` bytes of
    resident memory (``None``: not measured this time) must leave.

    >>> leave_reason(ChildLimits(max_tasks=5), 5, None).status.name
    'MAX_TASKS'
    >>> leave_reason(ChildLimits(max_tasks=5), 4, 10**9) is None
    True
    """
    if limits.max_tasks is not None and processed >= limits.max_tasks:
        why = f"recycled: it processed {processed} tasks (--max-tasks-per-child {limits.max_tasks})"
        return Leaving(Leave.MAX_TASKS, why)
    if limits.max_memory is not None and rss is not None and rss > limits.max_memory:
        why = (
            f"recycled: its resident memory is {rss / 2**20:.0f} MiB "
            f"(--max-memory-per-child {limits.max_memory / 2**20:g})"
        )
        return Leaving(Leave.MAX_MEMORY, why)
    return None


# -- the child's side -----------------------------------------------------------------


def resident_bytes() -> int:
    """This process's resident memory now (from ``/proc``), or its peak where there is
    no ``/proc`` (``getrusage``)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here


class Recyclable(Protocol):
    """What :func:`wait_leave` watches: a :class:`~aioqueue.Worker`."""

    processed: int

    async def wait_overrun(self) -> None: ...


async def wait_leave(
    worker: Recyclable, limits: ChildLimits, overrun: asyncio.Future[None]
) -> Leaving:
    """Return once the child must leave: ``overrun`` (the worker's
    :meth:`~aioqueue.Worker.wait_overrun`) is done, or a limit is reached. Tasks are
    counted every :data:`_TASKS_CHECK_S`, memory read every :data:`_MEMORY_CHECK_S`."""
    if limits == ChildLimits():
        await asyncio.shield(overrun)  # nothing to count: no need to wake up
    next_memory = time.monotonic()
    while True:
        if overrun.done():
            return Leaving(Leave.TIME_LIMIT, _LEFT[Leave.TIME_LIMIT])
        rss = None
        if limits.max_memory is not None and time.monotonic() >= next_memory:
            rss, next_memory = resident_bytes(), time.monotonic() + _MEMORY_CHECK_S
        leaving = leave_reason(limits, worker.processed, rss)
        if leaving is not None:
            return leaving
        await asyncio.wait([overrun], timeout=_TASKS_CHECK_S)


class ChildLink:
    """A child's end of its socket to the supervisor (``--pool-child INDEX:FD``), and
    what makes the child leave by itself.

    :param index: the child's place in the pool, from 1.
    :param fd: its end of the socketpair.
    :param limits: when it leaves by itself.
    """

    def __init__(self, index: int, fd: int, limits: ChildLimits) -> None:
        self.index = index
        self.limits = limits
        #: Whether a thread ran past its time limit while this child ran (known once
        #: closed): the process must then end with ``os._exit``, since the
        #: interpreter's exit would wait for that thread, which may never end.
        self.abandon_threads = False
        self._fd = fd
        self._worker: Recyclable | None = None
        self._overrun: asyncio.Future[None] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self, worker: Recyclable | None) -> None:
        """Connect to the supervisor, and watch ``worker`` for overruns."""
        sock = socket.socket(fileno=self._fd)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=sock)
        self._worker = worker
        if worker is not None:
            self._overrun = asyncio.ensure_future(worker.wait_overrun())

    async def ready(self, details: dict[str, Any]) -> None:
        """Tell the supervisor this child consumes; ``details`` go to the banner."""
        await self._send({"ready": details})

    async def wait_leave(self) -> Leaving:
        """Return once the child must leave (see :func:`wait_leave`)."""
        assert self._worker is not None and self._overrun is not None
        return await wait_leave(self._worker, self.limits, self._overrun)

    async def leaving(self, leaving: Leaving) -> None:
        """Tell the supervisor this child stops by itself, and why."""
        await self._send({"leaving": {"status": int(leaving.status), "why": leaving.why}})

    async def wait_orphaned(self) -> None:
        """Return when the supervisor is gone (its end of the socket closed)."""
        assert self._reader is not None
        while await self._reader.read(4096):
            pass

    async def aclose(self) -> None:
        """Stop watching (after the worker stopped: an overrun while it drained counts)
        and close the socket."""
        overrun, self._overrun = self._overrun, None
        if overrun is not None:
            self.abandon_threads = overrun.done() and not overrun.cancelled()
            overrun.cancel()
            await asyncio.gather(overrun, return_exceptions=True)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(json.dumps(message).encode() + b"\n")
        try:
            await self._writer.drain()
        except OSError:  # the supervisor is gone: wait_orphaned() says so
            pass


# -- the supervisor -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildReady:
    """A child that consumes: its place, pid and what it reported."""

    index: int
    pid: int
    details: dict[str, Any]


@dataclass(eq=False)
class _Child:
    index: int
    process: asyncio.subprocess.Process
    started: float
    ready: bool = False
    why: str | None = None  # what it said as it left
    # Set once it is asked to stop or says it leaves: from then on it may be killed.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def signal(self, sig: int) -> None:
        self.stopping.set()
        if self.process.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:  # exited, not reaped yet
                pass


class Supervisor:
    """Keeps ``processes`` children running until :meth:`signal` stops them.

    :param command: the argv of child ``index`` (from 1) whose end of its socket is
        file descriptor ``fd``.
    :param processes: how many children.
    :param stop_timeout: seconds a child may take to stop (its shutdown timeout); past
        that and ``kill_grace`` more, it is killed.
    :param kill_grace: what closing its app may take after that.
    """

    def __init__(
        self,
        command: Callable[[int, int], Sequence[str]],
        processes: int,
        *,
        stop_timeout: float,
        kill_grace: float = KILL_GRACE,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.processes = processes
        self.stop_timeout = stop_timeout
        self.kill_grace = kill_grace
        self._command = command
        self._children: dict[int, _Child] = {}
        self._ready: dict[int, ChildReady] = {}
        self._all_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._status = 0

    @property
    def pids(self) -> dict[int, int]:
        """The running children's pids, by index."""
        return {i: c.process.pid for i, c in sorted(self._children.items())}

    def signal(self, sig: int) -> None:
        """Forward ``sig`` to every child. The first one stops the pool: no child is
        started again; a second one makes the children hurry, as it does a worker."""
        if not self._stopping.is_set():
            log.info("stopping: forwarding %s to %d process(es)", _name(sig), len(self._children))
            self._stopping.set()
        for child in self._children.values():
            child.signal(sig)

    async def run(self, on_ready: Callable[[list[ChildReady]], None]) -> int:
        """Run the pool until it is stopped; ``on_ready`` is called once, when every
        child first consumes. Returns 0 when stopped by a signal, else the status the
        pool gave up with."""
        async with asyncio.TaskGroup() as group:
            for index in range(1, self.processes + 1):
                group.create_task(self._keep(index))
            group.create_task(self._announce(on_ready))
        return self._status

    async def _announce(self, on_ready: Callable[[list[ChildReady]], None]) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._all_ready, self._stopping)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._all_ready.is_set() and not self._stopping.is_set():
            on_ready([self._ready[i] for i in sorted(self._ready)])

    async def _keep(self, index: int) -> None:
        """Run slot ``index``: a child, then its replacements, until the pool stops."""
        strikes = Strikes()
        while not self._stopping.is_set():
            pid, ended = await self._run_child(index)
            verdict = judge(ended, strikes, pool_ready=self._all_ready.is_set())
            log.log(verdict.level, "process %d (pid %d) %s", index, pid, verdict.what)
            strikes = verdict.strikes
            if verdict.give_up is not None:
                self._status = verdict.give_up
                self.signal(signal.SIGTERM)
            if verdict.restart_in is None:
                return
            if verdict.restart_in > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), verdict.restart_in)
                except TimeoutError:
                    pass

    async def _run_child(self, index: int) -> tuple[int, ChildExit]:
        """Start child ``index`` and return its pid and exit, once it has exited."""
        ours, theirs = socket.socketpair()
        with theirs:  # the child's end: closed here once the child has its copy
            try:
                reader, writer = await asyncio.open_unix_connection(sock=ours)
            except BaseException:
                ours.close()
                raise
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command(index, theirs.fileno()),
                    stdin=asyncio.subprocess.DEVNULL,
                    pass_fds=(theirs.fileno(),),
                    # Its own session: a terminal's Ctrl-C reaches the supervisor
                    # alone, which forwards it once (twice would hurry the children).
                    start_new_session=True,
                )
            except BaseException:
                writer.close()
                raise
        child = _Child(index, process, time.monotonic())
        self._children[index] = child
        if self._stopping.is_set():  # a signal came while it was being started
            child.signal(signal.SIGTERM)
        log.info("process %d started (pid %d)", index, process.pid)
        listening = asyncio.create_task(self._listen(child, reader))
        try:
            returncode = await self._wait_exit(child)
        finally:
            if process.returncode is None:  # cancelled: the child must not outlive us
                child.signal(signal.SIGTERM)
                await asyncio.shield(self._wait_exit(child))
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            writer.close()
            del self._children[index]
            self._ready.pop(index, None)
        lived = time.monotonic() - child.started
        stopping = self._stopping.is_set()
        return process.pid, ChildExit(returncode, child.ready, lived, stopping, child.why)

    async def _wait_exit(self, child: _Child) -> int:
        """The child's exit status; once it is stopping, it is killed if it takes its
        stop timeout and the kill grace more."""
        exited = asyncio.ensure_future(child.process.wait())
        stopping = asyncio.ensure_future(child.stopping.wait())
        try:
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                limit = self.stop_timeout + self.kill_grace
                await asyncio.wait([exited], timeout=limit)
                if not exited.done():
                    log.warning(
                        "process %d (pid %d) still runs %g s after it began to stop; killing it",
                        child.index,
                        child.process.pid,
                        limit,
                    )
                    child.process.kill()
            return await exited
        finally:
            exited.cancel()
            stopping.cancel()

    async def _listen(self, child: _Child, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("process %d sent %r, which is not JSON", child.index, line[:100])
                continue
            if "ready" in message:
                child.ready = True
                self._ready[child.index] = ChildReady(
                    child.index, child.process.pid, dict(message["ready"])
                )
                log.info("process %d (pid %d) consumes", child.index, child.process.pid)
                if len(self._ready) == self.processes:
                    self._all_ready.set()
            elif "leaving" in message:
                child.why = str(message["leaving"].get("why") or "") or None
                child.stopping.set()


def _name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
