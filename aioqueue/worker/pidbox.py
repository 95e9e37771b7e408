"""The worker's mailbox: Celery's remote control, so ``celery control revoke`` works.

Each worker consumes its own queue ``<hostname>.celery.pidbox`` (exclusive, no_ack, as
Celery's), bound to the ``celery.pidbox`` fanout exchange every control command is
published to. A command is a JSON object (CELERY_PROTOCOL.md §8)::

    {"method": "revoke", "arguments": {"task_id": ..., "terminate": false, ...},
     "destination": null, "pattern": null, "matcher": null,
     "ticket": "<uuid>", "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": ...}}

``destination`` (a list of hostnames) or ``pattern`` with ``matcher`` (``glob``,
``pcre``) address some workers only; ``ticket`` and ``reply_to`` come when the sender
wants a reply, which goes to that exchange and key as ``{hostname: answer}``.

Served: ``revoke`` (see ``aioqueue.worker.revocations``; a command without
:data:`~aioqueue.control.STORED_HEADER`, i.e. from a Celery client, is also written to
the state store), ``ping``, ``revoked``, ``registered``, ``stats``, ``active`` and
``query_task`` (from the worker's read-only
:class:`~aioqueue.worker.inspection.Inspection`). Anything else, and anything malformed, is
logged with the reason and ignored: a control message never stops a worker.
:func:`parse_command` and the answers are pure.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any

from ..broker import Broker
from ..control import STORED_HEADER
from ..exceptions import (
    AioQueueError,
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    MalformedMessageError,
    MessageError,
)
from ..topology import pidbox_exchange, pidbox_queue, pidbox_reply_exchange
from ..transport.base import Consumer, Delivery, Envelope
from .inspection import Inspection, query_answer
from .revocations import Revocations

__all__ = (
    "Command",
    "Pidbox",
    "addressed_to",
    "default_hostname",
    "parse_command",
    "revoke_answer",
    "revoke_arguments",
)

log = logging.getLogger("aioqueue.worker")

# Control commands handled at once, at most; they are quick.
_PREFETCH = 16


def default_hostname(worker_id: str) -> str:
    """A worker's default name: ``aioqueue.<worker id>@<host>``.

    Unique per worker rather than Celery's ``celery@<host>``: each pidbox queue is
    exclusive, so a second worker of one name could not start, and aioqueue runs several
    worker processes per host (one per core). Give ``hostname=`` for a stable name.
    """
    return f"aioqueue.{worker_id}@{socket.gethostname()}"


@dataclass(frozen=True, slots=True)
class Command:
    """One control command, checked."""

    method: str
    arguments: dict[str, Any]
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None
    ticket: str | None = None
    reply_exchange: str | None = None
    reply_key: str | None = None

    @property
    def wants_reply(self) -> bool:
        """Whether the sender waits for a reply (it gave ``reply_to`` and a ``ticket``)."""
        return self.reply_key is not None and self.ticket is not None


def parse_command(body: Any) -> Command:
    """The command in a decoded pidbox message (pure).

    :raises MalformedMessageError: it is not a control command; the message says why.
    """
    if not isinstance(body, dict):
        raise MalformedMessageError(f"a control command is a JSON object, not {_kind(body)}")
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise MalformedMessageError(f"'method' must be a command name, got {method!r}")
    arguments = body.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise MalformedMessageError(
            f"{method}: 'arguments' must be an object, not {_kind(arguments)}"
        )
    destination = body.get("destination")
    if destination is not None and not (
        isinstance(destination, list) and all(isinstance(d, str) for d in destination)
    ):
        raise MalformedMessageError(f"{method}: 'destination' must be a list of hostnames")
    pattern, matcher = body.get("pattern"), body.get("matcher")
    if not all(v is None or isinstance(v, str) for v in (pattern, matcher)):
        raise MalformedMessageError(f"{method}: 'pattern' and 'matcher' must be strings")
    ticket = body.get("ticket")
    reply_to = body.get("reply_to")
    exchange = key = None
    if reply_to is not None:
        if not (
            isinstance(reply_to, dict)
            and isinstance(reply_to.get("exchange"), str)
            and isinstance(reply_to.get("routing_key"), str)
            and isinstance(ticket, str)
        ):
            raise MalformedMessageError(
                f"{method}: 'reply_to' must be {{exchange, routing_key}} with a 'ticket'"
            )
        exchange, key = reply_to["exchange"], reply_to["routing_key"]
    return Command(
        method,
        arguments,
        destination,
        pattern,
        matcher,
        ticket if isinstance(ticket, str) else None,
        exchange,
        key,
    )


def addressed_to(command: Command, hostname: str) -> bool:
    """Whether ``command`` is for the worker ``hostname``, as kombu decides (pure).

    :raises MalformedMessageError: an unknown matcher, or a pattern that is no regex.
    """
    if command.destination:
        return hostname in command.destination
    if command.pattern and command.matcher:
        if command.matcher == "glob":
            return fnmatch.fnmatch(hostname, command.pattern)
        if command.matcher == "pcre":
            try:
                return re.match(command.pattern, hostname) is not None
            except re.error as exc:
                raise MalformedMessageError(f"pattern {command.pattern!r}: {exc}") from None
        raise MalformedMessageError(f"unknown matcher {command.matcher!r} (glob or pcre)")
    return True


def revoke_arguments(arguments: dict[str, Any]) -> tuple[list[str], bool]:
    """The task ids and ``terminate`` flag of a ``revoke`` command (pure).

    :raises MalformedMessageError: ``task_id`` is not an id or a list of ids.
    """
    given = arguments.get("task_id")
    ids = [given] if isinstance(given, str) else given
    if not (isinstance(ids, list) and ids and all(isinstance(i, str) and i for i in ids)):
        raise MalformedMessageError(
            f"revoke: 'task_id' must be a task id or a list of them, got {given!r}"
        )
    return list(dict.fromkeys(ids)), bool(arguments.get("terminate"))


def revoke_answer(task_ids: list[str], terminated: list[str] | None) -> dict[str, str]:
    """Celery's answer to ``revoke`` (pure): with ``terminate``, the ids terminated here."""
    if terminated is not None:
        return {"ok": f"terminate: {', '.join(terminated) or 'tasks unknown'}"}
    # Celery formats a Python set.
    return {"ok": f"tasks {{{', '.join(repr(i) for i in task_ids)}}} flagged as revoked"}


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Pidbox:
    """Consumes the worker's pidbox queue and serves control commands.

    :param broker: the broker layer (its transport and codec).
    :param revocations: the worker's revocations, which ``revoke`` updates.
    :param hostname: the worker's name.
    :param inspection: what ``registered`` and ``stats`` answer from (none: not served).
    """

    def __init__(
        self,
        broker: Broker,
        revocations: Revocations,
        hostname: str,
        inspection: Inspection | None = None,
    ) -> None:
        self.broker = broker
        self.inspection = inspection
        self.revocations = revocations
        self.hostname = hostname
        spec, self._binding = pidbox_queue(hostname)
        self._spec = spec
        self.queue = spec.name
        self._consumer: Consumer | None = None
        self._clock = 0  # Lamport clock, as Celery's replies carry one
        self._reply_exchanges: dict[str, int] = {}  # name -> generation declared under

    async def start(self) -> Consumer:
        """Declare the pidbox queue, bind it and consume it; returns the consumer.

        :raises ConfigurationError: a running worker already has this hostname.
        :raises BrokerError: the queue cannot be declared or consumed.
        """
        transport = self.broker.transport
        await transport.declare_exchange(pidbox_exchange())
        try:
            await transport.declare_queue(self._spec)
        except BrokerConnectionError:
            raise
        except BrokerError as exc:
            # RabbitMQ refuses another connection's exclusive queue (RESOURCE_LOCKED).
            raise BrokerError(
                f"worker {self.hostname!r}: cannot declare its control queue {self.queue!r} "
                f"(is a worker of that hostname running?): {exc}"
            ) from exc
        await transport.bind(self._binding)
        state = await transport.inspect_queue(self.queue)
        if state is not None and state.consumers:
            # On this very connection, so the broker allowed it: revokes would be
            # shared out between the two workers instead of reaching both.
            raise ConfigurationError(
                f"a running worker already has the hostname {self.hostname!r}: "
                "give each worker its own"
            )
        self._consumer = await transport.consume(
            self.queue, self._on_delivery, prefetch=_PREFETCH, no_ack=True
        )
        return self._consumer

    async def aclose(self) -> None:
        """Stop consuming and delete the queue (it would expire on its own)."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await consumer.close()
            await self.broker.transport.delete_queue(self.queue)
        except AioQueueError as exc:
            log.warning("closing the control queue %s: %s", self.queue, exc)

    # -- one command -----------------------------------------------------------------------

    async def _on_delivery(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        clock = envelope.headers.get("clock")
        self._clock = max(self._clock, clock if isinstance(clock, int) else 0) + 1
        try:
            command = parse_command(self.broker.codec.decode(envelope.body, envelope.content_type))
            if not addressed_to(command, self.hostname):
                return
            answer = await self._serve(command, envelope)
        except MessageError as exc:
            log.warning("ignoring a control message on %s: %s", self.queue, exc)
            return
        except Exception:
            # Whatever went wrong, the worker goes on: the command is lost, not the worker.
            log.exception("control command on %s failed", self.queue)
            return
        if answer is not None and command.wants_reply:
            await self._reply(command, answer)

    async def _serve(self, command: Command, envelope: Envelope) -> Any:
        """Carry out ``command``; returns the answer, or ``None`` for none."""
        if command.method == "revoke":
            return await self._revoke(command, envelope)
        if command.method == "ping":
            return {"ok": "pong"}
        if command.method == "revoked":
            return self.revocations.ids.live()
        if command.method == "registered" and self.inspection is not None:
            return self.inspection.registered()
        if command.method == "stats" and self.inspection is not None:
            return self.inspection.stats()
        if command.method == "active" and self.inspection is not None:
            return self.inspection.active()
        if command.method == "query_task" and self.inspection is not None:
            return query_answer(self.inspection.active(), command.arguments)
        log.info("control command %r is not served by aioqueue workers; ignored", command.method)
        return None

    async def _revoke(self, command: Command, envelope: Envelope) -> dict[str, str]:
        ids, terminate = revoke_arguments(command.arguments)
        revocations = self.revocations
        # Memory first: from here on, a delivery of one of these is not run.
        expires_at = revocations.revoke(ids)
        terminated = revocations.terminate(ids) if terminate else None
        log.info(
            "tasks revoked: %s%s",
            ", ".join(ids),
            "" if terminated is None else f" (terminated here: {', '.join(terminated) or 'none'})",
        )
        if envelope.headers.get(STORED_HEADER) is not True:
            # A Celery client's: written for the workers that start later.
            try:
                await revocations.record(ids, expires_at)
            except AioQueueError as exc:
                log.warning("revocation of %s not stored (not kept across restarts): %s", ids, exc)
        return revoke_answer(ids, terminated)

    async def _reply(self, command: Command, answer: Any) -> None:
        assert command.reply_exchange is not None and command.reply_key is not None
        transport, codec = self.broker.transport, self.broker.codec
        self._clock += 1
        envelope = Envelope(
            body=codec.encode({self.hostname: answer}),
            headers={"ticket": command.ticket, "clock": self._clock},
            content_type=codec.content_type,
            content_encoding=codec.content_encoding,
            priority=0,
            persistent=False,
        )
        exchange = command.reply_exchange
        try:
            # The default exchange ("") always exists, and cannot be declared.
            if exchange and self._reply_exchanges.get(exchange) != transport.generation:
                await transport.declare_exchange(pidbox_reply_exchange(exchange))
                self._reply_exchanges[exchange] = transport.generation
            await self.broker.send(envelope, command.reply_key, exchange=exchange)
        except AioQueueError as exc:
            log.warning("reply to control command %r not sent: %s", command.method, exc)
