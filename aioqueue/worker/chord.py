"""Chords on RabbitMQ alone: how the body fires exactly once.

A chord's progress lives in one durable queue, ``aioqueue.chord.<group id>``, declared
by the client before it publishes the header (and again by workers, so chords sent by
Celery clients work too). Each header member carries the body in ``embed.chord`` with
``chord_size`` in its options. When a member finishes, its worker, before acking the
member's own message:

1. publishes a *part* to the chord queue: ``{"index", "task_id", "status", "result",
   "traceback"}``, persistent and confirmed;
2. takes the whole queue under an exclusive lock (``Transport.take_all``: an exclusive
   ``<queue>.lock`` queue, which only one connection can hold and which RabbitMQ drops
   with the connection that held it), and decides with :func:`decide`:

   - every index ``0..size-1`` present -> publish the body with the results in index
     order, publish a *fired* marker into the chord queue, and remove the parts, all
     in one AMQP transaction (``Batch.commit``);
   - a FAILURE (or REVOKED) part -> the same, but instead of the body the chord's promise (and what
     was chained after it) gets that failure;
   - otherwise, or a fired marker is there -> put everything back and stop.

Why exactly once: passes are serialised by the lock, and each member's pass starts
after its own part is confirmed, so the pass of whichever member finishes last sees
every part. Only a committed transaction fires, and it also records the fired marker
and removes the parts atomically, so a later pass (a redelivered member re-running)
sees the marker and fires nothing. A worker killed mid-pass had committed nothing: its
channel closes, RabbitMQ returns the taken parts and drops the lock, and the next pass
redoes the work. A member that is redelivered publishes its part again; parts are keyed
by index, so the duplicate counts once. When a member cannot take the lock (another
pass runs), it retries until it has made its own pass.

A decided chord (fired or failed) keeps its queue, holding only the marker, for the
members still running or redelivered later: were it deleted, the parts of members
redelivered after the firing (their worker died before acking them) would start it
again. RabbitMQ's ``x-expires`` (``App(chord_expires=...)``) removes it, as it removes
the queue of a chord that never completes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..canvas import Step, plan
from ..exceptions import MalformedMessageError
from ..message import ResultMessage, State, TaskMessage, utc_now
from ..transport.base import Envelope, Publish
from . import execute

if TYPE_CHECKING:
    from ..app import App

__all__ = ("Decision", "decide", "record_part")

log = logging.getLogger("aioqueue.chord")

# How long to wait before asking for the lock again while another pass runs.
_RETRY_DELAY = 0.01
_RETRY_DELAY_MAX = 0.2


@dataclass(frozen=True, slots=True)
class Decision:
    """What a pass over a chord's parts must do."""

    action: Literal["wait", "fire", "fail", "done"]
    results: list[Any] | None = None  # for "fire": member results in index order
    failure: dict[str, Any] | None = None  # for "fail": the failed part


def decide(parts: list[dict[str, Any]], size: int) -> Decision:
    """Decide from the parts in a chord queue (pure)."""
    if any(p.get("fired") for p in parts):
        return Decision("done")
    failures = [p for p in parts if p.get("status") != State.SUCCESS]
    if failures:
        return Decision("fail", failure=min(failures, key=lambda p: p["index"]))
    by_index = {p["index"]: p.get("result") for p in parts}
    if all(i in by_index for i in range(size)):
        return Decision("fire", results=[by_index[i] for i in range(size)])
    return Decision("wait")


def part_body(message: TaskMessage, state: ResultMessage) -> dict[str, Any]:
    """What a finished member records in the chord queue."""
    return {
        "index": message.group_index,
        "task_id": message.id,
        "status": state.status.value,
        "result": state.result,
        "traceback": state.traceback,
    }


async def record_part(app: App, message: TaskMessage, state: ResultMessage) -> None:
    """Record a finished header member and, if the chord is decided, act on it once."""
    body = message.chord or {}
    options = body.get("options") or {}
    group_id = message.group or options.get("group_id")
    size = options.get("chord_size")
    if group_id is None or message.group_index is None or not isinstance(size, int):
        raise MalformedMessageError(
            f"task {message.task!r}: embed.chord needs a group id, group_index and "
            "options.chord_size (chords from Celery clients need a chord_size)"
        )
    queue = await app.declare_chord(group_id)
    part = Envelope(body=app.codec.encode(part_body(message, state)))
    await app.transport.publish(part, routing_key=queue, mandatory=True)
    min_count = size if state.status is State.SUCCESS else 1
    delay = _RETRY_DELAY
    while (batch := await app.transport.take_all(queue, min_count=min_count)) is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_DELAY_MAX)
    try:
        parts = [app.codec.decode(e.body, e.content_type) for e in batch.envelopes]
        decision = decide(parts, size) if parts else Decision("wait")
        if decision.action in ("wait", "done"):
            await batch.release()
            return
        publishes = await _publishes(app, message, body, decision)
    except BaseException:
        await batch.release()
        raise
    marker = Envelope(body=app.codec.encode({"fired": True}))
    await batch.commit([*publishes, Publish(marker, routing_key=queue)])
    if decision.action == "fail":
        # Members still running will record parts; the marker tells them it is over.
        log.info("chord %s failed (member %s)", group_id, (decision.failure or {}).get("index"))
        return
    # The queue, now holding only the marker, is kept (x-expires removes it): deleting it
    # would lose the marker, and members redelivered afterwards would fire the body again.
    log.debug("chord %s fired", group_id)


async def _publishes(
    app: App, last: TaskMessage, body: dict[str, Any], decision: Decision
) -> list[Publish]:
    if decision.action == "fire":
        step = Step(decision.results, parent_id=last.id, root_id=last.root_id)
        out = []
        for outgoing in plan(body, step).messages:
            target = await app.route(outgoing.options, outgoing.message.eta)
            out.append(Publish(app.envelope(outgoing.message), *target))
        return out
    failure = decision.failure or {}
    state = ResultMessage(
        task_id=str(body.get("options", {}).get("task_id")),
        status=State.FAILURE,
        result=failure.get("result"),
        traceback=failure.get("traceback"),
        date_done=utc_now(),
    )
    return execute.failure_fanout(app.codec, body, state)
