"""Writing Celery's protocol v2: aioqueue produces what Celery 5.7 put on the wire.

Task messages are sent through the real client path (``delay``, ``send_task``,
``apply_async``) on the memory transport and read back from the queue they land in;
results are produced by a real worker and read from a plain reply queue. Each is compared
with the captured vector, field by field, except the fields the vector lists as volatile.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from aioqueue import App, AsyncResult, State, Task
from aioqueue.message import full_headers, utc_now
from aioqueue.options import Options, build_message
from aioqueue.topology import DELAY_PREFIX
from aioqueue.transport.base import Delivery, Envelope, QueueSpec
from tests.celery_vectors import (
    RESULT_CASES,
    SHARED_DIR,
    TASK_CASES,
    VECTORS_DIR,
    body_bytes,
    load_vector,
    volatile_headers,
)
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

Multiply = Task[[int, int], int]
Send = Callable[[App, Multiply], Awaitable[AsyncResult[Any]]]


@dataclass(frozen=True)
class SendCase:
    """How the Celery capture was made, said with aioqueue, and where the message lands."""

    send: Send
    lands_in: str


SEND_CASES: dict[str, SendCase] = {
    "task-delay": SendCase(lambda app, t: t.delay(3, 4), "celery"),
    "task-send_task": SendCase(lambda app, t: app.send_task("tasks.multiply", [3, 4]), "celery"),
    "task-send_task_kwargs": SendCase(
        lambda app, t: app.send_task("tasks.multiply", kwargs={"x": 3, "y": 4}), "celery"
    ),
    "task-ignore_result": SendCase(
        lambda app, t: t.apply_async((3, 4), ignore_result=True), "celery"
    ),
    # Not due yet: parked in the delay bucket below the remaining time.
    "task-apply_async_countdown": SendCase(
        lambda app, t: t.apply_async((3, 4), countdown=10), f"{DELAY_PREFIX}8192"
    ),
    "task-apply_async_eta_expires_priority": SendCase(
        lambda app, t: t.apply_async(
            (3, 4), eta=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), expires=60, priority=5
        ),
        f"{DELAY_PREFIX}{2**31}",
    ),
    "task-apply_async_queue_other": SendCase(
        lambda app, t: t.apply_async((3, 4), queue="other"), "other"
    ),
    "task-apply_async_time_limits_headers": SendCase(
        lambda app, t: t.apply_async(
            (3, 4), time_limit=30, soft_time_limit=20, headers={"x-custom": "v"}
        ),
        "celery",
    ),
}

# Display-only or equivalent values where aioqueue and Celery's send_task may differ:
# (Celery's value, aioqueue's value). Celery reprs the list it was given and leaves
# ignore_result null; both read null as "do not ignore".
TOLERATED: dict[tuple[str, str], tuple[Any, Any]] = {
    ("task-send_task", "argsrepr"): ("[3, 4]", "(3, 4)"),
    ("task-send_task", "ignore_result"): (None, False),
    ("task-send_task_kwargs", "ignore_result"): (None, False),
}


def _multiply_app(**kwargs: Any) -> tuple[App, Multiply]:
    app = App("vectors", **kwargs)

    @app.task(name="tasks.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    return app, multiply


async def _next_delivery(app: App, queue: str) -> Delivery:
    """The next message in ``queue``, acked."""
    got: list[Delivery] = []
    arrived = anyio.Event()

    async def handler(delivery: Delivery) -> None:
        if not got:
            got.append(delivery)
            arrived.set()
        await delivery.ack()

    consumer = await app.transport.consume(queue, handler, prefetch=1)
    try:
        with anyio.fail_after(10):
            await arrived.wait()
    finally:
        await consumer.cancel()
    return got[0]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_vectors_are_copied_into_the_repository() -> None:
    for case in (*TASK_CASES, *RESULT_CASES):
        assert (VECTORS_DIR / f"{case}.json").is_file(), case
        assert load_vector(case)["celery_version"] == "5.7.0"


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/celery-vectors is not here")
@pytest.mark.parametrize("case", (*TASK_CASES, *RESULT_CASES))
def test_copied_vector_matches_shared(case: str) -> None:
    copied = (VECTORS_DIR / f"{case}.json").read_bytes()
    assert copied == (SHARED_DIR / f"{case}.json").read_bytes()


@pytest.mark.parametrize("case", TASK_CASES)
async def test_sent_message_matches_celery(case: str) -> None:
    vector = load_vector(case)
    app, multiply = _multiply_app()
    async with app:
        before = utc_now()
        result = await SEND_CASES[case].send(app, multiply)
        after = utc_now()
        delivery = await _next_delivery(app, SEND_CASES[case].lands_in)
    envelope = delivery.envelope
    headers, expected = full_headers(envelope.headers), vector["headers"]

    # Headers: the same keys in the same order, the same values except volatile ones.
    assert list(headers) == list(expected)
    for key in expected.keys() - volatile_headers(vector):
        if (case, key) in TOLERATED:
            celery_value, ours = TOLERATED[case, key]
            assert expected[key] == celery_value
            assert headers[key] in (celery_value, ours), key
        else:
            assert _json(headers[key]) == _json(expected[key]), key
    # ... and the volatile ones are consistent with each other and with the call.
    assert headers["id"] == result.id == headers["root_id"]
    assert headers["parent_id"] is None and headers["group"] is None
    assert headers["origin"].startswith("gen") and "@" in headers["origin"]
    if case == "task-apply_async_countdown":
        eta = datetime.fromisoformat(headers["eta"])
        assert before + timedelta(seconds=10) <= eta <= after + timedelta(seconds=10)
    elif case == "task-apply_async_eta_expires_priority":
        assert headers["eta"] == expected["eta"] == "2030-01-02T03:04:05+00:00"
        expires = datetime.fromisoformat(headers["expires"])
        assert before + timedelta(seconds=60) <= expires <= after + timedelta(seconds=60)
    else:
        assert headers["eta"] is None and headers["expires"] is None

    # Properties.
    props = vector["properties"]
    assert envelope.content_type == props["content_type"] == "application/json"
    assert envelope.content_encoding == props["content_encoding"] == "utf-8"
    assert envelope.persistent and props["delivery_mode"] == 2
    assert envelope.correlation_id == headers["id"]
    if headers["ignore_result"]:
        # Celery names a reply queue anyway; aioqueue does not ask for what nobody wants.
        assert envelope.reply_to is None
    else:
        assert isinstance(envelope.reply_to, str) and envelope.reply_to
    assert props["reply_to"]
    # AMQP priority 0 and no priority are the same thing; a set priority travels as is.
    assert (envelope.priority or 0) == props["priority"]

    # Body: the very same bytes (these vectors embed no task ids).
    assert envelope.body == body_bytes(vector)


async def test_envelope_of_built_message_is_byte_identical() -> None:
    """With the vector's ids and origin, App.envelope(build_message(...)) *is* the capture."""
    vector = load_vector("task-delay")
    headers, props = vector["headers"], vector["properties"]
    args, kwargs, _ = vector["body_json"]
    app, _ = _multiply_app()
    message = build_message(
        headers["task"],
        args,
        kwargs,
        Options(task_id=headers["id"]),
        reply_to=props["reply_to"],
        origin=headers["origin"],
    )

    envelope = app.broker.envelope(message)

    assert envelope.body == body_bytes(vector)
    assert json.dumps(full_headers(envelope.headers)) == json.dumps(headers)
    assert envelope.correlation_id == props["correlation_id"]
    assert envelope.reply_to == props["reply_to"]
    assert envelope.content_type == props["content_type"]
    assert envelope.content_encoding == props["content_encoding"]
    assert envelope.persistent


# -- results ---------------------------------------------------------------------------

CAPTURE = "capture.reply"


def _worker_app() -> App:
    app, _ = _multiply_app()

    @app.task(name="tasks.fail")
    async def fail(msg: str) -> None:
        raise ValueError(msg)

    return app


async def _result_for(app: App, envelope: Envelope) -> Envelope:
    """Publish a task message replying to a plain queue; return the worker's answer."""
    await app.transport.declare_queue(QueueSpec(CAPTURE))
    async with app.worker(concurrency=1):
        await app.broker.publish_envelope(envelope, app.broker.route(Options(), None))
        delivery = await _next_delivery(app, CAPTURE)
    return delivery.envelope


def _check_result(produced: Envelope, vector: dict[str, Any], task_id: str) -> dict[str, Any]:
    props = vector["properties"]
    assert produced.content_type == props["content_type"]
    assert produced.content_encoding == props["content_encoding"]
    assert not produced.persistent and props["delivery_mode"] == 1
    assert produced.correlation_id == task_id
    assert produced.headers == vector["headers"] == {}
    assert produced.reply_to is None
    body: dict[str, Any] = json.loads(produced.body)
    assert list(body) == list(vector["body_json"])
    assert body["task_id"] == task_id
    date_done = datetime.fromisoformat(body["date_done"])
    assert date_done.tzinfo is not None
    # Same bytes once the volatile values are the same: key order and separators match.
    same = {**vector["body_json"], "task_id": task_id, "date_done": body["date_done"]}
    if body["traceback"] is not None:
        same["traceback"] = body["traceback"]
    assert produced.body == json.dumps(same).encode()
    return body


async def test_celery_task_message_gets_celery_result() -> None:
    """The captured task-delay message, run by an aioqueue worker, answers like Celery."""
    task = load_vector("task-delay")
    app = _worker_app()
    async with app:
        produced = await _result_for(
            app,
            Envelope(
                body=body_bytes(task),
                headers=task["headers"],
                correlation_id=task["properties"]["correlation_id"],
                reply_to=CAPTURE,
            ),
        )
    body = _check_result(produced, load_vector("result-success"), task["headers"]["id"])
    assert (body["status"], body["result"], body["traceback"], body["children"]) == (
        "SUCCESS",
        12,
        None,
        [],
    )


async def test_failure_result_matches_celery() -> None:
    vector = load_vector("result-failure")
    app = _worker_app()
    message = build_message("tasks.fail", ["boom"], {}, Options(), reply_to=CAPTURE)
    async with app:
        produced = await _result_for(app, app.broker.envelope(message))
    body = _check_result(produced, vector, message.id)
    assert body["status"] == "FAILURE"
    assert body["result"] == vector["body_json"]["result"]
    assert body["traceback"].startswith("Traceback (most recent call last):\n")
    assert body["traceback"].endswith("ValueError: boom\n")
    assert vector["body_json"]["traceback"].endswith("ValueError: boom\n")


async def test_kwargs_call_result_matches_celery() -> None:
    vector = load_vector("result-kwargs-call")
    app = _worker_app()
    message = build_message("tasks.multiply", [], {"x": 2, "y": 5}, Options(), reply_to=CAPTURE)
    async with app:
        produced = await _result_for(app, app.broker.envelope(message))
    body = _check_result(produced, vector, message.id)
    assert body["result"] == vector["body_json"]["result"] == 10


async def _wait_status(result: AsyncResult[Any], status: State) -> None:
    async def reached() -> bool:
        return await result.status() is status

    await eventually(reached)


@pytest.mark.parametrize(
    ("cases", "value"),
    [
        (("result-success",), 12),
        (("result-kwargs-call",), 10),
        (("result-retry", "result-after-retry"), 7),
    ],
)
async def test_client_reads_celery_results(cases: tuple[str, ...], value: int) -> None:
    """Celery's result bytes, delivered to an aioqueue client's reply queue, resolve it."""
    app, multiply = _multiply_app()
    async with app:
        await multiply.delay(1, 1)  # starts the reply queue; no worker runs it
        reply_to = (await _next_delivery(app, "celery")).envelope.reply_to
        assert reply_to is not None
        vectors = [load_vector(case) for case in cases]
        task_id = vectors[0]["body_json"]["task_id"]
        result: AsyncResult[int] = AsyncResult(task_id, app.results)
        assert await result.status() is State.PENDING
        for vector in vectors:
            props = vector["properties"]
            envelope = Envelope(
                body=body_bytes(vector),
                correlation_id=props["correlation_id"],
                persistent=False,
            )
            await app.transport.publish(envelope, routing_key=reply_to)
            await _wait_status(result, State(vector["body_json"]["status"]))
        assert await result.get(timeout=10) == value


async def test_client_reads_celery_failure() -> None:
    app, multiply = _multiply_app()
    vector = load_vector("result-failure")
    async with app:
        await multiply.delay(1, 1)
        reply_to = (await _next_delivery(app, "celery")).envelope.reply_to
        assert reply_to is not None
        await app.transport.publish(
            Envelope(
                body=body_bytes(vector), correlation_id=vector["properties"]["correlation_id"]
            ),
            routing_key=reply_to,
        )
        result: AsyncResult[Any] = AsyncResult(vector["body_json"]["task_id"], app.results)
        with pytest.raises(ValueError) as caught:
            await result.get(timeout=10)
    assert caught.value.args == ("boom",)
    assert "ValueError: boom" in "".join(caught.value.__notes__)
