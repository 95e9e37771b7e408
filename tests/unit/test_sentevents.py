"""``task-sent`` events: the pure builder against Celery 5.7's capture, and an app that
sends them only when asked to (memory transport)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aioqueue import App, GroupResult, group
from aioqueue.events import EVENT_EXCHANGE, EventSource
from aioqueue.options import Options, build_message
from aioqueue.sentevents import sent_event
from aioqueue.transport.base import BindingSpec, ExchangeSpec, QueueSpec
from tests.celery_vectors import blank_volatile, folder_vector
from tests.helpers import receive

pytestmark = pytest.mark.anyio

WATCH = "watch.events"


def _app(**settings: Any) -> App:
    app = App("sent", **settings)

    @app.task(name="tasks.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    return app


def test_sent_event_matches_celery() -> None:
    vector = folder_vector("events/task-sent")
    app = _app()
    message = build_message("tasks.multiply", (3, 4), {}, Options(), reply_to="r")
    event = sent_event(EventSource("gen2255@vm", pid=2255), message, app.broker.route(Options()))
    expected = vector["body_json"]
    assert list(event) == list(expected)
    volatile = vector["volatile"]
    assert blank_volatile({"body_json": event}, volatile) == blank_volatile(
        {"body_json": expected}, volatile
    )
    assert (event["uuid"], event["root_id"]) == (message.id, message.id)


def test_sent_event_of_a_delayed_message_to_another_queue() -> None:
    app = _app()
    options = Options(queue="other", countdown=60, expires=120)
    message = build_message("tasks.multiply", (1, 2), {"z": 3}, options, reply_to=None)
    event = sent_event(EventSource("c@h"), message, app.broker.route(options, message))
    assert (event["queue"], event["exchange"], event["routing_key"]) == ("other", "", "other")
    assert message.eta is not None and event["eta"] == message.eta.isoformat()
    assert event["expires"] is not None
    assert (event["args"], event["kwargs"]) == ("(1, 2)", "{'z': 3}")


async def _watch(app: App) -> None:
    await app.transport.declare_exchange(ExchangeSpec(EVENT_EXCHANGE, type="topic"))
    await app.transport.declare_queue(QueueSpec(WATCH))
    await app.transport.bind(BindingSpec(WATCH, EVENT_EXCHANGE, "#"))


async def test_no_task_sent_unless_asked() -> None:
    app = _app()
    async with app:
        await _watch(app)
        await app.send_task("tasks.multiply", [1, 2])
        state = await app.transport.inspect_queue(WATCH)
    assert state is not None and state.messages == 0


async def test_one_task_sent_per_message() -> None:
    app = _app(send_sent_event=True)
    multiply = app.tasks["tasks.multiply"]
    async with app:
        await _watch(app)
        single = await app.send_task("tasks.multiply", [1, 2])
        members = await group(multiply.s(i, i) for i in range(3)).delay()
        got = await receive(app.transport, WATCH, count=4)
        state = await app.transport.inspect_queue(WATCH)
    assert state is not None and state.messages == 0  # four, no more
    events = [json.loads(e.body) for e in got]
    assert {e["type"] for e in events} == {"task-sent"}
    assert isinstance(members, GroupResult)
    assert {e["uuid"] for e in events} == {single.id, *(r.id for r in members.results)}
    assert all(not e.persistent and e.headers["hostname"].startswith("gen") for e in got)
