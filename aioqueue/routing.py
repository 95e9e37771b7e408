"""Where a task message goes: send options -> a :class:`Route` (pure).

:func:`resolve` decides the exchange, the routing key, what must be declared before the
publish (the target's topology, a delay bucket) and the delay; the broker layer
(``aioqueue.broker``) declares and publishes. Nothing here does I/O.

Precedence, highest first: the call's options (``queue=``, ``exchange=``,
``routing_key=``, ``priority=``, ``headers=``), the task's own (``@app.task(queue=...)``),
the app's ``task_routes`` (:class:`Routes`), the default queue. A level that names a
destination (a queue or an exchange) replaces the destination of the levels below it
as a whole (:meth:`aioqueue.options.Options.merged`), so a call's ``queue=`` never
inherits a route's exchange.

Delays: a message not yet due goes to a delay bucket (``aioqueue.topology``). Buckets
are powers of two; the largest bucket not longer than the remaining delay is chosen and
a message that comes back early (its ``eta`` still ahead) takes the next smaller bucket,
so any delay is reached in at most ~32 hops with a handful of queues.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeAlias

from .exceptions import ConfigurationError
from .options import Options
from .topology import Broadcast, Destination, Exchange, Topology

__all__ = (
    "MAX_DELAY_BUCKET_MS",
    "MIN_DELAY_MS",
    "Route",
    "Router",
    "Routes",
    "TaskRoutes",
    "delay_bucket_ms",
    "resolve",
)

# A remainder below this is run at once: the hop would cost more than the wait.
MIN_DELAY_MS = 5
MAX_DELAY_BUCKET_MS = 2**31

#: What a route gives: send options (``{"queue": "q"}``, ``{"exchange": "x",
#: "routing_key": "k"}``, with ``priority`` and ``headers`` if wanted) or a queue name.
RouteValue: TypeAlias = Mapping[str, Any] | str
#: A router: ``(name, args, kwargs, options) -> RouteValue | None`` (``None``: no
#: opinion, the next router is asked), as Celery's ``route_task``.
Router: TypeAlias = Callable[[str, tuple[Any, ...], dict[str, Any], dict[str, Any]], Any]
_Pattern: TypeAlias = "str | re.Pattern[str]"
#: Celery's ``task_routes`` shapes: a mapping of task names, glob patterns (``"feeds.*"``)
#: or compiled regular expressions to a :data:`RouteValue`; a router; an import path of
#: a router; a sequence of ``(pattern, value)`` pairs; or a list of these, tried in order.
TaskRoutes: TypeAlias = Mapping[Any, RouteValue] | Router | str | Sequence[Any] | None

# Keys of a route that are not send options but Celery's, and mean nothing here.
_IGNORED_KEYS = frozenset({"exchange_type", "delivery_mode", "serializer", "compression"})
_OPTION_KEYS = frozenset(f.name for f in fields(Options))


@dataclass(frozen=True, slots=True)
class Route:
    """Where one message is published, and what must exist first.

    :param exchange: the exchange the message is for (``""``: the default exchange).
    :param routing_key: the routing key.
    :param declare: the definitions to declare first (none: the caller named an
        exchange the app does not define, which aioqueue does not declare).
    :param delay_ms: the delay bucket the message waits in first, if it is not due; it is
        published to the bucket, which dead-letters it to ``exchange`` later.
    """

    exchange: str
    routing_key: str
    declare: tuple[Destination | Exchange, ...] = ()
    delay_ms: int | None = None


def delay_bucket_ms(remaining_ms: float) -> int | None:
    """The delay bucket for a message due in ``remaining_ms``, or ``None`` if it is due.

    >>> delay_bucket_ms(10_000)
    8192
    """
    if remaining_ms < MIN_DELAY_MS:
        return None
    bucket = 1 << (int(remaining_ms).bit_length() - 1)
    return min(bucket, MAX_DELAY_BUCKET_MS)


class _MapRoute:
    """Exact task names first, then patterns in the order given."""

    def __init__(self, items: Sequence[tuple[_Pattern, RouteValue]]) -> None:
        self.exact: dict[str, Options] = {}
        self.patterns: list[tuple[re.Pattern[str], Options]] = []
        for key, value in items:
            options = _options(value, f"task_routes[{key!r}]")
            if isinstance(key, re.Pattern):
                self.patterns.append((key, options))
            elif not isinstance(key, str):
                raise ConfigurationError(
                    f"task_routes: a key must be a task name, a glob or a compiled regular "
                    f"expression, got {key!r}"
                )
            elif any(c in key for c in "*?["):
                self.patterns.append((re.compile(fnmatch.translate(key)), options))
            else:
                self.exact[key] = options

    def __call__(self, name: str) -> Options | None:
        found = self.exact.get(name)
        if found is not None:
            return found
        for pattern, options in self.patterns:
            if pattern.match(name):
                return options
        return None


class Routes:
    """An app's ``task_routes``, compiled once (pure).

    :param routes: see :data:`TaskRoutes`.
    :raises ConfigurationError: a shape or a route value is not understood.
    """

    def __init__(self, routes: TaskRoutes = None) -> None:
        self._steps: list[_MapRoute | Router] = [_step(item) for item in _items(routes)]
        self._static = all(isinstance(step, _MapRoute) for step in self._steps)
        # Without routers, a task's route depends on its name only.
        self._cache: dict[str, Options | None] = {}

    def __bool__(self) -> bool:
        return bool(self._steps)

    def match(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Options | None = None,
    ) -> Options | None:
        """The options the first matching route gives task ``name``, or ``None``.

        :raises ConfigurationError: a router returned something that is not a route.
        """
        if self._static:
            if name in self._cache:
                return self._cache[name]
            found = self._cache[name] = self._first(name, args, kwargs, options)
            return found
        return self._first(name, args, kwargs, options)

    def _first(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        options: Options | None,
    ) -> Options | None:
        for step in self._steps:
            if isinstance(step, _MapRoute):
                found = step(name)
            else:
                given = options.to_dict() if options is not None else {}
                value = step(name, tuple(args), dict(kwargs or {}), given)
                found = None if value is None else _options(value, f"router {step!r}")
            if found is not None:
                return found
        return None


def _items(routes: TaskRoutes) -> list[Any]:
    if routes is None:
        return []
    if isinstance(routes, Mapping | str) or callable(routes):
        return [routes]
    if not isinstance(routes, Sequence):
        raise ConfigurationError(
            f"task_routes: expected a mapping, a router, an import path or a list of them, "
            f"got {routes!r}"
        )
    items = list(routes)
    if items and all(_is_pair(item) for item in items):
        return [items]  # one sequence of (pattern, value) pairs
    return items


def _is_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str | re.Pattern)


def _step(item: Any) -> _MapRoute | Router:
    if isinstance(item, Mapping):
        return _MapRoute(list(item.items()))
    if isinstance(item, str):
        return _step(_import(item))
    if isinstance(item, list | tuple) and all(_is_pair(pair) for pair in item):
        return _MapRoute(list(item))
    if callable(item):
        return item  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"task_routes: expected a mapping, a router, an import path or (pattern, route) "
        f"pairs, got {item!r}"
    )


def _import(path: str) -> Any:
    module, _, attr = path.replace(":", ".").rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"task_routes: cannot import router {path!r}: {exc}") from exc
    # Celery's routers may be classes with a route_for_task or __call__ method.
    if isinstance(found, type):
        found = found()
    return getattr(found, "route_for_task", found)


def _options(value: Any, where: str) -> Options:
    if isinstance(value, str):
        return Options(queue=value)
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}: a route is a mapping or a queue name, got {value!r}")
    unknown = set(value) - _OPTION_KEYS - _IGNORED_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown route key(s) {', '.join(sorted(unknown))}; a route gives "
            f"send options such as queue, exchange, routing_key, priority, headers"
        )
    try:
        return Options.from_dict({k: v for k, v in value.items() if k in _OPTION_KEYS})
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def resolve(
    options: Options,
    topology: Topology,
    *,
    task: str = "",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    routes: Routes | None = None,
    eta: datetime | None = None,
    now: datetime | None = None,
) -> Route:
    """The route of task ``task`` sent with ``options`` (and due at ``eta``).

    ``options`` are the call's merged over the task's; ``routes`` come below them (see
    the module docstring). A destination queue is reached through the default exchange,
    so it alone receives the message; a :class:`~aioqueue.topology.Broadcast` through its
    fanout exchange; an ``exchange`` with ``routing_key`` (default: the queue's name, else
    ``""``), declaring the app's queues bound to it. A message not yet due is published
    to a delay bucket first.
    """
    if routes:
        routed = routes.match(task, args, kwargs, options)
        if routed is not None:
            options = routed.merged(options)
    name = options.queue or topology.default_queue
    bucket = None
    if eta is not None:
        assert now is not None, "an eta needs the current time"
        bucket = delay_bucket_ms((eta - now).total_seconds() * 1000)
    if options.exchange is not None:
        exchange = options.exchange
        key = options.routing_key if options.routing_key is not None else (options.queue or "")
        known = topology.exchanges.get(exchange)
        declare: tuple[Destination | Exchange, ...] = ()
        if known is not None:
            declare = (known, *topology.bound_to(exchange))
        return Route(exchange, key, declare, bucket)
    destination = topology.destination(name)
    if isinstance(destination, Broadcast):
        return Route(destination.name, "", (destination,), bucket)
    return Route("", name, (destination,), bucket)
