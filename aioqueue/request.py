"""The request a running task serves: ``current_request()``.

The worker sets it around each task call in a context variable (never a global), so
concurrent async tasks each see their own, and a sync task's thread sees the one its
call was made in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ("DeliveryInfo", "Request", "current_request")


@dataclass(frozen=True, slots=True)
class DeliveryInfo:
    """How the message reached this worker."""

    queue: str
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    """What a task knows about the call it serves (Celery's ``self.request``)."""

    id: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: datetime | None = None
    expires: datetime | None = None
    reply_to: str | None = None
    delivery_info: DeliveryInfo | None = None
    hostname: str | None = None
    #: The message's AMQP priority, if it had one.
    priority: int | None = None
    #: The message's headers beyond the protocol's own: the caller's (``headers={...}``,
    #: which Celery's request shows as attributes), and any the broker added.
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The task's registered name (an alias of :attr:`task`)."""
        return self.task


# The worker's request factory and its arguments: a request is made only when asked
# for (most tasks never look at theirs), and entering costs one tuple.
_Factory = tuple[Callable[..., Request], tuple[Any, ...]]
_current: ContextVar[_Factory | None] = ContextVar("aioqueue_request", default=None)


def current_request() -> Request:
    """The request of the task running in this context.

    :raises LookupError: no task is running here (called outside a worker's task).
    """
    current = _current.get()
    if current is None:
        raise LookupError("current_request() is only available inside a task a worker runs")
    make, args = current
    return make(*args)


def enter(make: Callable[..., Request], *args: Any) -> Token[_Factory | None]:
    """Make the request ``make(*args)`` builds current (the worker, around a task call)."""
    return _current.set((make, args))


def leave(token: Token[_Factory | None]) -> None:
    """Restore what was current before :func:`enter`."""
    _current.reset(token)
