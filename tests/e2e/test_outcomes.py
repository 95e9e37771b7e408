"""Every delivery ends in a defined outcome, on both brokers.

A follow-up that cannot be published, a queue deleted behind the declared cache, a
``.dlq`` that is missing, a partly published group, a sync task past its time limit, a
stopped embedded worker, an app opened twice: none of them may hold a message, drop one,
or leave a caller waiting.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import anyio
import pytest

from aioqueue import (
    App,
    AsyncResult,
    DeclarationConflictError,
    PartialPublishError,
    Queue,
    State,
    TimeLimitExceeded,
    UnknownTaskError,
    group,
)
from aioqueue.topology import dlq_name
from aioqueue.transport.base import Envelope, QueueSpec, Transport
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually, receive

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


def _adder(app: App) -> Any:
    @app.task(name="outcomes.add")
    async def add(x: int, y: int) -> int:
        return x + y

    return add


async def test_a_follow_up_that_cannot_be_published_is_dead_lettered(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("follow-up")
    add = _adder(app)
    async with app, app.worker(concurrency=1, prefetch=1):
        link = add.s(10).set(exchange=f"{queue_name}.missing", routing_key="nowhere")
        result = await add.apply_async((1, 2), link=link)
        assert await result.get(timeout=TIMEOUT) == 3  # the task itself succeeded
        (parked,) = await receive(app.transport, dlq_name(queue_name))
        assert parked.headers["id"] == result.id
        reason = parked.headers["x-aioqueue-error"]
        assert "not published after 4 tries" in reason and f"{queue_name}.missing" in reason
        # Its only prefetch slot is free again: the next task runs.
        assert await (await add.delay(2, 2)).get(timeout=TIMEOUT) == 4


async def test_a_queue_deleted_behind_the_declared_cache_is_declared_again(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("redeclare")
    add = _adder(app)
    async with app:
        await add.delay(1, 1)
        await app.transport.delete_queue(queue_name)
        result = await add.delay(2, 3)
        async with app.worker(concurrency=2):
            assert await result.get(timeout=TIMEOUT) == 5


async def test_bad_input_reaches_a_dlq_deleted_behind_the_cache(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("dlq-again")
    async with app, app.worker(concurrency=2):
        await app.transport.delete_queue(dlq_name(queue_name))
        await _unknown_task_reaches_the_dlq(app, queue_name)


async def test_a_worker_refuses_a_queue_declared_elsewhere_with_other_arguments(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("precondition")
    async with app:
        await app.transport.declare_queue(QueueSpec(queue_name, arguments={"x-max-priority": 3}))
        with pytest.raises(DeclarationConflictError) as caught:
            async with app.worker(concurrency=2):
                pass
        # Both sides are named: what the app wants, and what the broker has.
        message = str(caught.value)
        assert f"queue {queue_name!r}" in message and "the app wants arguments {}" in message
        assert re.search(r"x-max-priority.*current is (the value )?'?3", message)
        # The app keeps working: a client's send uses the queue as it is.
        await app.send_task("outcomes.not_registered", ignore_result=True)
        assert await app.transport.purge_queue(queue_name) == 1
    # Defined alike, the queue is consumed and gets its dlq.
    alike = make_app("alike", queues=[Queue(queue_name, max_priority=3)])
    async with alike, alike.worker(concurrency=2):
        await _unknown_task_reaches_the_dlq(alike, queue_name)


async def _unknown_task_reaches_the_dlq(app: App, queue_name: str) -> None:
    result = await app.send_task("outcomes.not_registered")
    with pytest.raises(UnknownTaskError):
        await result.get(timeout=TIMEOUT)
    (parked,) = await receive(app.transport, dlq_name(queue_name))
    assert parked.headers["task"] == "outcomes.not_registered"


async def test_a_group_published_in_part_says_what_was_sent(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("partial-group")
    add = _adder(app)
    async with app, app.worker(concurrency=10):
        stray = add.s(0, 0).set(exchange=f"{queue_name}.missing", routing_key="x")
        with pytest.raises(PartialPublishError) as caught:
            await group([*(add.s(i, i) for i in range(5)), stray]).delay()
        error = caught.value
        assert len(error.sent) == 5 and len(error.failed) == 1
        assert f"{queue_name}.missing" in str(next(iter(error.failed.values())))
        results = [AsyncResult(task_id, app.results) for task_id in error.sent]
        assert sorted([await r.get(timeout=TIMEOUT) for r in results]) == [0, 2, 4, 6, 8]


async def test_a_sync_task_past_its_time_limit_keeps_its_thread(make_app: MakeApp) -> None:
    app = make_app("threads")
    release = threading.Event()
    lock = threading.Lock()
    running: list[int] = []
    peak: list[int] = [0]

    @app.task(name="outcomes.stuck", time_limit=0.1)
    def stuck() -> None:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        release.wait(TIMEOUT)
        with lock:
            running.pop()

    try:
        async with app, app.worker(concurrency=1, shutdown_timeout=1):
            first, second = await stuck.delay(), await stuck.delay()
            with pytest.raises(TimeLimitExceeded):
                await first.get(timeout=TIMEOUT)
            await anyio.sleep(0.3)
            # The first thread still runs: the second task has not started a thread.
            assert peak[0] == 1 and await second.status() is State.PENDING
            release.set()
            assert await second.get(timeout=TIMEOUT) is None
            assert peak[0] == 1
    finally:
        release.set()


async def test_a_stopped_worker_returns_what_it_cancelled(make_app: MakeApp) -> None:
    app = make_app("stop")
    runs: list[int] = []

    @app.task(name="outcomes.once")
    async def once() -> int:
        runs.append(1)
        if len(runs) == 1:
            await anyio.sleep(60)
        return len(runs)

    async with app:
        async with app.worker(concurrency=1, shutdown_timeout=0.1):
            result = await once.delay()
            await eventually(lambda: bool(runs), TIMEOUT)
        # While the app stays open, the message is back in the queue for the next worker.
        async with app.worker(concurrency=1):
            assert await result.get(timeout=TIMEOUT) == 2


async def test_results_nobody_asks_for_expire_and_ignored_ones_are_not_asked_for(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("expiring", result_expires=0.2)
    add = _adder(app)
    async with app:
        ignored = await add.apply_async((1, 1), ignore_result=True)
        (sent,) = await receive(app.transport, queue_name)
        assert sent.correlation_id == ignored.id and sent.reply_to is None
        async with app.worker(concurrency=2):
            unread = await add.delay(1, 2)
            await eventually(lambda: app.results.state(unread.id) is not None, TIMEOUT)
            await anyio.sleep(0.3)
            assert await (await add.delay(2, 2)).get(timeout=TIMEOUT) == 4
            assert await unread.status() is State.PENDING  # dropped, not kept forever


def test_an_app_opens_again_in_another_event_loop(broker: str | Transport, queue_name: str) -> None:
    app = App("reopen", broker=broker, default_queue=queue_name)
    add = _adder(app)

    async def round_trip(x: int) -> int:
        async with app, app.worker(concurrency=2):
            value: int = await (await add.delay(x, x)).get(timeout=TIMEOUT)
        return value

    try:
        assert asyncio.run(round_trip(1)) == 2
        assert asyncio.run(round_trip(2)) == 4
    finally:
        asyncio.run(_cleanup(app, queue_name))


async def _cleanup(app: App, queue_name: str) -> None:
    async with app:
        for name in (queue_name, dlq_name(queue_name)):
            await app.transport.delete_queue(name)


async def test_a_consumer_the_broker_stops_is_noticed(make_app: MakeApp, queue_name: str) -> None:
    app = make_app("lost-consumer")
    async with app, app.worker(concurrency=2) as worker:
        await app.transport.delete_queue(queue_name)
        with anyio.fail_after(TIMEOUT):
            error = await worker.wait_failed()
        assert queue_name in str(error)


async def test_a_message_without_content_type_is_dead_lettered_and_its_caller_told(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("no-content-type")
    _adder(app)
    async with app, app.worker(concurrency=2):
        await app.results.start()
        reply_to = app.results.reply_to
        assert reply_to is not None
        headers = {"task": "outcomes.add", "id": "no-type-1"}
        envelope = Envelope(
            body=b"[[1, 2], {}, {}]",
            headers=headers,
            content_type="",
            correlation_id="no-type-1",
            reply_to=reply_to,
        )
        await app.broker.declare(app.broker.queue(queue_name))
        await app.transport.publish(envelope, routing_key=queue_name)
        result: AsyncResult[Any] = AsyncResult("no-type-1", app.results)
        with pytest.raises(Exception, match="no content type"):
            await result.get(timeout=TIMEOUT)
        (parked,) = await receive(app.transport, dlq_name(queue_name))
        assert parked.headers["x-aioqueue-error-type"] == "ContentTypeError"
