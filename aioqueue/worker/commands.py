"""The control commands that change a running worker, as Celery's workers serve them:
``shutdown``, ``add_consumer``, ``cancel_consumer`` and ``rate_limit``.

The pidbox checks a command's arguments here (pure) and carries it out through
:class:`Controls`, the few things a worker lets remote control do to it. The answers are
Celery's: ``{"ok": text}`` when done, ``{"error": text}`` when not, with the reason.

- ``shutdown``: the worker answers ``{"ok": "shutdown"}``, then stops as on SIGTERM
  (no new tasks, running ones finish within its shutdown timeout). A Celery worker stops
  without answering.
- ``add_consumer`` (``queue``, optional ``exchange``, ``exchange_type``,
  ``routing_key``): the worker declares the queue and consumes it. Without an exchange
  the queue is the app's definition of that name, or the default shape (as ``-Q`` does);
  with one, it is bound to that exchange (direct by default) with ``routing_key``
  (default: the queue's name). A queue consumed already is left as it is.
- ``cancel_consumer`` (``queue``): no new deliveries from that queue; what was received
  from it is still run and acked. A queue not consumed is an error.
- ``rate_limit`` (``task_name``, ``rate_limit``): the task's rate limit on this worker
  from now on (``"10/s"``, ``"100/m"``, ``"5/h"``, a number per second; empty, ``None``
  or ``0``: none). It holds until the worker stops; the tasks of an embedded worker are
  the app's, so every worker of that process follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from ..exceptions import ConfigurationError, MalformedMessageError
from ..ratelimit import parse_rate
from ..topology import Destination, Exchange, Queue
from ..transport.base import ExchangeType

__all__ = (
    "WORKER_COMMANDS",
    "ConsumerRequest",
    "Controls",
    "RateLimit",
    "cancel_consumer_arguments",
    "consumer_arguments",
    "error",
    "ok",
    "rate_limit_arguments",
)

#: The commands of this module.
WORKER_COMMANDS = ("shutdown", "add_consumer", "cancel_consumer", "rate_limit")


class Controls(Protocol):
    """What remote control may do to a running worker."""

    async def add_consumer(self, queue: str, definition: Destination | None) -> bool:
        """Declare and consume ``queue`` (``definition``: its shape, ``None``: the app's
        or the default); ``False`` when it is consumed already.

        :raises BrokerError: it cannot be declared or consumed.
        """
        ...

    async def cancel_consumer(self, queue: str) -> None:
        """Stop consuming ``queue``.

        :raises ConfigurationError: the worker does not consume it.
        """
        ...

    def set_rate_limit(self, task_name: str, rate: float | None) -> None:
        """Set the rate limit of ``task_name`` (tasks per second; ``None``: none).

        :raises UnknownTaskError: no such task is registered.
        """
        ...

    def request_shutdown(self) -> None:
        """Start stopping the worker, as on SIGTERM; returns at once."""
        ...


@dataclass(frozen=True, slots=True)
class ConsumerRequest:
    """An ``add_consumer`` command, checked."""

    queue: str
    definition: Destination | None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A ``rate_limit`` command, checked: ``rate`` is tasks per second or ``None``."""

    task_name: str
    rate: float | None
    #: Celery's answer says "disabled" only for an empty limit, not for ``0``.
    given: bool


def ok(text: str) -> dict[str, str]:
    """Celery's answer to a command carried out."""
    return {"ok": text}


def error(text: str) -> dict[str, str]:
    """Celery's answer to a command that could not be."""
    return {"error": text}


def consumer_arguments(arguments: dict[str, Any]) -> ConsumerRequest:
    """The queue an ``add_consumer`` command asks for (pure).

    :raises MalformedMessageError: no queue name, or an exchange, type or routing key
        that is not a string.
    :raises ConfigurationError: an unknown exchange type.
    """
    queue = _queue_name("add_consumer", arguments)
    exchange = _optional_str("add_consumer", arguments, "exchange")
    kind = _optional_str("add_consumer", arguments, "exchange_type") or "direct"
    key = _optional_str("add_consumer", arguments, "routing_key")
    if not exchange:
        return ConsumerRequest(queue, None)
    # Exchange checks the type, and names the ones there are.
    definition = Queue(
        queue,
        exchange=Exchange(exchange, type=cast(ExchangeType, kind)),
        routing_key=queue if key is None else key,
    )
    return ConsumerRequest(queue, definition)


def cancel_consumer_arguments(arguments: dict[str, Any]) -> str:
    """The queue a ``cancel_consumer`` command names (pure).

    :raises MalformedMessageError: no queue name.
    """
    return _queue_name("cancel_consumer", arguments)


def rate_limit_arguments(arguments: dict[str, Any]) -> RateLimit:
    """The task and rate of a ``rate_limit`` command (pure).

    :raises MalformedMessageError: no task name.
    :raises ConfigurationError: a rate that cannot be read ("Invalid rate limit
        string", as Celery says, and why).
    """
    name = arguments.get("task_name")
    if not isinstance(name, str) or not name:
        raise MalformedMessageError(f"rate_limit: 'task_name' must be a task name, got {name!r}")
    given = arguments.get("rate_limit")
    if given is None or given == "":
        return RateLimit(name, None, False)
    if isinstance(given, bool) or not isinstance(given, str | int | float):
        raise ConfigurationError(
            f"Invalid rate limit string: {given!r} is not a rate ('10/s', '100/m', '5/h')"
        )
    try:
        number = float(given.partition("/")[0]) if isinstance(given, str) else float(given)
    except ValueError:
        number = -1.0
    if number == 0:
        # Celery's 0: no limit.
        return RateLimit(name, None, True)
    try:
        return RateLimit(name, parse_rate(given), True)
    except ConfigurationError as exc:
        raise ConfigurationError(f"Invalid rate limit string: {exc}") from None


def _queue_name(command: str, arguments: dict[str, Any]) -> str:
    queue = arguments.get("queue")
    if not isinstance(queue, str) or not queue.strip():
        raise MalformedMessageError(f"{command}: 'queue' must be a queue name, got {queue!r}")
    return queue


def _optional_str(command: str, arguments: dict[str, Any], key: str) -> str | None:
    value = arguments.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedMessageError(f"{command}: {key!r} must be a string, got {value!r}")
    return value
