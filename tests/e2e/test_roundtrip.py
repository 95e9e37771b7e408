"""A client sends, a worker runs, the result returns: on ``memory://`` and RabbitMQ.

``app`` registers the tasks, runs the worker and calls them by object; ``client`` is
another app on the same broker (on RabbitMQ, with its own connection) that knows no
tasks and calls them by name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from aioqueue import (
    App,
    ArgumentsError,
    AsyncResult,
    EncodeError,
    ResultTimeoutError,
    Signature,
    State,
    Task,
    TaskError,
    TaskRevokedError,
    TimeLimitExceeded,
    Worker,
)
from aioqueue.message import full_headers, utc_now
from aioqueue.routing import MIN_DELAY_MS
from aioqueue.topology import dlq_name
from tests.celery_vectors import body_bytes, load_vector, volatile_headers
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually, receive

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


class CustomError(Exception):
    """Defined next to the tasks: allowed on the app that registers them, not elsewhere."""


@dataclass
class Env:
    app: App  # registers the tasks, runs the worker, calls them by object
    client: App  # another app on the same broker, knows no tasks: calls by name
    queue: str
    worker: Worker
    gate: anyio.Event
    multiply: Task[[int, int], int]
    blocking_multiply: Task[[int, int], int]
    fail: Task[[str], None]
    blocking_fail: Task[[str], None]
    fail_custom: Task[[str], None]
    wait_gate: Task[[], str]
    stamp: Task[[], str]
    record: Task[[str], str]
    sleepy: Task[[float], None]
    limited: Task[[], None]
    unserialisable: Task[[], object]
    calls: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)


@pytest.fixture
async def env(make_app: MakeApp, queue_name: str) -> AsyncIterator[Env]:
    app = make_app("roundtrip")
    client = make_app("roundtrip-client")
    gate = anyio.Event()
    calls: list[str] = []
    threads: list[int] = []

    @app.task(name="tasks.multiply")  # the name in Celery's captured messages
    async def multiply(x: int, y: int) -> int:
        return x * y

    @app.task(name="e2e.blocking_multiply")
    def blocking_multiply(x: int, y: int) -> int:
        threads.append(threading.get_ident())
        return x * y

    @app.task(name="e2e.fail")
    async def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="e2e.blocking_fail")
    def blocking_fail(msg: str) -> None:
        raise KeyError(msg)

    @app.task(name="e2e.fail_custom")
    async def fail_custom(msg: str) -> None:
        raise CustomError(msg)

    @app.task(name="e2e.wait_gate")
    async def wait_gate() -> str:
        await gate.wait()
        return "opened"

    @app.task(name="e2e.stamp")
    async def stamp() -> str:
        return utc_now().isoformat()

    @app.task(name="e2e.record")
    async def record(what: str) -> str:
        calls.append(what)
        return what

    @app.task(name="e2e.sleepy")
    async def sleepy(seconds: float) -> None:
        await anyio.sleep(seconds)

    @app.task(name="e2e.limited", time_limit=0.2)
    async def limited() -> None:
        await anyio.sleep(30)

    @app.task(name="e2e.unserialisable")
    async def unserialisable() -> object:
        return object()

    async with app, client, app.worker(concurrency=4, shutdown_timeout=5) as worker:
        yield Env(
            app=app,
            client=client,
            queue=queue_name,
            worker=worker,
            gate=gate,
            multiply=multiply,
            blocking_multiply=blocking_multiply,
            fail=fail,
            blocking_fail=blocking_fail,
            fail_custom=fail_custom,
            wait_gate=wait_gate,
            stamp=stamp,
            record=record,
            sleepy=sleepy,
            limited=limited,
            unserialisable=unserialisable,
            calls=calls,
            threads=threads,
        )


async def test_round_trip_by_object(env: Env) -> None:
    result = await env.multiply.delay(3, 4)
    assert isinstance(result, AsyncResult)
    assert await result.get(timeout=TIMEOUT) == 12
    assert await result.status() is State.SUCCESS
    assert await result.successful()
    # An AsyncResult is awaitable, and apply_async sends explicit arguments.
    assert await (await env.multiply.apply_async((5,), {"y": 6})) == 30
    assert await (await env.blocking_multiply.delay(6, 7)).get(timeout=TIMEOUT) == 42


async def test_sync_task_runs_in_a_worker_thread(env: Env) -> None:
    result = await env.blocking_multiply.delay(6, 7)
    assert await result.get(timeout=TIMEOUT) == 42
    assert env.threads and env.threads[0] != threading.get_ident()


async def test_round_trip_by_name(env: Env) -> None:
    by_args = await env.client.send_task("tasks.multiply", [3, 4])
    by_kwargs = await env.client.send_task("tasks.multiply", kwargs={"x": 2, "y": 5})
    sync = await env.client.send_task("e2e.blocking_multiply", (8, 9))
    assert await by_args.get(timeout=TIMEOUT) == 12
    assert await by_kwargs.get(timeout=TIMEOUT) == 10
    assert await sync.get(timeout=TIMEOUT) == 72
    assert await sync.status() is State.SUCCESS


async def test_many_concurrent_round_trips(env: Env) -> None:
    results = [await env.multiply.delay(i, i) for i in range(50)]
    assert [await r.get(timeout=TIMEOUT) for r in results] == [i * i for i in range(50)]


async def test_delay_many_sends_every_call_at_once(env: Env) -> None:
    results = await env.multiply.delay_many((i, i) for i in range(50))
    assert len({r.id for r in results}) == 50
    assert [await r.get(timeout=TIMEOUT) for r in results] == [i * i for i in range(50)]
    assert await env.multiply.delay_many([]) == []


async def test_send_many_mixes_tasks_and_options_and_keeps_their_order(env: Env) -> None:
    sigs = [
        env.multiply.s(2, 3),
        env.record.s("many").set(task_id="mine"),
        env.fail.s("one of many"),
        Signature("tasks.multiply", (4, 5)),  # by name: not checked, as send_task
        env.multiply.s(1, 2).on_success(env.record.si("linked")),
    ]
    results = await env.client.send_many(sigs)
    assert results[1].id == "mine"
    outcomes = [await r.get(timeout=TIMEOUT, propagate=False) for r in results]
    assert outcomes[0] == 6 and outcomes[1] == "many" and outcomes[3] == 20
    assert isinstance(outcomes[2], ValueError) and str(outcomes[2]) == "one of many"
    assert outcomes[4] == 2
    await eventually(lambda: "linked" in env.calls)
    assert sorted(env.calls) == ["linked", "many"]


async def test_many_with_one_bad_call_sends_none(env: Env) -> None:
    with pytest.raises(ArgumentsError, match="multiply"):
        await env.multiply.delay_many([(1, 2), (1,), (3, 4)])
    unserialisable = env.record.s(object())  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        await env.app.send_many([env.record.s("first"), unserialisable])
    # Nothing of either was published: the next one is the first the worker runs.
    assert await (await env.record.delay("after")).get(timeout=TIMEOUT) == "after"
    assert env.calls == ["after"]


async def test_direct_call_runs_locally_without_a_broker() -> None:
    # Nothing listens on port 1: any use of the broker would fail.
    app = App("local", broker="amqp://guest:guest@127.0.0.1:1/")

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def blocking_add(x: int, y: int) -> int:
        return x + y

    assert await add(3, 4) == 7
    assert await blocking_add(5, 6) == 11


@pytest.mark.parametrize(
    ("task_name", "exc_type", "message"),
    [("fail", ValueError, "boom"), ("blocking_fail", KeyError, "gone")],
)
async def test_remote_exception_is_raised_as_the_same_type(
    env: Env, task_name: str, exc_type: type[Exception], message: str
) -> None:
    task: Task[[str], None] = getattr(env, task_name)
    result = await task.delay(message)
    with pytest.raises(exc_type) as caught:
        await result.get(timeout=TIMEOUT)
    assert type(caught.value) is exc_type
    assert caught.value.args == (message,)
    (note,) = caught.value.__notes__
    assert note.startswith(f"Remote traceback (task {result.id}):")
    assert f"{exc_type.__name__}: {caught.value}" in note
    assert await result.status() is State.FAILURE


async def test_remote_failure_returned_when_not_propagated(env: Env) -> None:
    result: AsyncResult[Any] = await env.fail.delay("quiet")
    exc = await result.get(timeout=TIMEOUT, propagate=False)
    assert isinstance(exc, ValueError) and exc.args == ("quiet",)


async def test_custom_exception_of_the_apps_own_tasks_is_rebuilt(env: Env) -> None:
    result = await env.fail_custom.delay("bad thing")
    with pytest.raises(CustomError, match="bad thing"):
        await result.get(timeout=TIMEOUT)


async def test_custom_exception_not_allowed_becomes_task_error(env: Env) -> None:
    result = await env.client.send_task("e2e.fail_custom", ["bad thing"])
    with pytest.raises(TaskError) as caught:
        await result.get(timeout=TIMEOUT)
    error = caught.value
    assert error.exc_type == "CustomError"
    assert error.exc_module == __name__
    assert error.message == "bad thing"
    assert error.remote_traceback is not None
    assert "CustomError: bad thing" in error.remote_traceback
    assert str(error) == "CustomError: bad thing"


async def test_timeout_raises_result_timeout_error_with_the_task_id(env: Env) -> None:
    result = await env.wait_gate.delay()
    with pytest.raises(ResultTimeoutError) as caught:
        await result.get(timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.task_id == result.id
    assert result.id in str(caught.value)
    # The task was only late: the result still arrives for a later wait.
    env.gate.set()
    assert await result.get(timeout=TIMEOUT) == "opened"


async def test_ignore_result_gets_no_result(env: Env) -> None:
    ignored = await env.record.apply_async(("ignored",), ignore_result=True)
    await eventually(lambda: env.worker.processed >= 1, TIMEOUT)
    assert env.calls == ["ignored"]
    # The reply queue is FIFO: a result for `ignored` would arrive before this one.
    assert await (await env.record.delay("kept")).get(timeout=TIMEOUT) == "kept"
    assert await ignored.status() is State.PENDING
    with pytest.raises(ResultTimeoutError):
        await ignored.get(timeout=0.2)
    assert env.calls == ["ignored", "kept"]


async def test_unserialisable_result_is_an_encode_error_and_the_worker_serves_on(
    env: Env,
) -> None:
    result = await env.unserialisable.delay()
    with pytest.raises(EncodeError) as caught:
        await result.get(timeout=TIMEOUT)
    assert "e2e.unserialisable" in str(caught.value)
    assert "not JSON serializable" in str(caught.value)
    assert await (await env.multiply.delay(2, 3)).get(timeout=TIMEOUT) == 6


async def test_status_is_pending_then_success(env: Env) -> None:
    result = await env.wait_gate.delay()
    assert await result.status() is State.PENDING
    assert not await result.ready()
    env.gate.set()
    await eventually(result.ready, TIMEOUT)
    assert await result.status() is State.SUCCESS
    assert await result.get(timeout=TIMEOUT) == "opened"
    assert await result.status() is State.SUCCESS


@pytest.mark.parametrize("how", ["countdown", "eta"])
async def test_delayed_task_does_not_run_before_its_eta(env: Env, how: str) -> None:
    delay = 0.3
    sent_at = utc_now()
    if how == "countdown":
        result = await env.stamp.apply_async(countdown=delay)
    else:
        result = await env.stamp.apply_async(eta=sent_at + timedelta(seconds=delay))
    ran_at = datetime.fromisoformat(await result.get(timeout=TIMEOUT))
    # A remainder under MIN_DELAY_MS is run at once rather than parked again.
    earliest = sent_at + timedelta(seconds=delay) - timedelta(milliseconds=MIN_DELAY_MS)
    assert ran_at >= earliest


@pytest.mark.parametrize(
    "expires", [datetime(2000, 1, 1, tzinfo=UTC), -1.0], ids=["datetime", "seconds"]
)
async def test_expired_task_is_revoked_and_not_run(env: Env, expires: datetime | float) -> None:
    result = await env.record.apply_async(("expired",), expires=expires)
    with pytest.raises(TaskRevokedError) as caught:
        await result.get(timeout=TIMEOUT)
    assert result.id in str(caught.value)
    assert await result.status() is State.REVOKED
    # A task sent after it runs, and the expired one never did.
    assert await (await env.record.delay("later")).get(timeout=TIMEOUT) == "later"
    assert env.calls == ["later"]


@pytest.mark.parametrize("how", ["option", "task-default"])
async def test_time_limit_raises_time_limit_exceeded(env: Env, how: str) -> None:
    if how == "option":
        result: AsyncResult[Any] = await env.sleepy.apply_async((30,), time_limit=0.2)
    else:
        result = await env.limited.delay()
    with pytest.raises(TimeLimitExceeded) as caught:
        await result.get(timeout=TIMEOUT)
    assert isinstance(caught.value, TimeoutError)
    assert "time limit of 0.2 s" in str(caught.value)
    assert await (await env.multiply.delay(1, 2)).get(timeout=TIMEOUT) == 2


@pytest.mark.parametrize("case", ["task-delay", "task-apply_async_time_limits_headers"])
async def test_message_on_the_wire_matches_celery(env: Env, case: str) -> None:
    """What the broker delivers is what Celery sent (on RabbitMQ: after AMQP table
    encoding and decoding)."""
    vector = load_vector(case)
    capture = f"{env.queue}.capture"  # declared by the send, with no worker on it
    try:
        if case == "task-delay":
            result = await env.multiply.apply_async((3, 4), queue=capture)
        else:
            result = await env.multiply.apply_async(
                (3, 4), queue=capture, time_limit=30, soft_time_limit=20, headers={"x-custom": "v"}
            )
        (envelope,) = await receive(env.client.transport, capture, 1, TIMEOUT)
    finally:
        for name in (capture, dlq_name(capture)):
            await env.client.transport.delete_queue(name)
        await env.client.transport.delete_exchange(capture)
    headers, expected = full_headers(envelope.headers), vector["headers"]

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
