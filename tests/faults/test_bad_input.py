"""Bad input on a real RabbitMQ: dead-lettered with the reason, caller told, worker unharmed.

Each case puts one message the worker cannot process on its queue (raw, through the
transport, or through ``send_task`` when a client could produce it). Every case must end
with the message in ``<queue>.dlq`` carrying ``x-aioqueue-error``, a FAILURE for the
caller (the messages carry an id and ``reply_to``), and a worker that still serves.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from aioqueue import (
    App,
    ArgumentsError,
    AsyncResult,
    ContentTypeError,
    DecodeError,
    MalformedMessageError,
    MessageError,
    UnknownTaskError,
)
from aioqueue.serialization import PICKLE
from aioqueue.topology import dlq_name
from aioqueue.transport.base import Envelope
from tests.helpers import receive

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


@dataclass
class Ctx:
    client: App
    queue: str
    reply_to: str


@pytest.fixture
async def ctx(amqp_url: str, amqp_queue: str) -> AsyncIterator[Ctx]:
    worker_app = App("bad-input-worker", broker=amqp_url, default_queue=amqp_queue)
    client = App("bad-input-client", broker=amqp_url, default_queue=amqp_queue)

    @worker_app.task(name="bad.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    async with worker_app, client, worker_app.worker(concurrency=2, shutdown_timeout=5):
        await client.results.start()  # the client's reply queue, for hand-made messages
        reply_to = client.results.reply_to
        assert reply_to is not None
        yield Ctx(client, amqp_queue, reply_to)


async def _publish_raw(
    ctx: Ctx,
    body: bytes,
    *,
    task: str | None = "bad.multiply",
    content_type: str = "application/json",
) -> str:
    task_id = str(uuid.uuid4())
    headers: dict[str, Any] = {"id": task_id, "lang": "py", "root_id": task_id}
    if task is not None:
        headers["task"] = task
    envelope = Envelope(
        body=body,
        headers=headers,
        content_type=content_type,
        correlation_id=task_id,
        reply_to=ctx.reply_to,
    )
    await ctx.client.transport.publish(envelope, routing_key=ctx.queue, mandatory=True)
    return task_id


async def _send_task(ctx: Ctx, name: str, args: list[Any]) -> str:
    return (await ctx.client.send_task(name, args)).id


@dataclass(frozen=True)
class Case:
    send: Callable[[Ctx], Awaitable[str]]
    error: type[MessageError]
    says: str  # part of the error message naming the problem


CASES = {
    "undecodable-body": Case(
        lambda ctx: _publish_raw(ctx, b"\xff\xfe[[1, 2], {}, {}"),
        DecodeError,
        "body is not valid JSON",
    ),
    "wrong-body-shape": Case(
        lambda ctx: _publish_raw(ctx, b'{"args": [1, 2], "kwargs": {}}'),
        MalformedMessageError,
        "body must be [args, kwargs, embed], got dict",
    ),
    "unknown-task": Case(
        lambda ctx: _send_task(ctx, "bad.no_such_task", [1, 2]),
        UnknownTaskError,
        "task 'bad.no_such_task' is not registered",
    ),
    "wrong-argument-count": Case(
        lambda ctx: _send_task(ctx, "bad.multiply", [1]),
        ArgumentsError,
        "missing a required argument: 'y'",
    ),
    "pickle-not-accepted": Case(
        lambda ctx: _publish_raw(ctx, pickle.dumps([[1, 2], {}, {}]), content_type=PICKLE),
        ContentTypeError,
        f"content type '{PICKLE}' is not accepted",
    ),
    "no-task-header": Case(
        lambda ctx: _publish_raw(ctx, b"[[1, 2], {}, {}]", task=None),
        MalformedMessageError,
        "no 'task' header",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_bad_input_is_dead_lettered_and_reported(ctx: Ctx, case: Case) -> None:
    task_id = await case.send(ctx)

    # The caller is told, with the same error type the worker raised.
    with pytest.raises(case.error) as caught:
        await AsyncResult(task_id, ctx.client.results).get(timeout=TIMEOUT)
    assert case.says in str(caught.value)

    # The message is parked in <queue>.dlq with the reason.
    (dead,) = await receive(ctx.client.transport, dlq_name(ctx.queue), 1, TIMEOUT)
    headers = dead.headers
    assert dead.correlation_id == task_id
    assert headers["id"] == task_id
    assert case.says in headers["x-aioqueue-error"]
    assert headers["x-aioqueue-error-type"] == case.error.__name__
    assert headers["x-aioqueue-queue"] == ctx.queue

    # And the worker still serves.
    good = await ctx.client.send_task("bad.multiply", [6, 7])
    assert await good.get(timeout=TIMEOUT) == 42


async def test_worker_survives_a_burst_of_bad_input(ctx: Ctx) -> None:
    sent = [await case.send(ctx) for case in CASES.values()]
    good = await ctx.client.send_task("bad.multiply", [6, 7])
    assert await good.get(timeout=TIMEOUT) == 42
    for task_id, case in zip(sent, CASES.values(), strict=True):
        with pytest.raises(case.error):
            await AsyncResult(task_id, ctx.client.results).get(timeout=TIMEOUT)
    dead = await receive(ctx.client.transport, dlq_name(ctx.queue), len(CASES), TIMEOUT)
    assert sorted(d.correlation_id or "" for d in dead) == sorted(sent)
