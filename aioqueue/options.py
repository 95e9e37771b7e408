"""Send options, and the pure step from a call to a protocol v2 message.

:class:`Options` groups the keyword-only send options (queue, countdown, eta, expires,
priority, ...); task arguments never share their namespace. :func:`build_message` turns
a task name, its arguments and options into a :class:`~aioqueue.message.TaskMessage`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from .exceptions import ConfigurationError
from .message import TaskMessage, new_id, utc_now

__all__ = ("Options", "build_message")


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How a task is sent. Every field is optional; ``None`` means "the default".

    :param queue: the queue to route to (default: the task's queue, else the app's).
    :param exchange: publish to this exchange instead of the queue's (with ``routing_key``).
    :param routing_key: routing key for ``exchange``.
    :param countdown: seconds from now before the task may run.
    :param eta: the earliest time the task may run (timezone-aware).
    :param expires: seconds from now, or a time, after which the task is not run.
    :param priority: AMQP priority 0-255 (needs a queue with ``x-max-priority``).
    :param ignore_result: the worker sends no result.
    :param task_id: use this id instead of a fresh UUID.
    :param time_limit: hard limit in seconds; the task is cancelled after it.
    :param soft_time_limit: soft limit in seconds (carried for Celery workers).
    :param headers: extra message headers.
    :param shadow: another name for the task in logs.
    """

    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    countdown: float | None = None
    eta: datetime | None = None
    expires: float | datetime | None = None
    priority: int | None = None
    ignore_result: bool | None = None
    task_id: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    headers: dict[str, Any] | None = None
    shadow: str | None = None

    def __post_init__(self) -> None:
        if self.countdown is not None and self.eta is not None:
            raise ConfigurationError("give countdown or eta, not both")
        if self.eta is not None and self.eta.tzinfo is None:
            raise ConfigurationError("eta must be timezone-aware")
        if self.priority is not None and not 0 <= self.priority <= 255:
            raise ConfigurationError(f"priority must be 0-255, got {self.priority}")

    def merged(self, other: Options) -> Options:
        """These options with every field ``other`` sets taken from ``other``.

        A destination is taken as a whole: when ``other`` names a ``queue`` or an
        ``exchange``, this one's queue, exchange and routing key are dropped, so a
        call's ``queue=`` is never sent through a route's exchange.
        """
        changes = {name: getattr(other, name) for name in _OPTION_NAMES}
        base = self
        if other.queue is not None or other.exchange is not None:
            base = replace(self, queue=None, exchange=None, routing_key=None)
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, as Celery's signature ``options`` object."""
        out: dict[str, Any] = {}
        for name in _OPTION_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Options:
        """Read Celery's ``options`` object, ignoring keys aioqueue does not use."""
        values = {k: v for k, v in data.items() if k in _OPTION_NAMES}
        for key in ("eta", "expires"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


_OPTION_NAMES = tuple(f.name for f in fields(Options))


def build_message(
    task: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    opts: Options,
    *,
    reply_to: str | None,
    now: datetime | None = None,
    **fields: Any,
) -> TaskMessage:
    """The protocol v2 message calling ``task`` (pure; ``now`` is injectable for tests).

    Extra keyword arguments set :class:`TaskMessage` fields directly (``root_id``,
    ``parent_id``, ``group``, ``chain``, ...).
    """
    now = now or utc_now()
    eta = opts.eta
    if opts.countdown is not None:
        eta = now + timedelta(seconds=opts.countdown)
    expires = opts.expires
    if isinstance(expires, int | float):
        expires = now + timedelta(seconds=expires)
    return TaskMessage(
        id=opts.task_id or new_id(),
        task=task,
        args=list(args),
        kwargs=dict(kwargs),
        eta=eta,
        expires=expires,
        timelimit=(opts.time_limit, opts.soft_time_limit),
        ignore_result=bool(opts.ignore_result),
        shadow=opts.shadow,
        priority=opts.priority,
        extra_headers=dict(opts.headers or {}),
        reply_to=reply_to,
        **fields,
    )
