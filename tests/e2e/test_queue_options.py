"""Queue options against a real RabbitMQ: priorities reorder a backlog, a quorum queue
end to end, single active consumer, TTL and length limits (what is dropped reaches the
``.dlq``), and declaration conflicts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioqueue import App, DeclarationConflictError, PublishError, Queue, UnknownTaskError
from aioqueue.topology import dlq_name
from aioqueue.transport.base import ExchangeSpec, QueueSpec
from tests.helpers import delete_topology, eventually

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]

TIMEOUT = 20


@pytest.fixture
async def cleanup(amqp_url: str, queue_name: str) -> AsyncIterator[str]:
    yield queue_name
    await delete_topology(amqp_url, queue_name)


def _app(amqp_url: str, queue: Queue, name: str = "options") -> tuple[App, list[Any]]:
    app = App(name, broker=amqp_url, default_queue=queue.name, queues=[queue])
    seen: list[Any] = []

    @app.task(name="options.record")
    async def record(value: Any) -> Any:
        seen.append(value)
        return value

    return app, seen


async def test_priorities_reorder_a_backlog(amqp_url: str, cleanup: str) -> None:
    app, seen = _app(amqp_url, Queue(cleanup, max_priority=10))
    async with app:
        for i in range(5):
            await app.send_task("options.record", [f"low{i}"], priority=1, ignore_result=True)
        for i in range(5):
            await app.send_task("options.record", [f"high{i}"], priority=9, ignore_result=True)
        async with app.worker(concurrency=1, prefetch=1):
            await eventually(lambda: len(seen) == 10)
    assert seen == [f"high{i}" for i in range(5)] + [f"low{i}" for i in range(5)]


async def test_quorum_queue_end_to_end(amqp_url: str, cleanup: str) -> None:
    app, _ = _app(amqp_url, Queue(cleanup, queue_type="quorum"))
    async with app, app.worker():
        results = [await app.send_task("options.record", [i]) for i in range(10)]
        assert [await r.get(timeout=TIMEOUT) for r in results] == list(range(10))
        state = await app.transport.inspect_queue(cleanup)
        assert state is not None and state.consumers == 1


async def test_a_classic_dlq_of_a_quorum_queue_is_used_as_it_is(
    amqp_url: str, cleanup: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Declared by an aioqueue from before quorum queues had quorum .dlqs: a worker still
    # starts, says how to replace it, and dead-letters into it.
    app, _ = _app(amqp_url, Queue(cleanup, queue_type="quorum"))
    async with app:
        await app.transport.declare_queue(QueueSpec(dlq_name(cleanup)))
        with caplog.at_level(logging.WARNING, "aioqueue.broker"):
            async with app.worker():
                with pytest.raises(UnknownTaskError):
                    await (await app.send_task("options.no_such_task")).get(timeout=TIMEOUT)
        assert f"{cleanup}.dlq exists with other settings than aioqueue's" in caplog.text
        assert "empty it (aioqueue dlq replay or purge) and delete it" in caplog.text
        state = await app.transport.inspect_queue(dlq_name(cleanup))
        assert state is not None and state.messages == 1


async def test_single_active_consumer_keeps_one_worker_on_the_queue(
    amqp_url: str, cleanup: str
) -> None:
    queue = Queue(cleanup, single_active_consumer=True)
    first, first_seen = _app(amqp_url, queue, "first")
    second, second_seen = _app(amqp_url, queue, "second")
    async with first, second:
        worker_one = first.worker()
        await worker_one.start()
        async with second.worker():
            for i in range(20):
                await first.send_task("options.record", [i], ignore_result=True)
            await eventually(lambda: len(first_seen) == 20)
            assert second_seen == []
            # The active consumer goes: the other takes over, in order.
            await worker_one.stop()
            for i in range(20, 25):
                await first.send_task("options.record", [i], ignore_result=True)
            await eventually(lambda: len(second_seen) == 5)
    assert first_seen == list(range(20)) and second_seen == list(range(20, 25))


async def test_expired_messages_reach_the_dlq(amqp_url: str, cleanup: str) -> None:
    app, _ = _app(amqp_url, Queue(cleanup, message_ttl=0.1))
    async with app:
        await app.send_task("options.record", ["late"], ignore_result=True)

        async def in_dlq() -> bool:
            state = await app.transport.inspect_queue(f"{cleanup}.dlq")
            return state is not None and state.messages == 1

        await eventually(in_dlq)
        state = await app.transport.inspect_queue(cleanup)
        assert state is not None and state.messages == 0


async def test_a_full_queue_refusing_publishes_fails_the_call(amqp_url: str, cleanup: str) -> None:
    app, _ = _app(amqp_url, Queue(cleanup, max_length=2, overflow="reject-publish"))
    async with app:
        for i in range(2):
            await app.send_task("options.record", [i], ignore_result=True)
        with pytest.raises(PublishError):
            await app.send_task("options.record", [2], ignore_result=True)
        # Still usable once there is room again.
        assert await app.transport.purge_queue(cleanup) == 2
        await app.send_task("options.record", [3], ignore_result=True)


async def test_a_full_queue_dropping_its_head_moves_it_to_the_dlq(
    amqp_url: str, cleanup: str
) -> None:
    app, seen = _app(amqp_url, Queue(cleanup, max_length=1))
    async with app:
        for i in range(3):
            await app.send_task("options.record", [i], ignore_result=True)

        async def dropped_two() -> bool:
            # Dead-lettering runs after the publish is confirmed: wait for it.
            dlq = await app.transport.inspect_queue(f"{cleanup}.dlq")
            return dlq is not None and dlq.messages == 2

        await eventually(dropped_two)
        async with app.worker():
            await eventually(lambda: seen == [2])


async def test_an_exchange_conflict_stops_a_worker_and_not_a_client(
    amqp_url: str, cleanup: str
) -> None:
    app, seen = _app(amqp_url, Queue(cleanup))
    async with app:
        # Someone else made the queue's exchange a fanout.
        await app.transport.declare_exchange(ExchangeSpec(cleanup, "fanout"))
        with pytest.raises(DeclarationConflictError) as caught:
            await app.worker().start()
        message = str(caught.value)
        assert f"exchange {cleanup!r}" in message and "type direct" in message
        assert "fanout" in message
        # A client warns and sends all the same; the transport is still usable.
        await app.send_task("options.record", ["sent"], ignore_result=True)
        state = await app.transport.inspect_queue(cleanup)
        assert state is not None and state.messages == 1
