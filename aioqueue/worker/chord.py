"""Chords on RabbitMQ alone: how the body runs once.

A chord's progress lives in one durable queue, ``aioqueue.chord.<group id>``, declared
by the client before it publishes the header (and again by workers, so chords sent by
Celery clients work too). Each header member carries the body in ``embed.chord`` with
``chord_size`` in its options. When a member finishes, its worker, before acking the
member's own message:

1. publishes a *part* to the chord queue: ``{"index", "task_id", "status", "result",
   "traceback"}``, persistent and confirmed;
2. takes the whole queue under an exclusive lock (``Transport.take_all``: a lock only
   one connection can hold, which RabbitMQ drops with the connection that held it), and
   decides with :func:`decide`:

   - every index ``0..size-1`` present -> publish the body with the results in index
     order (confirmed), then, in one AMQP transaction on the chord queue alone, publish
     a *fired* marker and remove the parts (``Batch.commit``);
   - a FAILURE (or REVOKED) part -> the same, but instead of the body the chord's
     promise (and what was chained after it) gets that failure;
   - otherwise, or a fired marker is there -> put everything back and stop.

Why the body runs once. Passes are serialised by the lock, and each member's pass starts
after its own part is confirmed, so the pass of whichever member finishes last sees
every part. A later pass (a member redelivered and run again) sees the fired marker and
fires nothing. The marker and the removal of the parts commit together because they
touch one queue; the body's publish cannot join them (RabbitMQ transactions are not
atomic across queues, least of all in a broker crash), so it comes first: a pass that
dies after publishing the body and before its commit (worker killed, broker crashed)
leaves the parts in place, the member's message unacked, and the member's next run
fires the body again, with the same task id, frozen in the canvas. The copies are
told apart where they run: each fired message carries the ``x-aioqueue-chord`` header,
and the worker that receives one takes a lease on its task id (a second copy arriving
meanwhile waits in a delay bucket), runs it only if the chord queue holds no *ran*
record for that id, and publishes that record before it acks. What remains is the
at-least-once of every task: a worker that dies after the body finished but before
the record runs it again. A member that is redelivered publishes its part again;
parts are keyed by index, so the duplicate counts once. When a member cannot take the
lock (another pass runs), it retries for up to ``LOCK_WAIT_SECONDS`` and then fails
the attempt (the worker retries it, then dead-letters the member).

A decided chord (fired or failed) keeps its queue, holding only its markers, for the
members still running or redelivered later and for copies of the body: were it
deleted, the parts of members redelivered after the firing would start it again.
RabbitMQ's ``x-expires`` (``App(chord_expires=...)``) removes it, as it removes the
queue of a chord that never completes; a copy of the body arriving after that runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from ..broker import Broker
from ..canvas import Step, plan
from ..exceptions import BrokerError, MalformedMessageError
from ..message import ResultMessage, State, TaskMessage, utc_now
from ..transport.base import Batch, Envelope, Publish
from . import execute

__all__ = (
    "CHORD_HEADER",
    "Decision",
    "body_ran",
    "decide",
    "check_joinable",
    "fired_by",
    "mark_body_ran",
    "record_part",
    "unjoinable",
)

#: The header a message published by a chord's firing carries: the chord's group id.
CHORD_HEADER = "x-aioqueue-chord"

log = logging.getLogger("aioqueue.chord")

# How long to wait before asking for the lock again while another pass runs.
_RETRY_DELAY = 0.01
_RETRY_DELAY_MAX = 0.2
# A pass holds the lock for a few round trips; one that waits this long meets a holder
# that is stuck, and gives up (the worker retries the part, then dead-letters it).
LOCK_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What a pass over a chord's parts must do."""

    action: Literal["wait", "fire", "fail", "done"]
    results: list[Any] | None = None  # for "fire": member results in index order
    failure: dict[str, Any] | None = None  # for "fail": the failed part


def decide(parts: list[dict[str, Any]], size: int) -> Decision:
    """Decide from the parts in a chord queue (pure); other records are ignored."""
    if any(p.get("fired") for p in parts):
        return Decision("done")
    parts = [p for p in parts if "index" in p]
    failures = [p for p in parts if p.get("status") != State.SUCCESS]
    if failures:
        return Decision("fail", failure=min(failures, key=lambda p: p["index"]))
    by_index = {p["index"]: p.get("result") for p in parts}
    if all(i in by_index for i in range(size)):
        return Decision("fire", results=[by_index[i] for i in range(size)])
    return Decision("wait")


def unjoinable(message: TaskMessage) -> str | None:
    """Why the chord ``message`` is a header member of cannot be joined here, or
    ``None`` when it can (pure).

    aioqueue joins a chord in RabbitMQ, counting parts up to the ``chord_size`` its
    clients put in the body's options. A Celery client sends no size: its chord is
    joined in its result backend (Redis, a database), which aioqueue workers do not
    share, so nothing would ever run the body.
    """
    body = message.chord or {}
    options = body.get("options") or {}
    group_id = message.group or options.get("group_id")
    if group_id is None or message.group_index is None:
        return (
            f"task {message.task}[{message.id}] carries a chord body ({body.get('task')!r}) "
            "but no group id and group_index: it is not a chord header member"
        )
    if not isinstance(options.get("chord_size"), int):
        return (
            f"task {message.task}[{message.id}] is a member of chord {group_id}, whose body "
            f"{body.get('task')!r} has no chord_size: a chord sent by a Celery client is "
            "joined in that client's result backend, which aioqueue workers cannot reach; "
            "send the chord from an aioqueue client, or serve its header with Celery workers"
        )
    return None


def check_joinable(message: TaskMessage) -> None:
    """Refuse a chord header member this worker cannot join (see :func:`unjoinable`);
    a message that is no chord member passes.

    :raises MalformedMessageError: saying why.
    """
    if message.chord is not None and (reason := unjoinable(message)) is not None:
        raise MalformedMessageError(reason)


def part_body(message: TaskMessage, state: ResultMessage) -> dict[str, Any]:
    """What a finished member records in the chord queue."""
    return {
        "index": message.group_index,
        "task_id": message.id,
        "status": state.status.value,
        "result": state.result,
        "traceback": state.traceback,
    }


async def record_part(
    broker: Broker,
    message: TaskMessage,
    state: ResultMessage,
    *,
    lock_wait: float = LOCK_WAIT_SECONDS,
) -> None:
    """Record a finished header member and, if the chord is decided, act on it once.

    :param lock_wait: seconds to wait for the chord's lock while other passes hold it.
    :raises BrokerError: the lock stayed taken that long.
    """
    reason = unjoinable(message)  # also without a chord body: nothing to record then
    if reason is not None:
        raise MalformedMessageError(reason)
    body = message.chord or {}
    options = body.get("options") or {}
    group_id: str = message.group or options["group_id"]
    size: int = options["chord_size"]
    codec = broker.codec
    queue = await broker.declare_chord(group_id)
    part = Envelope(body=codec.encode(part_body(message, state)))
    await broker.send(part, queue, mandatory=True)
    min_count = size if state.status is State.SUCCESS else 1
    batch = await _take(broker, queue, min_count, lock_wait)
    try:
        parts = [codec.decode(e.body, e.content_type) for e in batch.envelopes]
        decision = decide(parts, size) if parts else Decision("wait")
        if decision.action in ("wait", "done"):
            await batch.release()
            return
        await _act(broker, message, body, decision, group_id)
    except BaseException:
        await batch.release()
        raise
    marker = Envelope(body=codec.encode({"fired": True}))
    await batch.commit([Publish(marker, routing_key=queue)])
    if decision.action == "fail":
        # Members still running will record parts; the marker tells them it is over.
        log.info("chord %s failed (member %s)", group_id, (decision.failure or {}).get("index"))
        return
    # The queue, now holding only the marker, is kept (x-expires removes it): deleting it
    # would lose the marker, and members redelivered afterwards would fire the body again.
    log.debug("chord %s fired", group_id)


async def _take(
    broker: Broker, queue: str, min_count: int, lock_wait: float = LOCK_WAIT_SECONDS
) -> Batch:
    delay = _RETRY_DELAY
    deadline = time.monotonic() + lock_wait
    while (batch := await broker.transport.take_all(queue, min_count=min_count)) is None:
        if time.monotonic() > deadline:
            raise BrokerError(f"{queue}: its lock stayed taken for {lock_wait:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_DELAY_MAX)
    return batch


async def _act(
    broker: Broker, last: TaskMessage, body: dict[str, Any], decision: Decision, group_id: str
) -> None:
    """Publish what a decided chord sets off (confirmed), before its marker commits."""
    if decision.action == "fire":
        step = Step(decision.results, parent_id=last.id, root_id=last.root_id)
        for outgoing in plan(body, step).messages:
            headers = {**outgoing.message.extra_headers, CHORD_HEADER: group_id}
            message = outgoing.message.model_copy(update={"extra_headers": headers})
            await broker.publish_task(message, outgoing.options)
        return
    failure = decision.failure or {}
    state = ResultMessage(
        task_id=str(body.get("options", {}).get("task_id")),
        status=State.FAILURE,
        result=failure.get("result"),
        traceback=failure.get("traceback"),
        date_done=utc_now(),
    )
    for p in execute.failure_fanout(broker.codec, body, state):
        await broker.send(p.envelope, p.routing_key)


def fired_by(message: TaskMessage) -> str | None:
    """The group id of the chord whose firing published ``message``, if one did."""
    group_id = message.extra_headers.get(CHORD_HEADER)
    return group_id if isinstance(group_id, str) else None


async def body_ran(broker: Broker, group_id: str, task_id: str) -> bool:
    """Whether the chord queue records that ``task_id`` (fired by it) already ran."""
    queue = await broker.declare_chord(group_id)
    batch = await _take(broker, queue, 0)
    try:
        records = [broker.codec.decode(e.body, e.content_type) for e in batch.envelopes]
    finally:
        await batch.release()
    return any(isinstance(r, dict) and r.get("ran") == task_id for r in records)


async def mark_body_ran(broker: Broker, group_id: str, task_id: str) -> None:
    """Record in the chord queue that ``task_id`` ran (confirmed)."""
    queue = await broker.declare_chord(group_id)
    await broker.send(Envelope(body=broker.codec.encode({"ran": task_id})), queue, mandatory=True)
