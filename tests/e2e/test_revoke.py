"""Revocation on both brokers: queued, delayed and running tasks, workflows, the window,
Celery's wire format, and control messages a worker must survive.

A revoke sent while a worker runs is awaited with ``reply=True, limit=1``: the worker's
reply says it has applied it, so the test knows what it may expect next.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from typing import Any

import anyio
import pytest

from aioqueue import (
    App,
    AsyncResult,
    ConfigurationError,
    State,
    TaskRevokedError,
    chain,
    chord,
    group,
)
from aioqueue.control import STORED_HEADER, decode_revocation, revocation_key
from aioqueue.topology import PIDBOX_EXCHANGE, REVOKED_STATE, pidbox_exchange
from aioqueue.transport.base import BindingSpec, Envelope, QueueSpec
from tests.celery_vectors import VECTORS_DIR
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually, receive

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


class Tasks:
    """An app's tasks for these tests, and what they did."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runs: list[Any] = []
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.finished: list[str] = []

        @app.task(name="revoke.record")
        async def record(x: int) -> int:
            self.runs.append(x)
            return x + 1

        @app.task(name="revoke.total")
        async def total(values: list[int]) -> int:
            self.runs.append(("total", values))
            return sum(values)

        @app.task(name="revoke.held")
        async def held(x: int) -> int:
            # Runs until the test opens the gate.
            self.started.set()
            await self.gate.wait()
            self.finished.append("held")
            return x

        @app.task(name="revoke.sleepy")
        async def sleepy() -> str:
            self.started.set()
            await asyncio.sleep(60)
            self.finished.append("sleepy")
            return "slept"

        self.record = record
        self.total = total
        self.held = held
        self.sleepy = sleepy


async def _revoked(result: AsyncResult[Any], match: str = "revoked") -> None:
    with pytest.raises(TaskRevokedError, match=match):
        await result.get(timeout=TIMEOUT)
    assert await result.status() is State.REVOKED


async def _applied(app: App, task_id: str, **options: Any) -> list[dict[str, Any]]:
    """Revoke and wait for the (one) running worker to say it applied it."""
    replies = await app.control.revoke(task_id, reply=True, limit=1, timeout=TIMEOUT, **options)
    assert len(replies) == 1, replies
    return replies


async def test_a_queued_task_revoked_before_any_worker_runs_is_not_run(make_app: MakeApp) -> None:
    app = make_app("revoke-queued")
    tasks = Tasks(app)
    async with app:
        revoked = await tasks.record.delay(1)
        kept = await tasks.record.delay(2)
        await revoked.revoke()
        # Kept for workers to come, with its expiry.
        stored = await app.transport.state_read(REVOKED_STATE)
        ids, expires_at = decode_revocation(stored[revocation_key([revoked.id])])
        assert ids == [revoked.id]
        assert expires_at > app.control._clock() + 10_000
        async with app.worker(concurrency=2):
            await _revoked(revoked)
            assert await kept.get(timeout=TIMEOUT) == 3
    assert tasks.runs == [2]


async def test_a_task_queued_behind_a_busy_worker_is_skipped(make_app: MakeApp) -> None:
    app = make_app("revoke-behind")
    tasks = Tasks(app)
    async with app, app.worker(concurrency=1, prefetch=1) as worker:
        busy = await tasks.held.delay(0)
        with anyio.fail_after(TIMEOUT):
            await tasks.started.wait()
        waiting = await tasks.record.delay(1)
        replies = await _applied(app, waiting.id)
        assert replies == [
            {worker.hostname: {"ok": f"tasks {{'{waiting.id}'}} flagged as revoked"}}
        ]
        tasks.gate.set()
        assert await busy.get(timeout=TIMEOUT) == 0
        await _revoked(waiting)
    assert tasks.runs == []


async def test_a_revoked_delayed_task_is_not_run(make_app: MakeApp) -> None:
    app = make_app("revoke-delayed")
    tasks = Tasks(app)
    async with app, app.worker(concurrency=2):
        delayed = await tasks.record.apply_async((1,), countdown=1)
        await _applied(app, delayed.id)
        await _revoked(delayed)
        assert await (await tasks.record.delay(2)).get(timeout=TIMEOUT) == 3
    assert tasks.runs == [2]


async def test_a_running_task_is_terminated(make_app: MakeApp) -> None:
    app = make_app("revoke-terminate")
    tasks = Tasks(app)
    async with app, app.worker(concurrency=2) as worker:
        running = await tasks.sleepy.delay()
        with anyio.fail_after(TIMEOUT):
            await tasks.started.wait()
        replies = await _applied(app, running.id, terminate=True)
        assert replies == [{worker.hostname: {"ok": f"terminate: {running.id}"}}]
        await _revoked(running, "terminated")
        # The worker goes on, its slot free again.
        assert await (await tasks.record.delay(1)).get(timeout=TIMEOUT) == 2
    assert tasks.finished == []


async def test_a_running_task_revoked_without_terminate_finishes(make_app: MakeApp) -> None:
    app = make_app("revoke-no-terminate")
    tasks = Tasks(app)
    async with app, app.worker(concurrency=2):
        running = await tasks.held.delay(5)
        with anyio.fail_after(TIMEOUT):
            await tasks.started.wait()
        await _applied(app, running.id)
        tasks.gate.set()
        assert await running.get(timeout=TIMEOUT) == 5


async def test_revoking_a_chains_root_stops_the_rest(make_app: MakeApp) -> None:
    app = make_app("revoke-chain")
    tasks = Tasks(app)
    async with app, app.worker(concurrency=2):
        last = await chain(tasks.held.s(1), tasks.record.s(), tasks.record.s()).apply_async(
            intermediate_results=True
        )
        second = last.parent
        assert second is not None and second.parent is not None
        root = second.parent
        with anyio.fail_after(TIMEOUT):
            await tasks.started.wait()
        # The root runs on (no terminate); the steps after it carry its id as root_id.
        await _applied(app, root.id)
        tasks.gate.set()
        assert await root.get(timeout=TIMEOUT) == 1
        await _revoked(second)
        await _revoked(last)
    assert tasks.runs == []


async def test_a_chain_revoked_before_it_starts_reports_every_step(make_app: MakeApp) -> None:
    app = make_app("revoke-chain-queued")
    tasks = Tasks(app)
    async with app:
        last = await chain(tasks.record.s(1), tasks.record.s(), tasks.record.s()).apply_async(
            intermediate_results=True
        )
        first = last.parent.parent if last.parent else None
        assert first is not None
        await app.control.revoke(first.id)
        async with app.worker(concurrency=2):
            await _revoked(last)
            await _revoked(first)
    assert tasks.runs == []


async def test_a_revoked_chain_tells_its_promise_without_intermediate_results(
    make_app: MakeApp,
) -> None:
    app = make_app("revoke-chain-default")
    tasks = Tasks(app)
    async with app:
        last = await chain(tasks.record.s(1), tasks.record.s(), tasks.record.s()).delay()
        first = last.parent.parent if last.parent else None
        assert first is not None
        await app.control.revoke(first.id)
        async with app.worker(concurrency=2):
            await _revoked(last)
    assert tasks.runs == []


async def test_revoking_a_group_stops_its_members(make_app: MakeApp) -> None:
    app = make_app("revoke-group")
    tasks = Tasks(app)
    async with app:
        result = await group(tasks.record.s(i) for i in range(3)).delay()
        await result.revoke()
        async with app.worker(concurrency=3):
            outcomes = await result.get(timeout=TIMEOUT, return_exceptions=True)
    assert all(isinstance(o, TaskRevokedError) for o in outcomes), outcomes
    assert tasks.runs == []


async def test_revoking_a_chords_header_fails_its_body(make_app: MakeApp) -> None:
    app = make_app("revoke-chord")
    tasks = Tasks(app)
    async with app:
        body = await chord(group(tasks.record.s(i) for i in range(3)), tasks.total.s()).delay()
        header = body.parent
        assert header is not None
        # The header's group id: each member carries it as its group.
        await app.control.revoke(header.id)
        async with app.worker(concurrency=3):
            with pytest.raises(TaskRevokedError):
                await body.get(timeout=TIMEOUT)
    assert tasks.runs == []


async def test_the_window_ends(make_app: MakeApp) -> None:
    app = make_app("revoke-window", revoke_expires=0.3)
    tasks = Tasks(app)
    async with app:
        result = await tasks.record.delay(1)
        await app.control.revoke(result.id)
        await anyio.sleep(0.5)
        async with app.worker(concurrency=2):
            # Past its window the revocation is forgotten: the task runs...
            assert await result.get(timeout=TIMEOUT) == 2

            # ... and the worker that read it expired deleted it from the store.
            async def deleted() -> bool:
                return revocation_key([result.id]) not in await app.transport.state_read(
                    REVOKED_STATE
                )

            await eventually(deleted)


async def test_the_revoke_command_is_celerys(make_app: MakeApp, queue_name: str) -> None:
    app = make_app("revoke-wire")
    captured = json.loads((VECTORS_DIR / "control" / "control-revoke.json").read_text())
    task_id = captured["body_json"]["arguments"]["task_id"]
    async with app:
        # A queue of the test's own on the pidbox exchange sees what workers see.
        transport = app.transport
        await transport.declare_exchange(pidbox_exchange())
        spy = f"{queue_name}.spy"
        await transport.declare_queue(QueueSpec(spy, durable=False, exclusive=True))
        await transport.bind(BindingSpec(spy, PIDBOX_EXCHANGE))
        await app.control.revoke(task_id)
        (envelope,) = await receive(transport, spy)
        await transport.delete_queue(spy)
    assert envelope.body == base64.b64decode(captured["body_b64"])
    properties = captured["properties"]
    assert (envelope.content_type, envelope.content_encoding) == (
        properties["content_type"],
        properties["content_encoding"],
    )
    assert envelope.persistent and properties["delivery_mode"] == 2
    assert envelope.priority == properties["priority"] == 0
    assert isinstance(envelope.headers["clock"], int)
    assert isinstance(envelope.headers["expires"], float)
    assert envelope.headers[STORED_HEADER] is True


async def test_malformed_control_messages_are_survived(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app("revoke-malformed")
    tasks = Tasks(app)
    junk: list[tuple[bytes, str]] = [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\x80\x04K\x01.", "application/x-python-serialize"),
        (json.dumps({"method": "revoke", "arguments": {"task_id": 7}}).encode(), ""),
        (json.dumps({"method": "revoke", "arguments": ["x"]}).encode(), "application/json"),
        (json.dumps({"method": "autoscale", "arguments": {}}).encode(), "application/json"),
        (json.dumps({"method": "ping", "ticket": "t"}).encode(), "application/json"),
        (
            json.dumps(
                {"method": "ping", "ticket": "t", "reply_to": {"exchange": "", "routing_key": "x"}}
            ).encode(),
            "application/json",
        ),
        (json.dumps({"method": "ping", "pattern": "(", "matcher": "pcre"}).encode(), ""),
    ]
    caplog.set_level(logging.INFO, "aioqueue.worker")
    async with app, app.worker(concurrency=2):
        for body, content_type in junk:
            envelope = Envelope(body=body, content_type=content_type)
            await app.transport.publish(envelope, exchange=PIDBOX_EXCHANGE, routing_key="")
        # The pidbox still serves, and tasks still run.
        await _applied(app, str(uuid.uuid4()))
        assert await (await tasks.record.delay(1)).get(timeout=TIMEOUT) == 2
    text = caplog.text
    assert "ignoring a control message" in text
    for reason in (
        "not valid JSON",
        "is not accepted",
        "'task_id' must be a task id",
        "'arguments' must be an object",
        "'autoscale' is not served",
        "pattern '('",
    ):
        assert reason in text, reason


async def test_two_running_workers_cannot_share_a_hostname(make_app: MakeApp) -> None:
    app = make_app("revoke-hostname")
    Tasks(app)
    async with app, app.worker(hostname="same@test") as first:
        with pytest.raises(ConfigurationError, match="same@test"):
            async with app.worker(hostname="same@test"):
                pass
        # The first worker's control queue is untouched.
        replies = await _applied(app, str(uuid.uuid4()))
        assert list(replies[0]) == [first.hostname]


async def test_a_revoke_reaches_every_worker(make_app: MakeApp) -> None:
    app = make_app("revoke-fanout")
    Tasks(app)
    async with app, app.worker() as one, app.worker() as two:
        replies = await app.control.revoke(str(uuid.uuid4()), reply=True, limit=2, timeout=TIMEOUT)
    assert sorted(name for reply in replies for name in reply) == sorted(
        [one.hostname, two.hostname]
    )
