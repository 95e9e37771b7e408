"""What a worker shows its pidbox: a small read-only view, so that the control commands
answer from it rather than from the consumer's internals.

Besides the tasks running now (``inspect active``), the view holds the messages this
worker received and has not started (``inspect reserved``: waiting for a free slot, or
for the task's rate limit) and the ones it holds until their eta (``inspect
scheduled``). aioqueue delays countdowns and etas in the broker's delay queues rather
than in the worker (DESIGN.md says why), so a worker holds an eta task only for the last
few milliseconds before it is due (``aioqueue.routing.MIN_DELAY_MS``): ``scheduled`` is
nearly always an empty list, which is the truth. A message is described from its
envelope only when asked: a worker that nobody inspects decodes nothing more.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from ..exceptions import MessageError
from ..message import TaskMessage
from ..topology import Binding, Broadcast, Destination, Exchange
from ..transport.base import Delivery, Envelope

__all__ = (
    "ETA_PRIORITY",
    "Inspection",
    "WorkerView",
    "broker_info",
    "delivery_info",
    "query_answer",
    "queue_info",
    "request_info",
    "rusage",
    "scheduled_info",
    "stats_answer",
)

#: The ``priority`` Celery's ``inspect scheduled`` shows: its timer's, the same for
#: every eta task (not the message's priority).
ETA_PRIORITY = 6


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

    def reserved(self) -> list[dict[str, Any]]:
        """Celery's request dicts of the tasks received and not started."""
        ...

    def scheduled(self) -> list[dict[str, Any]]:
        """Celery's ``{"eta", "priority", "request"}`` of the eta tasks held here."""
        ...

    def active_queues(self) -> list[dict[str, Any]]:
        """Celery's descriptions of the queues consumed now."""
        ...


def queue_info(name: str, destination: Destination) -> dict[str, Any]:
    """Celery's (kombu's) description of a queue consumed as ``name``, as ``inspect
    active_queues`` lists it and Flower shows it (pure)."""
    rest: Sequence[Binding] = ()
    if isinstance(destination, Broadcast):
        exchange, key = destination.exchange, ""
        arguments: dict[str, Any] = {}
        options: dict[str, Any] = {}
        durable, exclusive = False, True  # the worker's own queue, bound to the fanout
    else:
        first, *rest = destination.all_bindings()
        exchange, key = first.target, first.routing_key
        arguments = dict(destination.arguments)
        options = {
            "message_ttl": destination.message_ttl,
            "max_length": destination.max_length,
            "max_length_bytes": destination.max_length_bytes,
            "max_priority": destination.max_priority,
        }
        durable, exclusive = True, False
    return {
        "name": name,
        "exchange": _exchange_info(exchange),
        "routing_key": key,
        "queue_arguments": arguments or None,
        "binding_arguments": None,
        "consumer_arguments": None,
        "durable": durable,
        "exclusive": exclusive,
        "auto_delete": exclusive,
        "no_ack": False,
        "alias": None,
        "bindings": [
            {
                "exchange": _exchange_info(b.target),
                "routing_key": b.routing_key,
                "arguments": None if b.headers is None else {"x-match": b.match, **b.headers},
                "unbind_arguments": None,
            }
            for b in rest
        ],
        "no_declare": None,
        "expires": None,
        "message_ttl": None,
        "max_length": None,
        "max_length_bytes": None,
        "max_priority": None,
        **options,
    }


def _exchange_info(exchange: Exchange) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "type": exchange.type,
        "arguments": dict(exchange.arguments) or None,
        "durable": exchange.durable,
        "passive": False,
        "auto_delete": False,
        "delivery_mode": None,
        "no_declare": False,
    }


def delivery_info(queue: str, priority: int | None, redelivered: bool) -> dict[str, Any]:
    """Celery's ``delivery_info`` of a request (pure). aioqueue's messages reach a queue
    through the default exchange with the queue's name as routing key, as Celery's do."""
    return {
        "exchange": "",
        "routing_key": queue,
        "priority": priority or 0,
        "redelivered": redelivered,
    }


def request_info(
    message: TaskMessage,
    hostname: str,
    started: float | None,
    delivery: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Celery's description of a request (pure): running (``started`` is when, as
    ``inspect active`` lists it) or not started yet (``None``: ``reserved`` and
    ``scheduled``, not acknowledged, no worker process)."""
    return {
        "id": message.id,
        "name": message.task,
        "args": list(message.args),
        "kwargs": dict(message.kwargs),
        "type": message.task,
        "hostname": hostname,
        "time_start": started,
        "acknowledged": started is not None,
        "delivery_info": dict(delivery or delivery_info("", 0, False)),
        "worker_pid": os.getpid() if started is not None else None,
    }


def scheduled_info(
    message: TaskMessage, hostname: str, eta: datetime | None, delivery: Mapping[str, Any]
) -> dict[str, Any]:
    """One entry of Celery's ``inspect scheduled`` answer (pure)."""
    return {
        "eta": eta.isoformat() if eta is not None else None,
        "priority": ETA_PRIORITY,
        "request": request_info(message, hostname, None, delivery),
    }


def broker_info(nodes: Sequence[str], *, connect_timeout: float | None = None) -> dict[str, Any]:
    """Celery's ``broker`` entry of ``inspect stats`` for the broker ``nodes`` (pure):
    the first node's parts, the others as ``alternates``; never a password.

    >>> broker_info(["amqp://guest:secret@h:5672/v"])["virtual_host"]
    'v'
    """
    if not nodes:
        return {}
    parts = urlsplit(nodes[0])
    query = parse_qs(parts.query)
    heartbeat = query.get("heartbeat", ["60"])[0]
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {
        "hostname": parts.hostname or "localhost",
        "userid": unquote(parts.username or "guest"),
        "virtual_host": vhost,
        "port": parts.port or (5671 if parts.scheme == "amqps" else 5672),
        "insist": False,
        "ssl": parts.scheme == "amqps",
        "transport": "memory" if parts.scheme == "memory" else "amqp",
        "connect_timeout": connect_timeout,
        "transport_options": {},
        "login_method": "PLAIN",
        "uri_prefix": None,
        "heartbeat": float(heartbeat) if heartbeat.replace(".", "", 1).isdigit() else None,
        "failover_strategy": "round-robin",
        "alternates": [_without_password(node) for node in nodes[1:]],
        "credential_provider": None,
    }


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{hosts}"
    return parts._replace(netloc=netloc).geturl()


def rusage() -> dict[str, Any]:
    """Celery's ``rusage`` entry of ``inspect stats``: this process's resource usage."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    names = (
        *("maxrss", "ixrss", "idrss", "isrss", "minflt", "majflt", "nswap", "inblock"),
        *("oublock", "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw"),
    )
    return {
        "utime": usage.ru_utime,
        "stime": usage.ru_stime,
        **{name: getattr(usage, f"ru_{name}") for name in names},
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
    *,
    pid: int,
    concurrency: int,
    totals: Mapping[str, int],
    uptime: float,
    broker: dict[str, Any],
    prefetch: int | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Celery's ``inspect stats`` reply shape, with what aioqueue knows (pure).

    :param totals: the tasks processed so far, per task name (Celery's ``total``).
    """
    return {
        "total": dict(totals),
        "pid": pid,
        "uptime": int(uptime),
        "pool": {"max-concurrency": concurrency, "implementation": "aioqueue:asyncio"},
        "broker": broker,
        "prefetch_count": concurrency if prefetch is None else prefetch,
        "rusage": usage or {},
    }


@dataclass(slots=True)
class WorkerView:
    """An :class:`Inspection` built from callables the worker hands over.

    :param tasks: the registered task names.
    :param concurrency: the worker's concurrency.
    :param totals: the tasks processed so far, per task name.
    :param broker: broker facts for ``stats`` (no password).
    :param decode: the task message in an envelope (raises
        :class:`~aioqueue.exceptions.MessageError`), to describe a reserved delivery.
    :param queues: the queues consumed now, as (name consumed, definition).
    """

    tasks: Callable[[], list[str]]
    concurrency: int
    totals: Callable[[], Mapping[str, int]]
    broker: dict[str, Any] = field(default_factory=dict)
    hostname: str = ""
    prefetch: int | None = None
    decode: Callable[[Envelope], TaskMessage] | None = None
    #: The queues consumed now: (the name consumed, its definition).
    queues: Callable[[], list[tuple[str, Destination]]] = list
    started: float = field(default_factory=time.monotonic)
    # Task id -> its message, delivery and start time; described only when asked, so
    # that running a task costs two dict operations, not a description.
    _active: dict[str, tuple[TaskMessage, Delivery | None, float]] = field(default_factory=dict)
    # id(delivery) -> the delivery, and its message when it was decoded already.
    _reserved: dict[int, tuple[Delivery, TaskMessage | None]] = field(default_factory=dict)
    _scheduled: dict[int, tuple[Delivery, TaskMessage]] = field(default_factory=dict)

    @contextmanager
    def running(self, message: TaskMessage, delivery: Delivery | None = None) -> Iterator[None]:
        """Shows ``message`` as active while the block runs (the worker's side)."""
        self._active[message.id] = (message, delivery, time.time())
        try:
            yield
        finally:
            self._active.pop(message.id, None)

    @contextmanager
    def waiting(self, delivery: Delivery, message: TaskMessage | None = None) -> Iterator[None]:
        """Shows ``delivery`` as reserved while the block runs (received, not started)."""
        key = id(delivery)
        self._reserved[key] = (delivery, message)
        try:
            yield
        finally:
            self._reserved.pop(key, None)

    @contextmanager
    def holding(self, delivery: Delivery, message: TaskMessage) -> Iterator[None]:
        """Shows ``message`` as scheduled while the block runs (held until its eta)."""
        key = id(delivery)
        self._scheduled[key] = (delivery, message)
        try:
            yield
        finally:
            self._scheduled.pop(key, None)

    def active(self) -> list[dict[str, Any]]:
        """Celery's request dicts of the tasks running now."""
        return [
            request_info(
                message, self.hostname, started, None if delivery is None else _info(delivery)
            )
            for message, delivery, started in list(self._active.values())
        ]

    def reserved(self) -> list[dict[str, Any]]:
        """Celery's request dicts of the tasks received and not started; a delivery
        that cannot be decoded is left out (the worker dead-letters it)."""
        answer = []
        for delivery, message in list(self._reserved.values()):
            if message is None and self.decode is not None:
                try:
                    message = self.decode(delivery.envelope)
                except MessageError:
                    continue
            if message is not None:
                answer.append(request_info(message, self.hostname, None, _info(delivery)))
        return answer

    def active_queues(self) -> list[dict[str, Any]]:
        """Celery's descriptions of the queues consumed now."""
        return [queue_info(name, destination) for name, destination in self.queues()]

    def scheduled(self) -> list[dict[str, Any]]:
        """Celery's ``{"eta", "priority", "request"}`` of the eta tasks held here."""
        return [
            scheduled_info(message, self.hostname, message.eta, _info(delivery))
            for delivery, message in list(self._scheduled.values())
        ]

    def registered(self) -> list[str]:
        """The names of the tasks this worker runs, sorted."""
        return sorted(self.tasks())

    def stats(self) -> dict[str, Any]:
        """Celery's ``stats`` answer for this worker."""
        return stats_answer(
            pid=os.getpid(),
            concurrency=self.concurrency,
            totals=self.totals(),
            uptime=time.monotonic() - self.started,
            broker=dict(self.broker),
            prefetch=self.prefetch,
            usage=rusage(),
        )


def _info(delivery: Delivery) -> dict[str, Any]:
    return delivery_info(delivery.queue, delivery.envelope.priority, delivery.redelivered)
