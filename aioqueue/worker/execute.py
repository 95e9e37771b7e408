"""One delivery, step by step: decode, check, call, and the result states to report.

Every function here is either pure (deciding) or runs exactly one user function
(:func:`call`); publishing and acking are the consumer's job.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..exceptions import (
    AioQueueError,
    ContentTypeError,
    MalformedMessageError,
    Retry,
    TimeLimitExceeded,
)
from ..message import ResultMessage, State, TaskMessage, utc_now
from ..routing import delay_bucket_ms
from ..serialization import Codec
from ..task import Task
from ..topology import DEATH_HEADERS
from ..transport.base import Envelope, Publish
from .limits import ThreadSlots
from .timeouts import run_with_limits

__all__ = (
    "Due",
    "call_with_limit",
    "decode",
    "downstream",
    "failure_fanout",
    "failure_state",
    "next_attempt",
    "retry_state",
    "revoked_state",
    "started_state",
    "success_state",
    "when_due",
)


def strip_broker_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` without those RabbitMQ added when dead-lettering (``x-death``, ...)."""
    if not any(k.startswith(DEATH_HEADERS) for k in headers):
        return headers
    return {k: v for k, v in headers.items() if not k.startswith(DEATH_HEADERS)}


def decode(envelope: Envelope, codec: Codec) -> TaskMessage:
    """The task message in ``envelope``.

    :raises MessageError: (a subclass naming the problem) the body or headers are bad.
    """
    headers = strip_broker_headers(envelope.headers)
    if not envelope.content_type:
        # Guessing JSON would run a message whose sender never said what it holds.
        raise ContentTypeError("the message has no content type (expected application/json)")
    if "task" not in headers:
        raise MalformedMessageError(
            "not a Celery protocol v2 task message: no 'task' header "
            "(protocol v1 and foreign messages are not supported)"
        )
    codec.admit(envelope.body, envelope.content_encoding, headers.get("compression"))
    body = codec.decode(envelope.body, envelope.content_type)
    return TaskMessage.from_wire(
        headers, body, reply_to=envelope.reply_to, priority=envelope.priority
    )


def bind(task: Task[Any, Any], message: TaskMessage) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` to call the task with, checked against its parameters.

    :raises ArgumentsError: they do not fit, e.g. a missing or unexpected argument.
    """
    return task.bind_arguments(message.args, message.kwargs)


@dataclass(frozen=True, slots=True)
class Due:
    """What to do about a message's ``eta`` and ``expires`` now."""

    expired: bool
    delay_bucket_ms: int | None
    #: Seconds to wait here first: less than a delay bucket's hop, never run early.
    wait_s: float = 0.0


def when_due(eta: datetime | None, expires: datetime | None, now: datetime) -> Due:
    """Whether the message is expired, must wait in a delay bucket, or may run now."""
    if expires is not None and expires <= now:
        return Due(expired=True, delay_bucket_ms=None)
    if eta is None:
        return Due(expired=False, delay_bucket_ms=None)
    remaining_ms = (eta - now).total_seconds() * 1000
    bucket = delay_bucket_ms(remaining_ms)
    return Due(
        expired=False,
        delay_bucket_ms=bucket,
        wait_s=max(0.0, remaining_ms / 1000) if bucket is None else 0.0,
    )


async def call_with_limit(
    task: Task[Any, Any],
    arguments: tuple[tuple[Any, ...], dict[str, Any]],
    threads: ThreadSlots,
    limit: float | None,
    soft_limit: float | None = None,
) -> Any:
    """Run the task's function once within its time limits (seconds); sync functions run
    in one of ``threads``.

    An async task gets :class:`SoftTimeLimitExceeded` raised inside it after
    ``soft_limit`` and is cancelled after ``limit``. A sync task cannot be interrupted:
    its soft limit does nothing, and past its hard limit it fails while its thread runs
    on and keeps its slot until it returns (see ``aioqueue.worker.limits``); its limit
    counts from when it has a thread.

    :raises TimeLimitExceeded: past ``limit``.
    """
    args, kwargs = arguments
    what = f"task {task.name!r}"
    if not task.is_async:
        try:
            return await threads.run(task.call, *args, limit=limit, **kwargs)
        except TimeLimitExceeded:
            raise TimeLimitExceeded(f"{what} exceeded its time limit of {limit:g} s") from None
    if limit is None and soft_limit is None:
        return await task.call(*args, **kwargs)  # the common case: no frame more
    return await run_with_limits(task.call(*args, **kwargs), soft=soft_limit, hard=limit, what=what)


def started_state(message: TaskMessage, hostname: str) -> ResultMessage:
    """The STARTED state of ``message`` (sent only for ``track_started`` tasks), as
    Celery's: the worker's pid and hostname, no ``date_done``."""
    return ResultMessage(
        task_id=message.id,
        status=State.STARTED,
        result={"pid": os.getpid(), "hostname": hostname},
    )


def success_state(message: TaskMessage, value: Any, children: list[Any]) -> ResultMessage:
    """The SUCCESS state of ``message``."""
    # Built from values of known types: validating them again costs more than the rest
    # of a small task's outcome.
    return ResultMessage.model_construct(
        task_id=message.id,
        status=State.SUCCESS,
        result=value,
        children=children,
        date_done=utc_now(),
    )


def failure_state(task_id: str, exc: BaseException) -> ResultMessage:
    """The FAILURE state carrying ``exc`` as Celery does (type, args, module, traceback)."""
    cls = type(exc)
    exc_module = cls.__module__
    # aioqueue's errors live in aioqueue.exceptions whatever module raised them.
    if isinstance(exc, AioQueueError):
        exc_module = "aioqueue.exceptions"
    return ResultMessage(
        task_id=task_id,
        status=State.FAILURE,
        result={
            "exc_type": cls.__qualname__,
            "exc_message": list(_portable_args(exc)),
            "exc_module": exc_module,
        },
        traceback="".join(traceback.format_exception(exc)),
        date_done=utc_now(),
    )


def revoked_state(task_id: str, reason: str, *details: str) -> ResultMessage:
    """The REVOKED state (an expired or revoked task), as Celery's: ``reason`` is
    ``"revoked"``, ``"expired"`` or ``"terminated"``; ``details`` follow it (an expired
    task's expiry time)."""
    return ResultMessage(
        task_id=task_id,
        status=State.REVOKED,
        result={
            "exc_type": "TaskRevokedError",
            "exc_message": [reason, *details],
            # Celery's module, as its workers send: a Celery caller raises its own
            # TaskRevokedError (an aioqueue caller goes by the REVOKED status).
            "exc_module": "celery.exceptions",
        },
        date_done=utc_now(),
    )


def retry_state(message: TaskMessage, retry: Retry) -> ResultMessage:
    """The RETRY state, as Celery's: the traceback names the retry, ``children`` the
    message sent again (the same id)."""
    return ResultMessage(
        task_id=message.id,
        status=State.RETRY,
        traceback="".join(traceback.format_exception(retry)),
        children=[[[message.id, None], None]],
    )


def next_attempt(message: TaskMessage, retry: Retry, now: datetime) -> TaskMessage:
    """The message of the attempt after ``message``: the same id, ``retries`` + 1, due
    when ``retry`` says, its parent the task itself (as Celery does)."""
    when = retry.when
    eta = when if isinstance(when, datetime) else now + timedelta(seconds=when)
    return message.model_copy(
        update={"retries": message.retries + 1, "eta": eta, "parent_id": message.id}
    )


def promised(node: dict[str, Any]) -> list[tuple[str, str]]:
    """``(task_id, reply_to)`` of every promise a caller may await in a canvas node:
    its tasks, what is chained after them, a chord's body."""
    options = node.get("options") or {}
    kind = node.get("subtask_type")
    found: list[tuple[str, str]] = []
    if kind is None and options.get("task_id") and options.get("reply_to"):
        found.append((options["task_id"], options["reply_to"]))
    elif kind in ("chain", "group"):
        for child in node["kwargs"]["tasks"]:
            found.extend(promised(child))
    elif kind == "chord":
        found.extend(promised(node["kwargs"]["body"]))
    for after in options.get("chain") or ():
        found.extend(promised(after))
    return found


def downstream(message: TaskMessage) -> dict[str, Any]:
    """The workflow waiting on ``message`` as one chain node: what is chained after it,
    its chord's body, its links (for telling their promises it failed)."""
    tasks = [*(message.chain or ()), *(message.callbacks or ())]
    if message.chord:
        tasks.append(message.chord)
    return {"subtask_type": "chain", "kwargs": {"tasks": tasks}, "options": {}}


def failure_fanout(codec: Codec, node: dict[str, Any], state: ResultMessage) -> list[Publish]:
    """Publishes giving ``state`` (a FAILURE) to every promise in ``node``, so nobody
    waits for a step that will never run."""
    out = []
    for task_id, reply_to in promised(node):
        copy = state.model_copy(update={"task_id": task_id})
        envelope = Envelope(
            body=codec.encode(copy.body()),
            correlation_id=task_id,
            persistent=False,
        )
        out.append(Publish(envelope, routing_key=reply_to))
    return out


def _portable_args(exc: BaseException) -> tuple[Any, ...]:
    # The args must survive JSON; anything else travels as its repr.
    return tuple(a if isinstance(a, str | int | float | bool | None) else repr(a) for a in exc.args)
