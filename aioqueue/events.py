"""Celery-format monitoring events: the documents Flower and ``celery events`` read.

Pure builders only: each function returns the event object a Celery 5.7 worker or client
publishes on the ``celeryev`` topic exchange, fields in Celery's order (common fields,
the event's own fields, then ``timestamp`` and ``type``). Sending them is the caller's
business; these functions never touch the network.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioqueue._version import __version__

__all__ = (
    "EVENT_EXCHANGE",
    "EVENT_PROPERTIES",
    "HEARTBEAT_FREQ",
    "SW_IDENT",
    "Clock",
    "EventSource",
    "encode_events",
    "routing_key",
    "task_failed",
    "task_received",
    "task_rejected",
    "task_retried",
    "task_revoked",
    "task_sent",
    "task_started",
    "task_succeeded",
    "worker_event",
)

EVENT_EXCHANGE = "celeryev"
# Celery sends events transient: losing some is better than slowing the broker down.
EVENT_PROPERTIES: Mapping[str, Any] = {
    "content_type": "application/json",
    "content_encoding": "utf-8",
    "delivery_mode": 1,
    "priority": 0,
}
# Seconds between heartbeats, as Celery; Flower marks a worker offline after missing some.
HEARTBEAT_FREQ = 2.0
# Tells monitors which software sent the event; Flower only displays it.
SW_IDENT = "py-aioqueue"


def routing_key(event_type: str) -> str:
    """The routing key Celery uses for one event: ``task-succeeded`` → ``task.succeeded``."""
    return event_type.replace("-", ".")


@dataclass
class Clock:
    """A Lamport clock, as Celery stamps on every event (``clock``)."""

    value: int = 0

    def tick(self) -> int:
        """Advance the clock for a new event and return its value."""
        self.value += 1
        return self.value


def _utcoffset() -> float:
    # Celery's utcoffset(): hours west of UTC, honouring daylight saving time.
    local = time.localtime()
    seconds = time.altzone if local.tm_isdst > 0 else time.timezone
    return float(seconds // 3600)


@dataclass
class EventSource:
    """Who sends events: the node name and the fields every event carries."""

    hostname: str
    pid: int = field(default_factory=os.getpid)
    clock: Clock = field(default_factory=Clock)

    def event(
        self, event_type: str, fields: Mapping[str, Any], *, timestamp: float | None = None
    ) -> dict[str, Any]:
        """One event document: common fields, then ``fields``, then timestamp and type."""
        doc: dict[str, Any] = {
            "hostname": self.hostname,
            "utcoffset": _utcoffset(),
            "pid": self.pid,
            "clock": self.clock.tick(),
        }
        doc.update(fields)
        doc["timestamp"] = time.time() if timestamp is None else timestamp
        doc["type"] = event_type
        return doc


def worker_event(
    source: EventSource,
    kind: str,
    *,
    active: int,
    processed: int,
    loadavg: Sequence[float] | None = None,
    freq: float = HEARTBEAT_FREQ,
) -> dict[str, Any]:
    """``worker-online``, ``worker-heartbeat`` or ``worker-offline`` (``kind`` the suffix)."""
    if kind not in ("online", "heartbeat", "offline"):
        raise ValueError(f"{kind!r} is not a worker event; use online, heartbeat or offline.")
    if loadavg is None:
        loadavg = _loadavg()
    return source.event(
        f"worker-{kind}",
        {
            "freq": freq,
            "active": active,
            "processed": processed,
            "loadavg": [round(value, 2) for value in loadavg],
            "sw_ident": SW_IDENT,
            "sw_ver": __version__,
            "sw_sys": platform.system(),
        },
    )


def _loadavg() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:  # not every platform has a load average
        return [0.0, 0.0, 0.0]


def task_sent(
    source: EventSource,
    *,
    task_id: str,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    root_id: str | None,
    parent_id: str | None,
    retries: int = 0,
    eta: str | None = None,
    expires: str | None = None,
    queue: str,
    exchange: str,
    routing_key: str,
) -> dict[str, Any]:
    """``task-sent``, sent by a client that publishes a task message."""
    return source.event(
        "task-sent",
        {
            "uuid": task_id,
            "root_id": root_id,
            "parent_id": parent_id,
            "name": name,
            "args": repr(tuple(args)),
            "kwargs": repr(dict(kwargs)),
            "retries": retries,
            "eta": eta,
            "expires": expires,
            "queue": queue,
            "exchange": exchange,
            "routing_key": routing_key,
        },
    )


def task_received(
    source: EventSource,
    *,
    task_id: str,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    root_id: str | None,
    parent_id: str | None,
    retries: int = 0,
    eta: str | None = None,
    expires: str | None = None,
) -> dict[str, Any]:
    """``task-received``: the worker took the message off its queue."""
    return source.event(
        "task-received",
        {
            "uuid": task_id,
            "name": name,
            # Celery sends the arguments as their Python repr, which Flower shows as is.
            "args": repr(tuple(args)),
            "kwargs": repr(dict(kwargs)),
            "root_id": root_id,
            "parent_id": parent_id,
            "retries": retries,
            "eta": eta,
            "expires": expires,
        },
    )


def task_started(source: EventSource, *, task_id: str) -> dict[str, Any]:
    """``task-started``: the task's function begins."""
    return source.event("task-started", {"uuid": task_id})


def task_succeeded(
    source: EventSource, *, task_id: str, result: Any, runtime: float
) -> dict[str, Any]:
    """``task-succeeded`` with the result's repr and the run time in seconds."""
    return source.event(
        "task-succeeded", {"uuid": task_id, "result": repr(result), "runtime": runtime}
    )


def task_failed(
    source: EventSource, *, task_id: str, exception: BaseException | str, traceback: str
) -> dict[str, Any]:
    """``task-failed`` with the exception's repr and the formatted traceback."""
    return source.event(
        "task-failed",
        {"uuid": task_id, "exception": _exception_text(exception), "traceback": traceback},
    )


def task_retried(
    source: EventSource,
    *,
    task_id: str,
    exception: BaseException | str | None,
    traceback: str,
) -> dict[str, Any]:
    """``task-retried``; Celery sends ``"None"`` when the retry carried no exception."""
    return source.event(
        "task-retried",
        {"uuid": task_id, "exception": _exception_text(exception), "traceback": traceback},
    )


def task_revoked(
    source: EventSource,
    *,
    task_id: str,
    terminated: bool = False,
    signum: int | None = None,
    expired: bool = False,
) -> dict[str, Any]:
    """``task-revoked``: revoked by a control command, or ``expired`` on receipt."""
    return source.event(
        "task-revoked",
        {"uuid": task_id, "terminated": terminated, "signum": signum, "expired": expired},
    )


def task_rejected(source: EventSource, *, task_id: str, requeue: bool) -> dict[str, Any]:
    """``task-rejected``: the message was rejected (dead-lettered or requeued)."""
    return source.event("task-rejected", {"uuid": task_id, "requeue": requeue})


def _exception_text(exception: BaseException | str | None) -> str:
    if isinstance(exception, str):
        return exception
    return repr(exception)


def encode_events(events: Sequence[Mapping[str, Any]], *, multi: bool) -> tuple[str, bytes]:
    """The routing key and body for ``events``.

    With ``multi`` (a worker's task events, batched as Celery's prefork worker) the body is
    a JSON list under ``task.multi``, which Celery's receiver and Flower both accept;
    without it there must be one event, sent alone under its own routing key.
    """
    if not events:
        raise ValueError("There are no events to encode; give at least one.")
    # Celery's kombu JSON: default separators, non-ASCII escaped.
    if multi:
        return "task.multi", json.dumps(list(events)).encode()
    if len(events) > 1:
        raise ValueError(f"{len(events)} events need multi=True; one goes alone.")
    return routing_key(str(events[0]["type"])), json.dumps(events[0]).encode()
