"""Remote control from the client side, in Celery's wire format: revoking tasks,
inspecting workers (``ping``, ``active``, ``reserved``, ``scheduled``, ...) and
controlling them (``shutdown``, ``add_consumer``, ``cancel_consumer``, ``rate_limit``).
Every command reaches aioqueue's workers and Celery's alike.

``await app.control.revoke(task_id)`` does two things, in this order:

1. it records the revocation in the broker's state store (``REVOKED_STATE``, one store
   per vhost) with its expiry, ``App(revoke_expires=...)`` seconds from now, so that a
   worker started later (or restarted) honours it;
2. it publishes Celery's ``revoke`` command to the ``celery.pidbox`` fanout exchange,
   which every running worker's pidbox queue receives, aioqueue's and Celery's alike.

The store comes first: once ``revoke`` returns, no worker that starts afterwards runs
the task, whether or not a worker was running when it was sent. A Celery client only
does step 2; an aioqueue worker records such a command in the store itself (see
``aioqueue.worker.pidbox``). Commands aioqueue sends carry :data:`STORED_HEADER` so
that workers do not write the store again.

What a revocation stops, on an aioqueue worker: a message whose id, ``root_id`` (its
chain or workflow) or ``group`` (its group or chord header) is revoked is not run; the
caller gets ``REVOKED`` and what waits further down the workflow is told. A task
already running goes on unless ``terminate=True``.

The store's records are encoded here too (:func:`encode_revocation`), since clients
write them and workers read them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .broker import Broker
from .exceptions import ConfigurationError, MessageError, PublishError
from .message import new_id
from .topology import (
    PIDBOX_EXCHANGE,
    PIDBOX_REPLY_EXCHANGE,
    REVOKED_STATE,
    pidbox_exchange,
    pidbox_reply_exchange,
    pidbox_reply_queue,
)
from .transport.base import Delivery, Envelope

__all__ = (
    "CONTROL_METHODS",
    "INSPECT_METHODS",
    "STORED_HEADER",
    "Control",
    "control_command",
    "decode_revocation",
    "encode_revocation",
    "merge_replies",
    "render_replies",
    "revocation_key",
    "revoke_command",
)

log = logging.getLogger("aioqueue.control")

#: The ``inspect`` commands workers answer (aioqueue's and Celery's alike).
INSPECT_METHODS = (
    "ping",
    "active",
    "reserved",
    "scheduled",
    "registered",
    "stats",
    "query_task",
    "revoked",
    "active_queues",
)

#: The control commands that change workers (aioqueue's and Celery's alike).
CONTROL_METHODS = ("revoke", "shutdown", "add_consumer", "cancel_consumer", "rate_limit")

#: Header of a control command whose revocation is in the state store already.
STORED_HEADER = "x-aioqueue-stored"


def revoke_command(
    task_ids: list[str],
    *,
    terminate: bool = False,
    ticket: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """The body of Celery's ``revoke`` command, keys in Celery's order (pure).

    One id travels as a string, several as a list (as Celery sends what it is given).
    ``ticket`` and ``reply_to`` are present only when replies are wanted.

    :param reply_to: the routing key replies go to, on ``reply.celery.pidbox``.
    """
    body: dict[str, Any] = {
        "method": "revoke",
        "arguments": {
            "task_id": task_ids[0] if len(task_ids) == 1 else list(task_ids),
            "terminate": terminate,
            # Celery's default; aioqueue cancels an async task whatever it says.
            "signal": "SIGTERM",
        },
        "destination": None,
        "pattern": None,
        "matcher": None,
    }
    if ticket is not None and reply_to is not None:
        body["ticket"] = ticket
        body["reply_to"] = {"exchange": PIDBOX_REPLY_EXCHANGE, "routing_key": reply_to}
    return body


def control_command(
    method: str,
    arguments: dict[str, Any],
    *,
    destination: list[str] | None = None,
    ticket: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """The body of Celery's control command ``method``, keys in Celery's order (pure).

    :param destination: the hostnames it is for (``None``: every worker).
    :param reply_to: the routing key replies go to, on ``reply.celery.pidbox``.
    """
    body: dict[str, Any] = {
        "method": method,
        "arguments": dict(arguments),
        "destination": destination or None,
        "pattern": None,
        "matcher": None,
    }
    if ticket is not None and reply_to is not None:
        body["ticket"] = ticket
        body["reply_to"] = {"exchange": PIDBOX_REPLY_EXCHANGE, "routing_key": reply_to}
    return body


def merge_replies(replies: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The replies ``[{hostname: answer}, ...]`` as one ``{hostname: answer}`` (pure)."""
    merged: dict[str, Any] = {}
    for reply in replies:
        merged.update(reply)
    return merged


def render_replies(replies: dict[str, Any]) -> str:
    """Replies as Celery's CLI prints them: ``-> host: OK pong`` (``ERROR reason``) per
    worker (pure)."""
    if not replies:
        return "Error: No nodes replied within time constraint"
    lines = []
    for hostname, answer in sorted(replies.items()):
        if isinstance(answer, dict) and set(answer) == {"ok"}:
            lines.append(f"->  {hostname}: OK {answer['ok']}")
        elif isinstance(answer, dict) and set(answer) == {"error"}:
            lines.append(f"->  {hostname}: ERROR {answer['error']}")
        elif isinstance(answer, list):
            lines.append(f"->  {hostname}: OK")
            lines += [
                f"    * {item if isinstance(item, str) else json.dumps(item)}" for item in answer
            ]
            if not answer:
                lines.append("    - empty -")
        else:
            lines.append(f"->  {hostname}: OK")
            lines.append(
                "    " + json.dumps(answer, indent=4, sort_keys=True).replace("\n", "\n    ")
            )
    return "\n".join(lines) + f"\n\n{len(replies)} node{'' if len(replies) == 1 else 's'} online."


def revocation_key(task_ids: Iterable[str]) -> str:
    """The store key of a revocation: the id itself for one (readable), a digest of the
    sorted ids for several. The same ids give the same key wherever they are recorded,
    so the workers that each record a Celery client's command write one key."""
    unique = sorted(set(task_ids))
    if len(unique) == 1:
        return unique[0]
    return "ids-" + hashlib.sha256("\n".join(unique).encode()).hexdigest()[:32]


def encode_revocation(task_ids: Iterable[str], expires_at: float) -> bytes:
    """A revocation as the state store keeps it: the ids and their expiry (Unix time)."""
    return json.dumps({"ids": sorted(set(task_ids)), "expires": expires_at}).encode()


def decode_revocation(value: bytes) -> tuple[list[str], float]:
    """The ids and expiry of a stored revocation.

    :raises MessageError: the value is not one (written by something else).
    """
    try:
        record = json.loads(value)
        ids, expires = record["ids"], record["expires"]
    except (ValueError, TypeError, KeyError) as exc:
        raise MessageError(f"not a revocation record: {exc!r}") from None
    ok_ids = isinstance(ids, list) and all(isinstance(i, str) for i in ids)
    ok_expires = isinstance(expires, int | float) and not isinstance(expires, bool)
    if not (ok_ids and ok_expires):
        raise MessageError("not a revocation record: ids must be strings, expires a number")
    return ids, float(expires)


def _queue(queue: str) -> str:
    if not isinstance(queue, str) or not queue.strip():
        raise ConfigurationError(f"a queue name is needed, got {queue!r}")
    return queue


def _task_ids(task_id: str | Iterable[str]) -> list[str]:
    """``task_id`` as a list of distinct ids, in the order given.

    :raises ConfigurationError: no id, or one that is not a non-empty string.
    """
    ids = [task_id] if isinstance(task_id, str) else list(task_id)
    if not ids or not all(isinstance(i, str) and i for i in ids):
        raise ConfigurationError(f"revoke needs task ids (non-empty strings), got {task_id!r}")
    return list(dict.fromkeys(ids))


class Control:
    """Celery's remote control, from the client side (``app.control``).

    :param broker: the broker layer to publish through.
    :param revoke_expires: seconds a revocation is kept in the state store.
    :param clock: the current Unix time (injected in tests).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        revoke_expires: float = 10_800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if revoke_expires <= 0:
            raise ConfigurationError(f"revoke_expires must be positive, got {revoke_expires!r}")
        self.broker = broker
        self.revoke_expires = revoke_expires
        self._clock = clock
        self._ticks = 0  # Celery's Lamport clock header; nothing here orders by it
        self._declared = -1  # the transport generation the exchange was declared under

    async def revoke(
        self,
        task_id: str | Iterable[str],
        *,
        terminate: bool = False,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Revoke tasks on every worker, now and for ``revoke_expires`` seconds.

        A revoked task that has not run yet is not run: its caller gets ``REVOKED``
        (:class:`~aioqueue.exceptions.TaskRevokedError` from ``get()``), and so do the
        steps after it. Revoking a workflow's root id (the first task of a chain) or a
        group's id stops the tasks of that workflow or group that have not run yet.

        :param task_id: one id or several.
        :param terminate: also cancel the task where it runs now (an async task; a sync
            task's thread cannot be stopped: it runs on, its result is not reported).
        :param reply: wait for the workers' replies (up to ``timeout``).
        :param timeout: seconds to wait for replies.
        :param limit: stop waiting after that many replies.
        :return: the replies, ``{hostname: answer}`` each (empty unless ``reply``).
        :raises ConfigurationError: no task id given.
        :raises BrokerError: the revocation could not be recorded or sent.
        """
        ids = _task_ids(task_id)
        broker = self.broker
        await broker.connect()
        # Recorded before it is sent: a worker starting in between reads it.
        value = encode_revocation(ids, self._clock() + self.revoke_expires)
        await broker.transport.state_put(REVOKED_STATE, revocation_key(ids), value)
        if not reply:
            await self._send(revoke_command(ids, terminate=terminate), timeout)
            return []
        return await self._call(
            lambda ticket, key: revoke_command(
                ids, terminate=terminate, ticket=ticket, reply_to=key
            ),
            timeout,
            limit,
        )

    async def broadcast(
        self,
        method: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: Iterable[str] | None = None,
        timeout: float = 1.0,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Send Celery's control command ``method`` and merge the replies.

        :param destination: the hostnames to address (``None``: every worker).
        :param timeout: seconds to wait for replies.
        :param limit: stop waiting after that many replies (default: one per
            destination when given).
        :return: ``{hostname: answer}`` of every worker that answered in time.
        :raises ConfigurationError: an empty method name.
        :raises BrokerError: the command could not be sent.
        """
        if not method:
            raise ConfigurationError("a control command needs a method name")
        hosts = None if destination is None else list(destination)
        if limit is None and hosts:
            limit = len(hosts)
        await self.broker.connect()
        replies = await self._call(
            lambda ticket, key: control_command(
                method, arguments or {}, destination=hosts, ticket=ticket, reply_to=key
            ),
            timeout,
            limit,
        )
        return merge_replies(replies)

    async def ping(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: {"ok": "pong"}}`` of every worker that answered in time."""
        return await self.broadcast("ping", destination=destination, timeout=timeout)

    async def registered(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [task names]}`` of every worker that answered in time."""
        return await self.broadcast("registered", destination=destination, timeout=timeout)

    async def stats(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: stats}`` (pid, pool, total, uptime) of the workers that answered."""
        return await self.broadcast("stats", destination=destination, timeout=timeout)

    async def active(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [request]}``: the tasks running on the workers that answered."""
        return await self.broadcast("active", destination=destination, timeout=timeout)

    async def query_task(
        self,
        task_id: str | Iterable[str],
        *,
        timeout: float = 1.0,
        destination: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """``{hostname: {task id: ["active", request]}}`` for the ids running there."""
        ids = _task_ids(task_id)
        return await self.broadcast(
            "query_task", {"ids": ids}, destination=destination, timeout=timeout
        )

    async def revoked(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [revoked task ids]}`` of the workers that answered in time."""
        return await self.broadcast("revoked", destination=destination, timeout=timeout)

    async def reserved(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [request]}``: the tasks each worker received and has not started
        (waiting for a free slot, or for their rate limit)."""
        return await self.broadcast("reserved", destination=destination, timeout=timeout)

    async def scheduled(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [{"eta", "priority", "request"}]}``: the eta tasks each worker
        holds until they are due. A Celery worker holds every countdown and eta task it
        received; an aioqueue worker only for the last few milliseconds, as the broker
        holds them until then (see ``aioqueue.worker.inspection``)."""
        return await self.broadcast("scheduled", destination=destination, timeout=timeout)

    async def active_queues(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``{hostname: [queue]}``: the queues each worker consumes now, as kombu
        describes them (name, exchange, routing key, ...)."""
        return await self.broadcast("active_queues", destination=destination, timeout=timeout)

    async def shutdown(
        self, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Stop workers as on SIGTERM: no new tasks, running ones finish.

        :return: ``{hostname: {"ok": "shutdown"}}`` of the aioqueue workers that
            answered; Celery workers stop without answering.
        """
        return await self.broadcast("shutdown", destination=destination, timeout=timeout)

    async def add_consumer(
        self,
        queue: str,
        *,
        exchange: str | None = None,
        exchange_type: str = "direct",
        routing_key: str | None = None,
        timeout: float = 1.0,
        destination: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Make workers declare ``queue`` and consume it.

        Without ``exchange``, an aioqueue worker uses its app's definition of ``queue``
        or the default shape (as ``-Q`` does), a Celery worker its own; with one, the
        queue is bound to that exchange with ``routing_key`` (default: the queue's name).

        :return: ``{hostname: {"ok": "add consumer <queue>"}}``, or ``{"error": ...}``
            from a worker that could not.
        :raises ConfigurationError: no queue name.
        """
        arguments = {
            "queue": _queue(queue),
            "exchange": exchange,
            "exchange_type": exchange_type,
            "routing_key": routing_key,
        }
        return await self.broadcast(
            "add_consumer", arguments, destination=destination, timeout=timeout
        )

    async def cancel_consumer(
        self, queue: str, *, timeout: float = 1.0, destination: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Make workers stop consuming ``queue``; what they received from it still runs.

        :return: ``{hostname: {"ok": "no longer consuming from <queue>"}}``; an aioqueue
            worker that does not consume it answers ``{"error": ...}`` saying so.
        :raises ConfigurationError: no queue name.
        """
        return await self.broadcast(
            "cancel_consumer", {"queue": _queue(queue)}, destination=destination, timeout=timeout
        )

    async def rate_limit(
        self,
        task_name: str,
        rate_limit: str | float | None,
        *,
        timeout: float = 1.0,
        destination: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Set a task's rate limit on workers, from its next message on.

        :param rate_limit: ``"10/s"``, ``"100/m"``, ``"5/h"``, a number per second;
            ``None``, ``""`` or ``0``: no limit.
        :return: ``{hostname: {"ok": "new rate limit set successfully"}}`` (or ``"rate
            limit disabled successfully"``), or ``{"error": ...}`` for a task the worker
            does not know or a rate it cannot read.
        :raises ConfigurationError: no task name.
        """
        if not task_name:
            raise ConfigurationError("rate_limit needs a task name")
        arguments = {"task_name": task_name, "rate_limit": rate_limit}
        return await self.broadcast(
            "rate_limit", arguments, destination=destination, timeout=timeout
        )

    async def _call(
        self,
        build: Callable[[str, str], dict[str, Any]],
        timeout: float,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        """Send the command ``build(ticket, reply key)`` makes with a reply queue of this
        call's own, collect the replies."""
        transport, codec = self.broker.transport, self.broker.codec
        ticket, client_id = new_id(), new_id()
        queue, binding = pidbox_reply_queue(client_id)
        await transport.declare_exchange(pidbox_reply_exchange())
        await transport.declare_queue(queue)
        await transport.bind(binding)
        replies: list[dict[str, Any]] = []
        enough = asyncio.Event()

        async def collect(delivery: Delivery) -> None:
            envelope = delivery.envelope
            if envelope.headers.get("ticket") != ticket:
                return  # a late reply to an earlier call
            try:
                answer = codec.decode(envelope.body, envelope.content_type)
            except MessageError as exc:
                log.warning("ignoring a control reply that cannot be read: %s", exc)
                return
            if isinstance(answer, dict):
                replies.append(answer)
                if limit is not None and len(replies) >= limit:
                    enough.set()

        consumer = await transport.consume(queue.name, collect, prefetch=16, no_ack=True)
        try:
            body = build(ticket, client_id)
            await self._send(body, timeout)
            try:
                async with asyncio.timeout(timeout):
                    await enough.wait()
            except TimeoutError:
                pass  # the replies that came in time are the answer
        finally:
            await consumer.close()
            # Exclusive, it would go with the connection; a long-lived client's calls
            # would pile up until then.
            await transport.delete_queue(queue.name)
        return replies

    async def _send(self, body: dict[str, Any], timeout: float) -> None:
        broker = self.broker
        await self._declare()
        self._ticks += 1
        envelope = Envelope(
            body=broker.codec.encode(body),
            # As Celery's: the sender's clock, and when a reply stops being awaited.
            headers={"clock": self._ticks, "expires": self._clock() + timeout, STORED_HEADER: True},
            content_type=broker.codec.content_type,
            content_encoding=broker.codec.content_encoding,
            priority=0,
        )
        # Not mandatory: with no worker running the command reaches nobody, and the
        # store already holds the revocation for the workers to come.
        try:
            await broker.send(envelope, "", exchange=PIDBOX_EXCHANGE)
        except PublishError:
            # The exchange went behind the cache (deleted): declared again, sent once more.
            self._declared = -1
            await self._declare()
            await broker.send(envelope, "", exchange=PIDBOX_EXCHANGE)

    async def _declare(self) -> None:
        transport = self.broker.transport
        if self._declared != transport.generation:
            # Not durable: a broker restart loses it, and the generation changes then.
            await transport.declare_exchange(pidbox_exchange())
            self._declared = transport.generation
