"""Calls across the two kinds of worker, both ways, with real processes on RabbitMQ.

A Celery client (Celery's own API, ``rpc://`` results) calls an aioqueue worker, and an
aioqueue client calls a Celery worker: plain calls with every send option, chains (with
``.si``), groups, ``link``/``link_error``, results and exceptions. The workers are
subprocesses (``tests/interop/processes.py``), one of each kind for the whole module,
on a vhost of its own; each side's tasks are in ``celery_app`` and ``aioqueue_app``.

A Celery chord needs a Celery result backend (Redis, a database; ``rpc://`` refuses
chords on the client) and is joined there: an aioqueue worker cannot join it, and says
so instead of running a header whose body would never run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from aioqueue import App, TaskExpiredError, UnknownTaskError, group
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Delivery, Envelope, QueueSpec, QueueState
from tests.helpers import eventually, receive
from tests.interop import aioqueue_app, celery_app
from tests.interop.processes import Fleet, fleet
from tests.processes import ONE_LOOP

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.amqp

TIMEOUT = 30  # generous: only there so that a broken case fails instead of hanging
# Chord failures name this.
UNJOINABLE = "joined in that client's result backend, which aioqueue workers cannot reach"


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("calls")) as running:
        yield running


@pytest.fixture(scope="module")
def celery_client(workers: Fleet) -> Iterator[Any]:
    client = celery_app.client(workers.amqp_url, workers.celery_queue, workers.aioqueue_queue)
    try:
        yield client
    finally:
        celery_app.close(client)


@pytest.fixture
async def aioqueue_client(workers: Fleet) -> AsyncIterator[App]:
    client = aioqueue_app.client(workers.amqp_url, workers.celery_queue, workers.aioqueue_queue)
    async with client:
        yield client


def _key() -> str:
    return f"note-{uuid.uuid4().hex[:8]}"


def _now() -> datetime:
    return datetime.now(UTC)


# -- a Celery client calling an aioqueue worker --------------------------------------------


def test_celery_delay_and_send_task_reach_aioqueue(celery_client: Any) -> None:
    tasks = celery_client.tasks
    assert tasks["aq.add"].delay(2, 3).get(timeout=TIMEOUT) == 5
    assert tasks["aq.mul"].delay(4, 5).get(timeout=TIMEOUT) == 20  # a sync task
    assert celery_client.send_task("aq.add", args=[1, 2]).get(timeout=TIMEOUT) == 3
    assert celery_client.send_task("aq.add", kwargs={"x": 1, "y": 9}).get(timeout=TIMEOUT) == 10


def _options(case: str) -> dict[str, Any]:
    """The apply_async options of ``case``, made at call time (countdown and eta are
    relative to now)."""
    if case == "countdown":
        return {"countdown": 1}
    if case == "eta":
        return {"eta": _now() + timedelta(seconds=1)}
    if case == "expires":
        return {"expires": 60}
    if case == "priority":
        return {"priority": 5}
    if case == "headers":
        return {"headers": {"x-tenant": "acme"}}
    assert case == "task_id"
    return {"task_id": str(uuid.uuid4())}


def _check_seen(case: str, options: dict[str, Any], sent: datetime, seen: dict[str, Any]) -> None:
    """What the worker's task saw of ``options`` (the ``request`` task's answer)."""
    if case in ("countdown", "eta"):
        eta = datetime.fromisoformat(seen["eta"])
        if case == "eta":
            assert eta == options["eta"]
        else:
            assert eta >= sent + timedelta(seconds=1)
        assert datetime.fromisoformat(seen["ran_at"]) >= eta  # not run early
    else:
        assert seen["eta"] is None
    if case == "expires":
        expires = datetime.fromisoformat(seen["expires"])
        assert sent + timedelta(seconds=59) <= expires <= _now() + timedelta(seconds=60)
    else:
        assert seen["expires"] is None
    if case == "priority":
        assert seen["priority"] == 5
    assert seen["tenant"] == ("acme" if case == "headers" else None)
    if case == "task_id":
        assert seen["id"] == seen["root_id"] == options["task_id"]
    assert seen["parent_id"] is None and seen["group"] is None and seen["retries"] == 0


CASES = ["countdown", "eta", "expires", "priority", "headers", "task_id"]


@pytest.mark.parametrize("case", CASES)
def test_celery_apply_async_options_reach_aioqueue(celery_client: Any, case: str) -> None:
    options = _options(case)
    sent = _now()
    result = celery_client.tasks["aq.request"].apply_async(**options)
    seen = result.get(timeout=TIMEOUT)
    assert seen["id"] == result.id
    _check_seen(case, options, sent, seen)


def test_celery_sees_an_expired_task_revoked(celery_client: Any) -> None:
    result = celery_client.tasks["aq.request"].apply_async(expires=_now() - timedelta(seconds=5))
    with pytest.raises(celery.exceptions.TaskRevokedError, match="expired"):
        result.get(timeout=TIMEOUT)


def test_celery_sees_aioqueue_exceptions_as_themselves(celery_client: Any) -> None:
    tasks = celery_client.tasks
    with pytest.raises(ValueError, match="^boom$"):
        tasks["aq.fail"].delay("boom").get(timeout=TIMEOUT)
    with pytest.raises(KeyError) as missing:
        tasks["aq.missing"].delay("k", 42).get(timeout=TIMEOUT)
    assert missing.value.args == ("k", 42)
    # The caller's own copy of the state says the same.
    failed = tasks["aq.fail"].delay("again")
    with pytest.raises(ValueError):
        failed.get(timeout=TIMEOUT)
    assert failed.state == "FAILURE"
    assert "ValueError: again" in failed.traceback


def test_celery_sees_an_unknown_task_named(celery_client: Any, workers: Fleet) -> None:
    result = celery_client.send_task("aq.not_there", queue=workers.aioqueue_queue)
    with pytest.raises(Exception, match="'aq.not_there' is not registered") as raised:
        result.get(timeout=TIMEOUT)
    # The type aioqueue sent: a Celery client without aioqueue installed makes a class of
    # that name (here aioqueue is imported, and Celery finds its class).
    assert type(raised.value).__name__ == "UnknownTaskError"


def test_celery_chain_runs_on_aioqueue(celery_client: Any) -> None:
    tasks = celery_client.tasks
    add, mul = tasks["aq.add"], tasks["aq.mul"]
    result = celery.chain(add.s(1, 2), mul.s(10), add.si(5, 5)).delay()
    assert result.get(timeout=TIMEOUT) == 10
    # Every step reported to the client: the steps before the .si one too.
    assert result.parent.get(timeout=TIMEOUT) == 30
    assert result.parent.parent.get(timeout=TIMEOUT) == 3
    assert (add.s(2, 2) | mul.s(3)).delay().get(timeout=TIMEOUT) == 12


def test_celery_chain_fails_where_its_step_fails(celery_client: Any) -> None:
    tasks = celery_client.tasks
    result = (tasks["aq.add"].s(1, 2) | tasks["aq.fail"].si("mid") | tasks["aq.add"].s(5)).delay()
    with pytest.raises(ValueError, match="^mid$"):
        result.get(timeout=TIMEOUT)
    assert result.parent.parent.get(timeout=TIMEOUT) == 3


def test_celery_group_runs_on_aioqueue(celery_client: Any) -> None:
    add = celery_client.tasks["aq.add"]
    result = celery.group(add.s(i, i) for i in range(4)).delay()
    assert isinstance(result, celery.result.GroupResult)
    assert result.get(timeout=TIMEOUT) == [0, 2, 4, 6]
    assert result.completed_count() == 4
    failing = celery.group(add.s(1, 1), celery_client.tasks["aq.fail"].s("member")).delay()
    with pytest.raises(ValueError, match="^member$"):
        failing.get(timeout=TIMEOUT)


def test_celery_link_and_link_error_run_on_aioqueue(celery_client: Any, workers: Fleet) -> None:
    tasks = celery_client.tasks
    on_success, on_error = _key(), _key()
    done = tasks["aq.add"].apply_async((2, 3), link=tasks["aq.note"].s(key=on_success))
    assert done.get(timeout=TIMEOUT) == 5
    assert workers.wait_notes(on_success) == ["5"]  # the callback got the result
    failed = tasks["aq.fail"].apply_async(("x",), link_error=tasks["aq.note"].s(key=on_error))
    with pytest.raises(ValueError):
        failed.get(timeout=TIMEOUT)
    assert workers.wait_notes(on_error) == [json.dumps(failed.id)]  # the errback its id


@ONE_LOOP
@pytest.mark.anyio
async def test_a_celery_chord_is_refused_by_aioqueue_saying_why(workers: Fleet) -> None:
    # A backend that joins chords, in the client's memory: nothing an aioqueue worker
    # could reach (as Redis would not be).
    client = celery_app.client(
        workers.amqp_url,
        workers.celery_queue,
        workers.aioqueue_queue,
        result_backend="cache+memory://",
    )
    transport = AmqpTransport(workers.amqp_url)
    await transport.connect()
    try:
        # The queue the client names as reply_to (a Redis client never reads it): what
        # a caller listening there is told. Celery's reply_to is per thread: one thread
        # reads it and sends.
        with ThreadPoolExecutor(max_workers=1) as thread:
            reply_to = await asyncio.wrap_future(thread.submit(lambda: client.thread_oid))
            await transport.declare_queue(QueueSpec(reply_to, durable=False, exclusive=True))
            add, body = client.tasks["aq.add"], client.tasks["aq.note"].s(key=_key())
            chord = celery.chord([add.s(1, 1), add.s(2, 2)], body)
            result = await asyncio.wrap_future(thread.submit(chord.delay))
        members = [r.id for r in result.parent.results]
        dead = await _messages_of(transport, f"{workers.aioqueue_queue}.dlq", members)
        for envelope in dead:
            assert UNJOINABLE in envelope.headers["x-aioqueue-error"]
            assert envelope.headers["x-aioqueue-error-type"] == "MalformedMessageError"
        # Each member FAILED, not run, and the body's promise too (once per member);
        # nothing else (no SUCCESS).
        await eventually(lambda: _ready(transport, reply_to, 4), timeout=TIMEOUT)
        await anyio.sleep(0.2)
        assert await transport.inspect_queue(reply_to) == QueueState(reply_to, 4, 0)
        told = await receive(transport, reply_to, count=4, timeout=TIMEOUT)
        states = [json.loads(e.body) for e in told]
        assert sorted(s["task_id"] for s in states) == sorted([*members, result.id, result.id])
        for state in states:
            assert state["status"] == "FAILURE"
            assert state["result"]["exc_type"] == "MalformedMessageError"
            assert UNJOINABLE in state["result"]["exc_message"][0]
    finally:
        await transport.aclose()
        celery_app.close(client)


async def _ready(transport: AmqpTransport, queue: str, count: int) -> bool:
    state = await transport.inspect_queue(queue)
    return state is not None and state.messages >= count


async def _messages_of(transport: AmqpTransport, queue: str, ids: list[str]) -> list[Envelope]:
    """The messages of tasks ``ids`` in ``queue``; the others there are consumed too."""
    found: list[Envelope] = []
    complete = anyio.Event()

    async def collect(delivery: Delivery) -> None:
        if delivery.envelope.headers.get("id") in ids:
            found.append(delivery.envelope)
        await delivery.ack()
        if len(found) == len(ids):
            complete.set()

    consumer = await transport.consume(queue, collect, prefetch=10)
    try:
        with anyio.fail_after(TIMEOUT):
            await complete.wait()
    finally:
        await consumer.close()
    return found


# -- an aioqueue client calling a Celery worker --------------------------------------------


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_delay_and_send_task_reach_celery(aioqueue_client: App) -> None:
    tasks = aioqueue_client.tasks
    assert await (await tasks["ci.add"].delay(2, 3)).get(timeout=TIMEOUT) == 5
    result = await aioqueue_client.send_task("ci.add", args=[1, 2])
    assert await result.get(timeout=TIMEOUT) == 3
    result = await aioqueue_client.send_task("ci.mul", kwargs={"x": 3, "y": 4})
    assert await result.get(timeout=TIMEOUT) == 12


@ONE_LOOP
@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES)
async def test_aioqueue_apply_async_options_reach_celery(aioqueue_client: App, case: str) -> None:
    options = _options(case)
    sent = _now()
    result = await aioqueue_client.tasks["ci.request"].apply_async(**options)
    seen = await result.get(timeout=TIMEOUT)
    assert seen["id"] == result.id
    _check_seen(case, options, sent, seen)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_sees_a_task_celery_found_expired(aioqueue_client: App) -> None:
    expired = _now() - timedelta(seconds=5)
    result = await aioqueue_client.tasks["ci.request"].apply_async(expires=expired)
    with pytest.raises(TaskExpiredError):
        await result.get(timeout=TIMEOUT)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_sees_celery_exceptions_as_themselves(aioqueue_client: App) -> None:
    tasks = aioqueue_client.tasks
    with pytest.raises(ValueError) as failed:
        await (await tasks["ci.fail"].delay("boom")).get(timeout=TIMEOUT)
    assert failed.value.args == ("boom",)
    # Celery's traceback comes along.
    assert any("celery_app.py" in note for note in failed.value.__notes__)
    with pytest.raises(KeyError) as missing:
        await (await tasks["ci.missing"].delay("k", 42)).get(timeout=TIMEOUT)
    assert missing.value.args == ("k", 42)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_sees_celerys_unknown_task_as_its_own(
    aioqueue_client: App, workers: Fleet
) -> None:
    result = await aioqueue_client.send_task("ci.not_there", queue=workers.celery_queue)
    with pytest.raises(UnknownTaskError, match="'ci.not_there' is not registered"):
        await result.get(timeout=TIMEOUT)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_chain_runs_on_celery(aioqueue_client: App) -> None:
    tasks = aioqueue_client.tasks
    add, mul = tasks["ci.add"], tasks["ci.mul"]
    result = await (add.s(1, 2) | mul.s(10) | add.si(5, 5)).delay()
    assert await result.get(timeout=TIMEOUT) == 10
    # Asked for, Celery's worker sends the earlier steps' results too.
    asked = await (add.s(1, 2) | mul.s(10) | add.si(5, 5)).apply_async(intermediate_results=True)
    assert await asked.get(timeout=TIMEOUT) == 10
    assert asked.parent is not None and asked.parent.parent is not None
    assert await asked.parent.get(timeout=TIMEOUT) == 30
    assert await asked.parent.parent.get(timeout=TIMEOUT) == 3
    assert await (await (add.s(2, 2) | mul.s(3)).delay()).get(timeout=TIMEOUT) == 12
    failing = await (add.s(1, 2) | tasks["ci.fail"].si("mid") | add.s(5)).delay()
    with pytest.raises(ValueError) as failed:
        await failing.get(timeout=TIMEOUT)
    assert failed.value.args == ("mid",)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_group_runs_on_celery(aioqueue_client: App) -> None:
    add = aioqueue_client.tasks["ci.add"]
    result = await group(add.s(i, i) for i in range(4)).delay()
    assert await result.get(timeout=TIMEOUT) == [0, 2, 4, 6]
    failing = await group(add.s(1, 1), aioqueue_client.tasks["ci.fail"].s("member")).delay()
    with pytest.raises(ValueError) as failed:
        await failing.get(timeout=TIMEOUT)
    assert failed.value.args == ("member",)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_link_and_link_error_run_on_celery(
    aioqueue_client: App, workers: Fleet
) -> None:
    tasks = aioqueue_client.tasks
    on_success, on_error = _key(), _key()
    linked = tasks["ci.add"].s(2, 3).on_success(tasks["ci.note"].s(key=on_success))
    assert await (await linked.delay()).get(timeout=TIMEOUT) == 5
    assert await anyio.to_thread.run_sync(workers.wait_notes, on_success) == ["5"]
    failing = tasks["ci.fail"].s("x").on_error(tasks["ci.note"].s(key=on_error))
    failed = await failing.delay()
    with pytest.raises(ValueError):
        await failed.get(timeout=TIMEOUT)
    assert await anyio.to_thread.run_sync(workers.wait_notes, on_error) == [json.dumps(failed.id)]
