"""A chord's body runs once even when it was published twice, on both brokers.

A pass that dies between publishing the body and committing the chord's "fired" marker
(a worker killed, the broker crashed) leaves the chord to fire again on the member's
redelivery: the body is then published a second time, with the same task id. These
tests publish such copies by hand, after and during the first run, and check that the
body ran once; and that a pass never waits for the chord's lock without bound.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aioqueue import App, BrokerError, chord
from aioqueue.canvas import freeze, plan
from aioqueue.message import ResultMessage, State, TaskMessage, utc_now
from aioqueue.worker.chord import CHORD_HEADER, decide, record_part
from tests.e2e.conftest import MakeApp
from tests.e2e.test_canvas import remove_chord_queues
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


def _chord_app(make_app: MakeApp, calls: list[Any], body_seconds: float = 0.0) -> App:
    app = make_app("chord-once")

    @app.task(name="once.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="once.body")
    async def body(values: list[int]) -> int:
        calls.append(values)
        await anyio.sleep(body_seconds)
        return sum(values)

    return app


async def _send_chord(app: App) -> tuple[Any, str, str]:
    """Send a two-member chord; returns its promise, its group id and the body's id."""
    await app.results.start()
    add, body = app.tasks["once.add"], app.tasks["once.body"]
    node = freeze(chord([add.s(1, 1), add.s(2, 2)], body.s()).to_dict(), app.results.reply_to)
    await app.broker.publish_plan(plan(node))
    group_id = node["kwargs"]["header"]["options"]["task_id"]
    body_id = node["kwargs"]["body"]["options"]["task_id"]
    return app.results, group_id, body_id


async def _publish_copy(app: App, group_id: str, body_id: str) -> None:
    copy = TaskMessage(
        id=body_id, task="once.body", args=[[2, 4]], extra_headers={CHORD_HEADER: group_id}
    )
    await app.broker.publish_task(copy)


async def test_a_copy_of_the_body_published_after_it_ran_does_not_run(
    make_app: MakeApp,
) -> None:
    calls: list[Any] = []
    app = _chord_app(make_app, calls)
    async with app, app.worker(concurrency=4) as worker:
        results, group_id, body_id = await _send_chord(app)
        try:
            assert (await results.wait(body_id, TIMEOUT)).result == 6
            before = worker.processed
            await _publish_copy(app, group_id, body_id)
            await eventually(lambda: worker.processed > before, TIMEOUT)
            assert calls == [[2, 4]]
        finally:
            await remove_chord_queues(app, {group_id})


async def test_a_copy_of_the_body_arriving_while_it_runs_does_not_run(
    make_app: MakeApp,
) -> None:
    calls: list[Any] = []
    app = _chord_app(make_app, calls, body_seconds=0.5)
    async with app, app.worker(concurrency=4) as worker:
        results, group_id, body_id = await _send_chord(app)
        try:
            await eventually(lambda: bool(calls), TIMEOUT)
            await _publish_copy(app, group_id, body_id)  # waits, then finds the record
            assert (await results.wait(body_id, TIMEOUT)).result == 6
            # Members, the body, and the copy (put off once while the body ran, then seen).
            await eventually(lambda: worker.processed >= 4, TIMEOUT)
            await anyio.sleep(0.2)
            assert calls == [[2, 4]]
        finally:
            await remove_chord_queues(app, {group_id})


async def test_a_pass_does_not_wait_for_the_lock_without_bound(make_app: MakeApp) -> None:
    app = make_app("chord-lock")
    group_id = "chord-lock-held"
    body = {"task": "x", "options": {"group_id": group_id, "chord_size": 2, "task_id": "b"}}
    member = TaskMessage(id="m", task="x", group=group_id, group_index=0, chord=body)
    state = ResultMessage(task_id="m", status=State.SUCCESS, result=1, date_done=utc_now())
    async with app:
        queue = await app.broker.declare_chord(group_id)
        held = await app.transport.take_all(queue, min_count=0)  # another pass, stuck
        assert held is not None
        try:
            with anyio.fail_after(TIMEOUT), pytest.raises(BrokerError, match="lock stayed"):
                await record_part(app.broker, member, state, lock_wait=0.2)
        finally:
            await held.release()
            await app.transport.delete_queue(queue)


def test_records_of_runs_do_not_count_as_parts() -> None:
    parts = [
        {"index": 0, "status": "SUCCESS", "result": 1},
        {"ran": "body-id"},
        {"index": 1, "status": "SUCCESS", "result": 2},
    ]
    assert decide(parts, 2).action == "fire"
    assert decide(parts[:2], 2).action == "wait"
