"""The worker's log lines about tasks, worded as Celery's, and the JSON log format.

Pure formatting: the worker decides when to log (``consumer.py``); this module only says
how a line reads. Each task line comes with :func:`fields`, given to the log call as
``extra=``, so that :class:`JsonFormatter` can write the task, its id, the event and
its duration as JSON fields of their own.
"""

from __future__ import annotations

import json
import logging
import reprlib
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = (
    "JsonFormatter",
    "blocked",
    "failed",
    "fields",
    "received",
    "retried",
    "succeeded",
    "unserialisable",
)

Event = Literal["received", "succeeded", "failed", "retried", "blocked"]

# Celery's own limits for a result in its log (``celery.app.trace``: saferepr, 1024).
_shorten = reprlib.Repr()
_shorten.maxstring = 200
_shorten.maxother = 200
_shorten.maxlist = _shorten.maxtuple = _shorten.maxset = _shorten.maxdict = 20
_shorten.maxlevel = 3


def received(name: str, task_id: str) -> str:
    return f"Task {name}[{task_id}] received"


def succeeded(name: str, task_id: str, duration: float, result: Any) -> str:
    return f"Task {name}[{task_id}] succeeded in {duration:.3f}s: {_shorten.repr(result)}"


def failed(name: str, task_id: str, exc: BaseException) -> str:
    return f"Task {name}[{task_id}] raised {type(exc).__name__}: {exc}"


def retried(name: str, task_id: str, eta: datetime, reason: object) -> str:
    return f"Task {name}[{task_id}] retry at {eta.isoformat()}: {reason}"


def unserialisable(name: str, task_id: str, exc: BaseException) -> str:
    return f"Task {name}[{task_id}] returned a result that cannot be serialised: {exc}"


def blocked(name: str | None, task_id: str | None, seconds: float) -> str:
    if name is None:
        return f"the event loop was blocked for {seconds:.2f} s (not by a task)"
    return (
        f"task {name}[{task_id}] blocked the event loop for {seconds:.2f} s: it stalls "
        "every other task on this worker; run CPU work in a sync task or --processes"
    )


def fields(
    name: str | None, task_id: str | None, event: Event, duration: float | None = None
) -> dict[str, Any]:
    """The ``extra=`` of a task's log line: what :class:`JsonFormatter` writes."""
    return {"task": name, "task_id": task_id, "event": event, "duration": duration}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``; a task's
    line adds ``task``, ``id``, ``event`` and ``duration`` (seconds); a traceback is
    ``exc_info``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["task"] = getattr(record, "task", None)
            line["id"] = getattr(record, "task_id", None)
            line["event"] = event
            duration = getattr(record, "duration", None)
            line["duration"] = None if duration is None else round(duration, 6)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
