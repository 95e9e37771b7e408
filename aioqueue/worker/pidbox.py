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
the state store), ``ping``, ``revoked``, ``registered``, ``stats``, ``active``,
``reserved``, ``scheduled``, ``active_queues`` and ``query_task`` (from the worker's read-only
:class:`~aioqueue.worker.inspection.Inspection`), and ``shutdown``, ``add_consumer``,
``cancel_consumer`` and ``rate_limit`` (through the worker's
:class:`~aioqueue.worker.commands.Controls`; that module describes them).

A message that is not a control command is logged with the reason and ignored. A
command that cannot be carried out (arguments that do not fit, an unknown task or queue,
a command aioqueue workers do not serve) is logged, and answered with Celery's
``{"error": reason}`` when the sender waits for a reply, as a Celery worker answers.
Only ``shutdown`` stops a worker. :func:`parse_command` and the answers are pure.
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
    UnknownTaskError,
)
from ..topology import pidbox_exchange, pidbox_queue, pidbox_reply_exchange
from ..transport.base import Consumer, Delivery, Envelope
from .commands import (
    Controls,
    cancel_consumer_arguments,
    consumer_arguments,
    error,
    ok,
    rate_limit_arguments,
)
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
# What Celery workers ask one another as they start (mingle): no answer is "no
# neighbour to sync with", where an error would be read as a neighbour's data.
_UNANSWERED = frozenset({"hello"})


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


def _inspect(command: Command, inspection: Inspection) -> Any:
    """The answer to an ``inspect`` command from ``inspection``; ``None``: not one."""
    method = command.method
    if method == "registered":
        return inspection.registered()
    if method == "stats":
        return inspection.stats()
    if method == "active":
        return inspection.active()
    if method == "query_task":
        return query_answer(inspection.active(), command.arguments)
    if method == "reserved":
        return inspection.reserved()
    if method == "scheduled":
        return inspection.scheduled()
    if method == "active_queues":
        return inspection.active_queues()
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Pidbox:
    """Consumes the worker's pidbox queue and serves control commands.

    :param broker: the broker layer (its transport and codec).
    :param revocations: the worker's revocations, which ``revoke`` updates.
    :param hostname: the worker's name.
    :param inspection: what the ``inspect`` commands answer from (none: not served).
    :param controls: what ``shutdown``, ``add_consumer``, ``cancel_consumer`` and
        ``rate_limit`` act on (none: not served).
    """

    def __init__(
        self,
        broker: Broker,
        revocations: Revocations,
        hostname: str,
        inspection: Inspection | None = None,
        controls: Controls | None = None,
    ) -> None:
        self.broker = broker
        self.inspection = inspection
        self.controls = controls
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
        except MessageError as exc:
            log.warning("ignoring a control message on %s: %s", self.queue, exc)
            return
        try:
            answer = await self._serve(command, envelope)
        except MessageError as exc:
            log.warning("ignoring a control message on %s: %s", self.queue, exc)
            answer = error(str(exc))
        except AioQueueError as exc:
            log.warning("control command %r on %s failed: %s", command.method, self.queue, exc)
            answer = error(str(exc))
        except Exception as exc:
            # Whatever went wrong, the worker goes on: the command is lost, not the worker.
            log.exception("control command on %s failed", self.queue)
            answer = error(repr(exc))  # what a Celery worker answers
        if answer is not None and command.wants_reply:
            await self._reply(command, answer)
        if command.method == "shutdown" and self.controls is not None:
            # After the reply: the sender hears of it before the pidbox goes.
            log.warning("%s (control command shutdown)", command.arguments.get("msg") or "shutdown")
            self.controls.request_shutdown()

    async def _serve(self, command: Command, envelope: Envelope) -> Any:
        """Carry out ``command``; returns the answer, or ``None`` for none."""
        if command.method == "revoke":
            return await self._revoke(command, envelope)
        if command.method == "ping":
            return {"ok": "pong"}
        if command.method == "revoked":
            return self.revocations.ids.live()
        if self.inspection is not None:
            answer = _inspect(command, self.inspection)
            if answer is not None:
                return answer
        if self.controls is not None:
            answer = await self._control(command, self.controls)
            if answer is not None:
                return answer
        reason = f"control command {command.method!r} is not served by aioqueue workers"
        log.info("%s; ignored", reason)
        if command.method in _UNANSWERED:
            return None
        return error(reason)

    async def _control(self, command: Command, controls: Controls) -> dict[str, str] | None:
        """Carry out a command that changes the worker; ``None``: not one of those."""
        method, arguments = command.method, command.arguments
        if method == "shutdown":
            return ok("shutdown")  # the worker stops once this is answered
        if method == "add_consumer":
            request = consumer_arguments(arguments)
            if await controls.add_consumer(request.queue, request.definition):
                log.info("consuming %s (control command add_consumer)", request.queue)
            return ok(f"add consumer {request.queue}")
        if method == "cancel_consumer":
            queue = cancel_consumer_arguments(arguments)
            await controls.cancel_consumer(queue)
            log.info("no longer consuming %s (control command cancel_consumer)", queue)
            return ok(f"no longer consuming from {queue}")
        if method == "rate_limit":
            limit = rate_limit_arguments(arguments)
            try:
                controls.set_rate_limit(limit.task_name, limit.rate)
            except UnknownTaskError:
                # Celery's words first: "unknown task".
                log.warning("rate_limit: unknown task %r", limit.task_name)
                return error(f"unknown task {limit.task_name!r}: not registered on this worker")
            log.info("rate limit of %s: %s", limit.task_name, arguments.get("rate_limit"))
            if not limit.given:
                return ok("rate limit disabled successfully")
            return ok("new rate limit set successfully")
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
