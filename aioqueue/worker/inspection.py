"""What a worker shows its pidbox: a small read-only view, so that the control commands
answer from it rather than from the consumer's internals."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..message import TaskMessage

__all__ = ("Inspection", "WorkerView", "query_answer", "request_info", "stats_answer")


class Inspection(Protocol):
    """The read-only interface the pidbox answers ``inspect`` commands from."""

    def registered(self) -> list[str]:
        """The names of the tasks this worker runs, sorted."""
        ...

    def stats(self) -> dict[str, Any]:
        """Celery's ``stats`` answer for this worker."""
        ...

    def active(self) -> list[dict[str, Any]]:
        """Celery's request dicts of the tasks running now."""
        ...


def request_info(message: TaskMessage, hostname: str, started: float) -> dict[str, Any]:
    """Celery's description of a request, as ``inspect active`` lists it (pure)."""
    return {
        "id": message.id,
        "name": message.task,
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "type": message.task,
        "hostname": hostname,
        "time_start": started,
        "acknowledged": True,
        "delivery_info": {"exchange": "", "routing_key": "", "priority": 0, "redelivered": False},
        "worker_pid": os.getpid(),
    }


def query_answer(
    active: Iterable[dict[str, Any]], arguments: dict[str, Any]
) -> dict[str, list[Any]]:
    """Celery's ``query_task`` answer: ``{id: ["active", request]}`` for the ids asked
    about that run here (pure). ``arguments["ids"]`` is one id or a list of them."""
    ids = arguments.get("ids")
    wanted = {ids} if isinstance(ids, str) else set(ids) if isinstance(ids, list) else set()
    return {r["id"]: ["active", r] for r in active if r["id"] in wanted}


def stats_answer(
    *, pid: int, concurrency: int, processed: int, uptime: float, broker: dict[str, Any]
) -> dict[str, Any]:
    """Celery's ``inspect stats`` reply shape, with what aioqueue knows (pure)."""
    return {
        "pid": pid,
        "uptime": int(uptime),
        "pool": {"max-concurrency": concurrency, "implementation": "aioqueue:asyncio"},
        "broker": broker,
        # Celery counts per task name; aioqueue counts every task processed.
        "total": {"*": processed} if processed else {},
        "prefetch_count": concurrency,
    }


@dataclass(slots=True)
class WorkerView:
    """An :class:`Inspection` built from callables the worker hands over.

    :param tasks: the registered task names.
    :param concurrency: the worker's concurrency.
    :param processed: the number of tasks processed so far.
    :param broker: broker facts for ``stats`` (no password).
    """

    tasks: Callable[[], list[str]]
    concurrency: int
    processed: Callable[[], int]
    broker: dict[str, Any] = field(default_factory=dict)
    hostname: str = ""
    started: float = field(default_factory=time.monotonic)
    _active: dict[str, dict[str, Any]] = field(default_factory=dict)

    @contextmanager
    def running(self, message: TaskMessage) -> Iterator[None]:
        """Shows ``message`` as active while the block runs (the worker's side)."""
        self._active[message.id] = request_info(message, self.hostname, time.time())
        try:
            yield
        finally:
            self._active.pop(message.id, None)

    def active(self) -> list[dict[str, Any]]:
        """Celery's request dicts of the tasks running now."""
        return list(self._active.values())

    def registered(self) -> list[str]:
        """The names of the tasks this worker runs, sorted."""
        return sorted(self.tasks())

    def stats(self) -> dict[str, Any]:
        """Celery's ``stats`` answer for this worker."""
        return stats_answer(
            pid=os.getpid(),
            concurrency=self.concurrency,
            processed=self.processed(),
            uptime=time.monotonic() - self.started,
            broker=dict(self.broker),
        )
