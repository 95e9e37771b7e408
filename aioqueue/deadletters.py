"""Dead letters: what waits in a queue's ``.dlq``, and sending it back.

A message reaches ``<queue>.dlq`` in one of two ways. The worker parks it there itself
(bad input, an outcome it could not publish, too many redeliveries) with the reason in
its ``x-aioqueue-error`` / ``x-aioqueue-error-type`` headers and the queue it came from
in ``x-aioqueue-queue``; or RabbitMQ dead-letters it (a reject without requeue, a
``max-length`` overflow, an expiry) and adds its ``x-death`` table instead.

The pure part (:class:`DeadLetter`, :func:`select`, :func:`replay_publishes`, the
``render_*`` functions) decides and formats; :func:`read`, :func:`replay` and
:func:`purge` carry it out on a :class:`~aioqueue.transport.base.Transport`. A replay
takes the whole ``.dlq`` under its lock (``take_all``) and, in one commit, publishes the
chosen messages to their queues and the others back to the ``.dlq``: nothing is lost
or doubled if the process dies half-way, and a message that arrives meanwhile is not
part of the batch and stays where it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .exceptions import BrokerError
from .topology import (
    DEATH_HEADERS,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    ORIGIN_HEADER,
    REDELIVERIES_HEADER,
    dlq_name,
)
from .transport.base import Batch, Envelope, Publish, Transport

__all__ = (
    "DeadLetter",
    "ReplayResult",
    "dead_letters",
    "purge",
    "read",
    "render_list",
    "render_one",
    "replay",
    "replay_publishes",
    "select",
)

# What a replayed message leaves behind: the reasons (the worker's and RabbitMQ's), and
# the worker's redelivery count (a replay is a fresh start, not one more redelivery).
_DROPPED_HEADERS = (
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    ORIGIN_HEADER,
    REDELIVERIES_HEADER,
    *DEATH_HEADERS,
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a ``.dlq``, and what its headers say about it."""

    #: Its place in the ``.dlq``, from 1.
    position: int
    envelope: Envelope
    #: The registered task name (Celery's ``task`` header), or ``None``.
    task: str | None
    #: The task id (``id`` header, else the correlation id), or ``None``.
    id: str | None
    #: Where a replay sends it: the queue it was dead-lettered from.
    queue: str
    #: Why it is here: the worker's error, or RabbitMQ's ``x-death`` reason.
    reason: str

    @classmethod
    def from_envelope(cls, position: int, envelope: Envelope, default_queue: str) -> DeadLetter:
        """``envelope`` as the ``position``-th message of ``default_queue``'s ``.dlq``."""
        headers = envelope.headers
        task_id = _text(headers.get("id")) or envelope.correlation_id
        return cls(
            position=position,
            envelope=envelope,
            task=_text(headers.get("task")),
            id=task_id,
            queue=_text(headers.get(ORIGIN_HEADER)) or _death_queue(headers) or default_queue,
            reason=reason(headers),
        )


def dead_letters(envelopes: Iterable[Envelope], default_queue: str) -> list[DeadLetter]:
    """The messages taken from ``default_queue``'s ``.dlq``, in their order."""
    return [DeadLetter.from_envelope(i, e, default_queue) for i, e in enumerate(envelopes, 1)]


def reason(headers: dict[str, Any]) -> str:
    """Why a message was dead-lettered, in one line (``unknown`` when nothing says)."""
    error = _text(headers.get(ERROR_HEADER))
    error_type = _text(headers.get(ERROR_TYPE_HEADER))
    if error is not None or error_type is not None:
        return ": ".join(part for part in (error_type, error) if part)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        # The newest death comes first.
        death = deaths[0]
        text = f"RabbitMQ: {_text(death.get('reason')) or 'dead-lettered'}"
        if death.get("queue"):
            text += f" from {_text(death.get('queue'))}"
        if isinstance(death.get("count"), int) and death["count"] > 1:
            text += f" ({death['count']} times)"
        return text
    return "unknown"


def select(
    letters: Sequence[DeadLetter], ids: Sequence[str] = (), reason_contains: str | None = None
) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The letters to replay and those to keep.

    :param ids: task ids to choose (none: every id).
    :param reason_contains: choose only those whose reason contains this text
        (case-insensitive).
    :return: ``(chosen, kept)``, each in the ``.dlq``'s order.
    """
    wanted = set(ids)
    needle = None if reason_contains is None else reason_contains.lower()
    chosen: list[DeadLetter] = []
    kept: list[DeadLetter] = []
    for letter in letters:
        matches = (not wanted or letter.id in wanted) and (
            needle is None or needle in letter.reason.lower()
        )
        (chosen if matches else kept).append(letter)
    return chosen, kept


def replay_publishes(
    chosen: Sequence[DeadLetter], kept: Sequence[DeadLetter], dlq: str
) -> list[Publish]:
    """What a replay's commit publishes: each chosen message to its queue without the
    dead-letter headers, and each kept one back to ``dlq`` as it was."""
    publishes = [
        Publish(replace(c.envelope, headers=_without_reason(c.envelope.headers)), "", c.queue)
        for c in chosen
    ]
    publishes += [Publish(letter.envelope, "", dlq) for letter in kept]
    return publishes


def render_list(dlq: str, letters: Sequence[DeadLetter]) -> str:
    """One line per message: position, task, id, the queue it came from, the reason."""
    if not letters:
        return f"{dlq}: no dead letters"
    lines = [f"{dlq}: {len(letters)} dead letter" + ("" if len(letters) == 1 else "s")]
    for letter in letters:
        lines.append(
            f"  {letter.position}. {letter.task or '(no task name)'}"
            f" id={letter.id or '(none)'} from {letter.queue}: {letter.reason}"
        )
    return "\n".join(lines)


def render_one(letter: DeadLetter) -> str:
    """The message decoded: its summary, properties, headers and body (as JSON when it is)."""
    envelope = letter.envelope
    document = {
        "task": letter.task,
        "id": letter.id,
        "queue": letter.queue,
        "reason": letter.reason,
        "properties": {
            "content_type": envelope.content_type,
            "content_encoding": envelope.content_encoding,
            "correlation_id": envelope.correlation_id,
            "reply_to": envelope.reply_to,
            "priority": envelope.priority,
        },
        "headers": envelope.headers,
        "body": _body(envelope),
    }
    return json.dumps(document, indent=2, default=_jsonable)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What :func:`replay` did: the letters sent back, and how many stayed."""

    replayed: list[DeadLetter]
    kept: int


async def read(transport: Transport, queue: str) -> list[DeadLetter]:
    """The messages waiting in ``queue``'s ``.dlq``, which keeps them.

    :raises BrokerError: another process holds the ``.dlq``'s lock (a replay).
    """
    dlq = dlq_name(queue)
    batch = await _take(transport, dlq)
    try:
        return dead_letters(batch.envelopes, queue)
    finally:
        await batch.release()


async def replay(
    transport: Transport,
    queue: str,
    ids: Sequence[str] = (),
    reason_contains: str | None = None,
) -> ReplayResult:
    """Send the chosen messages of ``queue``'s ``.dlq`` back to their queues (see
    :func:`select`); the others stay. One commit does both.

    :raises BrokerError: the ``.dlq`` is locked, or a message's queue does not exist
        (nothing is replayed then).
    """
    dlq = dlq_name(queue)
    batch = await _take(transport, dlq)
    try:
        chosen, kept = select(dead_letters(batch.envelopes, queue), ids, reason_contains)
        for name in dict.fromkeys(letter.queue for letter in chosen):
            if await transport.inspect_queue(name) is None:
                raise BrokerError(f"queue {name!r} does not exist; nothing was replayed")
    except BaseException:
        await batch.release()
        raise
    if not chosen:
        await batch.release()
    else:
        await batch.commit(replay_publishes(chosen, kept, dlq))
    return ReplayResult(chosen, len(kept))


async def purge(transport: Transport, queue: str) -> int:
    """Empty ``queue``'s ``.dlq``; how many messages it removed.

    :raises BrokerError: the ``.dlq`` does not exist.
    """
    return await transport.purge_queue(dlq_name(queue))


async def _take(transport: Transport, dlq: str) -> Batch:
    batch = await transport.take_all(dlq, min_count=0)
    if batch is None:
        raise BrokerError(f"{dlq} is busy: another process is replaying it; try again")
    return batch


def _without_reason(headers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if not k.startswith(_DROPPED_HEADERS)}


def _death_queue(headers: dict[str, Any]) -> str | None:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return _text(deaths[0].get("queue"))
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or value == "":
        return None
    return str(value)


def _body(envelope: Envelope) -> object:
    if "json" in envelope.content_type:
        try:
            return json.loads(envelope.body)
        except ValueError:
            pass
    return envelope.body.decode("utf-8", "replace")


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
