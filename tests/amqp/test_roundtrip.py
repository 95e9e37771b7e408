"""End to end over a real RabbitMQ: a client and a worker, each with its own connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

from aioqueue import App, ResultTimeoutError, State, Task, TaskError
from aioqueue.routing import dlq_name
from aioqueue.transport.base import Delivery
from tests.celery_vectors import body_bytes, load_vector, volatile_headers

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


class CustomError(Exception):
    pass


@dataclass
class Env:
    app: App  # registers the tasks, runs the worker, calls them by object
    client: App  # another connection that knows no tasks: calls by name
    queue: str
    gate: anyio.Event
    multiply: Task[[int, int], int]
    blocking_multiply: Task[[int, int], int]
    fail: Task[[str], None]
    wait_gate: Task[[], str]


@pytest.fixture
async def env(amqp_url: str, amqp_queue: str) -> AsyncIterator[Env]:
    app = App("amqp-roundtrip", broker=amqp_url, default_queue=amqp_queue)
    client = App("amqp-client", broker=amqp_url, default_queue=amqp_queue)
    gate = anyio.Event()

    @app.task(name="tasks.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    @app.task(name="amqp.blocking_multiply")
    def blocking_multiply(x: int, y: int) -> int:
        return x * y

    @app.task(name="amqp.fail")
    async def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="amqp.fail_custom")
    async def fail_custom(msg: str) -> None:
        raise CustomError(msg)

    @app.task(name="amqp.wait_gate")
    async def wait_gate() -> str:
        await gate.wait()
        return "opened"

    async with app, client, app.worker(concurrency=4, shutdown_timeout=5):
        yield Env(app, client, amqp_queue, gate, multiply, blocking_multiply, fail, wait_gate)


async def test_round_trip_by_object(env: Env) -> None:
    assert await (await env.multiply.delay(3, 4)).get(timeout=TIMEOUT) == 12
    assert await (await env.blocking_multiply.delay(6, 7)).get(timeout=TIMEOUT) == 42


async def test_round_trip_by_name(env: Env) -> None:
    by_args = await env.client.send_task("tasks.multiply", [3, 4])
    by_kwargs = await env.client.send_task("tasks.multiply", kwargs={"x": 2, "y": 5})
    sync = await env.client.send_task("amqp.blocking_multiply", (8, 9))
    assert await by_args.get(timeout=TIMEOUT) == 12
    assert await by_kwargs.get(timeout=TIMEOUT) == 10
    assert await sync.get(timeout=TIMEOUT) == 72
    assert await sync.status() is State.SUCCESS


async def test_remote_exception(env: Env) -> None:
    result = await env.fail.delay("boom")
    with pytest.raises(ValueError) as caught:
        await result.get(timeout=TIMEOUT)
    assert caught.value.args == ("boom",)
    assert "ValueError: boom" in caught.value.__notes__[0]

    custom = await env.client.send_task("amqp.fail_custom", ["bad"])
    with pytest.raises(TaskError) as error:
        await custom.get(timeout=TIMEOUT)
    assert (error.value.exc_type, error.value.message) == ("CustomError", "bad")
    assert error.value.remote_traceback is not None
    assert "CustomError: bad" in error.value.remote_traceback


async def test_timeout(env: Env) -> None:
    result = await env.wait_gate.delay()
    with pytest.raises(ResultTimeoutError) as caught:
        await result.get(timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.task_id == result.id
    env.gate.set()
    assert await result.get(timeout=TIMEOUT) == "opened"


@pytest.mark.parametrize("case", ["task-delay", "task-apply_async_time_limits_headers"])
async def test_message_on_the_wire_matches_celery(env: Env, case: str) -> None:
    """What RabbitMQ delivers (after AMQP table encoding) is what Celery sent."""
    vector = load_vector(case)
    capture = f"{env.queue}.capture"  # declared by the send, with no worker on it
    got: list[Delivery] = []
    arrived = anyio.Event()

    async def handler(delivery: Delivery) -> None:
        got.append(delivery)
        await delivery.ack()
        arrived.set()

    try:
        if case == "task-delay":
            result = await env.multiply.apply_async((3, 4), queue=capture)
        else:
            result = await env.multiply.apply_async(
                (3, 4), queue=capture, time_limit=30, soft_time_limit=20, headers={"x-custom": "v"}
            )
        consumer = await env.client.transport.consume(capture, handler, prefetch=1)
        with anyio.fail_after(TIMEOUT):
            await arrived.wait()
        await consumer.cancel()
    finally:
        for name in (capture, dlq_name(capture)):
            await env.client.transport.delete_queue(name)
        await env.client.transport.delete_exchange(capture)
    envelope = got[0].envelope
    headers, expected = envelope.headers, vector["headers"]

    assert set(headers) == set(expected)
    for key in expected.keys() - volatile_headers(vector):
        assert json.dumps(headers[key]) == json.dumps(expected[key]), key
    assert headers["id"] == headers["root_id"] == result.id == envelope.correlation_id
    assert envelope.body == body_bytes(vector)
    assert envelope.content_type == "application/json"
    assert envelope.content_encoding == "utf-8"
    assert envelope.persistent
    assert envelope.reply_to
    assert (envelope.priority or 0) == vector["properties"]["priority"]
