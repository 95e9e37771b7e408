"""Workflows served by both kinds of worker at once, with real processes on RabbitMQ.

A chain whose steps alternate between a Celery worker and an aioqueue worker, and a
group whose members are served by both, sent by a Celery client and by an aioqueue
client; and an aioqueue chord whose header aioqueue workers join and whose body a Celery
worker runs. (The other way round cannot work: a Celery worker on ``rpc://`` does
nothing with a chord's parts, so a body after a header served by Celery never runs.)

Neither worker's app has routes here: every step names its queue, so a worker that
continued a workflow to the wrong queue, or dropped a step's options, fails the test
(the step's task is not registered on the other side). Each ``append`` step adds which
side ran it to the trail it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aioqueue import App, ResultNotSentError, Signature, chain, chord, group
from tests.interop import aioqueue_app, celery_app
from tests.interop.processes import Fleet, fleet
from tests.processes import ONE_LOOP

celery = pytest.importorskip("celery")

pytestmark = pytest.mark.amqp

TIMEOUT = 30  # generous: only there so that a broken case fails instead of hanging
# Who serves each step of the alternating chains: the task's side, then the item it adds.
STEPS = [("aq", "a"), ("ci", "b"), ("aq", "c"), ("ci", "d"), ("aq", "e")]
TRAIL = [f"{side}:{item}" for side, item in STEPS]


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("mixed"), routes=False) as running:
        yield running


@pytest.fixture(scope="module")
def celery_client(workers: Fleet) -> Iterator[Any]:
    client = celery_app.client(
        workers.amqp_url, workers.celery_queue, workers.aioqueue_queue, routes=False
    )
    try:
        yield client
    finally:
        celery_app.close(client)


@pytest.fixture
async def aioqueue_client(workers: Fleet) -> AsyncIterator[App]:
    client = aioqueue_app.client(
        workers.amqp_url, workers.celery_queue, workers.aioqueue_queue, routes=False
    )
    async with client:
        yield client


def _queue(workers: Fleet, side: str) -> str:
    return workers.celery_queue if side == "ci" else workers.aioqueue_queue


# -- sent by a Celery client -------------------------------------------------------------


def _celery_step(client: Any, workers: Fleet, side: str, *args: Any) -> Any:
    return client.tasks[f"{side}.append"].s(*args).set(queue=_queue(workers, side))


@pytest.mark.parametrize("first", [0, 1], ids=["aioqueue-first", "celery-first"])
def test_celery_chain_alternates_between_the_workers(
    celery_client: Any, workers: Fleet, first: int
) -> None:
    steps = STEPS[first:]
    (side, item), rest = steps[0], steps[1:]
    head = _celery_step(celery_client, workers, side, [], item)
    result = celery.chain(head, *(_celery_step(celery_client, workers, s, i) for s, i in rest))
    outcome = result.delay()
    assert outcome.get(timeout=TIMEOUT) == TRAIL[first:]
    # The step before the last reported to the Celery client too, from the other side.
    assert outcome.parent.get(timeout=TIMEOUT) == TRAIL[first:-1]


def test_celery_chain_fails_at_the_step_that_fails(celery_client: Any, workers: Fleet) -> None:
    tasks = celery_client.tasks
    for failing in ("ci", "aq"):
        other = "aq" if failing == "ci" else "ci"
        outcome = celery.chain(
            _celery_step(celery_client, workers, other, [], "x"),
            tasks[f"{failing}.fail"].si(f"{failing} failed").set(queue=_queue(workers, failing)),
            _celery_step(celery_client, workers, other, "never"),
        ).delay()
        with pytest.raises(ValueError, match=f"^{failing} failed$"):
            outcome.get(timeout=TIMEOUT)
        assert outcome.parent.parent.get(timeout=TIMEOUT) == [f"{other}:x"]


def test_celery_group_is_served_by_both(celery_client: Any, workers: Fleet) -> None:
    tasks = celery_client.tasks
    members = [
        tasks[f"{side}.{name}"].s(n, n).set(queue=_queue(workers, side))
        for n, (side, name) in enumerate(
            [("aq", "add"), ("ci", "add"), ("aq", "mul"), ("ci", "mul"), ("aq", "add")], start=1
        )
    ]
    result = celery.group(members).delay()
    assert isinstance(result, celery.result.GroupResult)
    assert result.get(timeout=TIMEOUT) == [2, 4, 9, 16, 10]
    failing = celery.group(
        tasks["aq.add"].s(1, 1).set(queue=workers.aioqueue_queue),
        tasks["ci.fail"].s("ci member").set(queue=workers.celery_queue),
    ).delay()
    with pytest.raises(ValueError, match="^ci member$"):
        failing.get(timeout=TIMEOUT)
    assert failing.results[0].get(timeout=TIMEOUT) == 2


# -- sent by an aioqueue client ----------------------------------------------------------


def _step(client: App, workers: Fleet, side: str, *args: Any) -> Signature[Any]:
    return client.tasks[f"{side}.append"].s(*args).set(queue=_queue(workers, side))


@ONE_LOOP
@pytest.mark.anyio
@pytest.mark.parametrize("first", [0, 1], ids=["aioqueue-first", "celery-first"])
async def test_aioqueue_chain_alternates_between_the_workers(
    aioqueue_client: App, workers: Fleet, first: int
) -> None:
    steps = STEPS[first:]
    (side, item), rest = steps[0], steps[1:]
    head = _step(aioqueue_client, workers, side, [], item)
    workflow = chain(head, *(_step(aioqueue_client, workers, s, i) for s, i in rest))
    result = await workflow.delay()
    assert await result.get(timeout=TIMEOUT) == TRAIL[first:]
    assert result.parent is not None
    with pytest.raises(ResultNotSentError):
        await result.parent.get(timeout=TIMEOUT)
    # Asked for, the step before the last reports too, from the other worker.
    result = await workflow.apply_async(intermediate_results=True)
    assert await result.get(timeout=TIMEOUT) == TRAIL[first:]
    assert result.parent is not None
    assert await result.parent.get(timeout=TIMEOUT) == TRAIL[first:-1]


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_chain_fails_at_the_step_that_fails(
    aioqueue_client: App, workers: Fleet
) -> None:
    tasks = aioqueue_client.tasks
    for failing in ("ci", "aq"):
        other = "aq" if failing == "ci" else "ci"
        workflow = chain(
            _step(aioqueue_client, workers, other, [], "x"),
            tasks[f"{failing}.fail"].si(f"{failing} failed").set(queue=_queue(workers, failing)),
            _step(aioqueue_client, workers, other, "never"),
        )
        result = await workflow.delay()
        with pytest.raises(ValueError) as failed:
            await result.get(timeout=TIMEOUT)
        assert failed.value.args == (f"{failing} failed",)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_group_is_served_by_both(aioqueue_client: App, workers: Fleet) -> None:
    tasks = aioqueue_client.tasks
    members = [
        tasks[f"{side}.{name}"].s(n, n).set(queue=_queue(workers, side))
        for n, (side, name) in enumerate(
            [("aq", "add"), ("ci", "add"), ("aq", "mul"), ("ci", "mul"), ("aq", "add")], start=1
        )
    ]
    result = await group(members).delay()
    assert await result.get(timeout=TIMEOUT) == [2, 4, 9, 16, 10]
    failing = await group(
        tasks["aq.add"].s(1, 1).set(queue=workers.aioqueue_queue),
        tasks["ci.fail"].s("ci member").set(queue=workers.celery_queue),
    ).delay()
    with pytest.raises(ValueError) as failed:
        await failing.get(timeout=TIMEOUT)
    assert failed.value.args == ("ci member",)


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_chain_into_a_group_served_by_both(
    aioqueue_client: App, workers: Fleet
) -> None:
    tasks = aioqueue_client.tasks
    fan_out = group(
        tasks["ci.add"].s(10).set(queue=workers.celery_queue),
        tasks["aq.add"].s(100).set(queue=workers.aioqueue_queue),
    )
    first = tasks["ci.mul"].s(3, 4).set(queue=workers.celery_queue)
    result = await (first | fan_out).delay()
    assert await result.get(timeout=TIMEOUT) == [22, 112]


@ONE_LOOP
@pytest.mark.anyio
async def test_aioqueue_chord_joined_by_aioqueue_calls_a_celery_body(
    aioqueue_client: App, workers: Fleet
) -> None:
    # The header runs on the aioqueue worker, which joins the chord in RabbitMQ and sends
    # the body, with the header's results, to the Celery worker.
    tasks = aioqueue_client.tasks
    header = group(tasks["aq.add"].s(i, i).set(queue=workers.aioqueue_queue) for i in range(3))
    body = tasks["ci.append"].s("joined").set(queue=workers.celery_queue)
    result = await chord(header, body).delay()
    assert await result.get(timeout=TIMEOUT) == [0, 2, 4, "ci:joined"]
