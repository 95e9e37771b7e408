"""Canvas end to end on ``memory://`` and RabbitMQ: chains, groups, chords, map/starmap/chunks.

A real worker runs the tasks; the client awaits the promises that ``send_canvas``
returns. Tasks record their calls in ``Env.calls``, so the tests can see what ran (a
step after a failure must not, a chord's body runs once, links run). Each chord keeps
its progress in a queue of its own (``aioqueue.chord.<group id>``, which expires on its
own): ``Env.track`` notes them so that they are removed at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pytest

from aioqueue import (
    App,
    ArgumentsError,
    AsyncResult,
    EncodeError,
    GroupResult,
    MalformedMessageError,
    ResultNotSentError,
    Signature,
    State,
    Task,
    UnknownTaskError,
    chain,
    chord,
    group,
)
from aioqueue.canvas import freeze, plan
from aioqueue.topology import CHORD_PREFIX, dlq_name
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging

R = TypeVar("R", bound=AsyncResult[Any])


@dataclass
class Env:
    app: App
    add: Task[[int, int], int]
    mul: Task[[int, int], int]
    xsum: Task[[list[int]], int]
    boom: Task[[int], int]
    slow_add: Task[[int, int, float], int]
    record: Task[..., Any]
    errback: Task[[str], None]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    groups: set[str] = field(default_factory=set)

    def called(self, name: str) -> list[Any]:
        return [args for n, args in self.calls if n == name]

    def track(self, result: R) -> R:
        """Note the groups under ``result`` (chord headers among them) for teardown."""
        todo: list[AsyncResult[Any] | None] = [result]
        while todo:
            current = todo.pop()
            if current is None:
                continue
            if isinstance(current, GroupResult):
                self.groups.add(current.id)
                todo.extend(current.results)
            todo.append(current.parent)
        return result


async def remove_chord_queues(app: App, group_ids: set[str]) -> None:
    for group_id in group_ids:
        await app.transport.delete_queue(f"{CHORD_PREFIX}{group_id}")


@pytest.fixture
async def env(make_app: MakeApp) -> AsyncIterator[Env]:
    app = make_app("canvas")
    calls: list[tuple[str, Any]] = []

    @app.task(name="canvas.add")
    async def add(x: int, y: int) -> int:
        calls.append(("add", (x, y)))
        return x + y

    @app.task(name="canvas.mul")
    def mul(x: int, y: int) -> int:  # a sync task, run in a thread
        return x * y

    @app.task(name="canvas.xsum")
    async def xsum(values: list[int]) -> int:
        calls.append(("xsum", values))
        return sum(values)

    @app.task(name="canvas.boom")
    async def boom(x: int) -> int:
        calls.append(("boom", x))
        raise ValueError(f"boom {x}")

    @app.task(name="canvas.slow_add")
    async def slow_add(x: int, y: int, seconds: float) -> int:
        await anyio.sleep(seconds)
        return x + y

    @app.task(name="canvas.record")
    async def record(*args: Any) -> list[Any]:
        calls.append(("record", list(args)))
        return list(args)

    @app.task(name="canvas.errback")
    async def errback(task_id: str) -> None:
        calls.append(("errback", task_id))

    state = Env(app, add, mul, xsum, boom, slow_add, record, errback, calls)
    async with app:
        try:
            async with app.worker(concurrency=50, shutdown_timeout=5):
                yield state
        finally:
            await remove_chord_queues(app, state.groups)


def parents(result: AsyncResult[Any]) -> list[AsyncResult[Any]]:
    """``result`` and its parents, first step first."""
    chain_: list[AsyncResult[Any]] = []
    current: AsyncResult[Any] | None = result
    while current is not None:
        chain_.append(current)
        current = current.parent
    return chain_[::-1]


# -- chains -----------------------------------------------------------------------------


async def test_chain_passes_each_result_to_the_next_step(env: Env) -> None:
    result = await chain(env.mul.s(2, 3), env.mul.s(4), env.mul.s(5)).delay()
    assert await result.get(timeout=TIMEOUT) == 120

    piped = await (env.mul.s(2, 3) | env.add.s(4) | env.mul.s(5)).delay()
    assert await piped.get(timeout=TIMEOUT) == 50


async def test_chain_results_are_linked_to_their_parents(env: Env) -> None:
    canvas = env.add.s(1, 1) | env.add.s(10) | env.add.si(100, 100)
    result = await canvas.apply_async(intermediate_results=True)
    assert await result.get(timeout=TIMEOUT) == 200

    steps = parents(result)
    assert len(steps) == 3 and steps[-1] is result
    assert len({s.id for s in steps}) == 3
    # The earlier steps reported before the last one: their results are already here.
    with anyio.fail_after(1):
        assert [await s.get() for s in steps] == [2, 12, 200]
    assert [await s.status() for s in steps] == [State.SUCCESS] * 3
    assert env.called("add") == [(1, 1), (2, 10), (100, 100)]


async def test_twenty_step_chain(env: Env) -> None:
    canvas = env.add.si(0, 0)
    for i in range(1, 20):
        canvas = canvas | env.add.s(i)

    result = await canvas.apply_async(intermediate_results=True)

    assert await result.get(timeout=TIMEOUT) == sum(range(20))
    steps = parents(result)
    assert len(steps) == 20
    assert [await s.get(timeout=TIMEOUT) for s in steps] == [sum(range(i + 1)) for i in range(20)]
    assert len(env.called("add")) == 20


async def test_failing_chain_step_stops_the_chain(env: Env) -> None:
    canvas = env.add.s(1, 1) | env.boom.s() | env.record.s("never")
    result = await canvas.apply_async(intermediate_results=True)

    with pytest.raises(ValueError, match="boom 2") as caught:
        await result.get(timeout=TIMEOUT)
    assert caught.value.args == ("boom 2",)
    assert "ValueError" in "\n".join(getattr(caught.value, "__notes__", []))
    failed, first = result.parent, parents(result)[0]
    assert failed is not None
    with pytest.raises(ValueError, match="boom 2"):
        await failed.get(timeout=TIMEOUT)
    assert await first.get(timeout=TIMEOUT) == 2
    assert await result.status() is State.FAILURE
    assert env.called("boom") == [2]
    assert env.called("record") == []


async def test_a_chain_sends_only_its_last_result_unless_asked(env: Env) -> None:
    for asked in (False, True):
        canvas = env.add.s(1, 1) | env.add.s(10) | env.add.s(100)
        sent = await canvas.apply_async(intermediate_results=asked)
        # Waited for without its parents, which would take their states on arrival.
        last = AsyncResult(sent.id, env.app.results)
        assert await last.get(timeout=TIMEOUT) == 112
        steps = parents(sent)[:-1]
        # The earlier steps' results were published before the last step ran.
        states = [env.app.results.state(step.id) for step in steps]
        if asked:
            assert [s.result for s in states if s is not None] == [2, 12]
            assert [await step.get(timeout=TIMEOUT) for step in steps] == [2, 12]
        else:
            assert states == [None, None]
            for step in steps:
                with pytest.raises(ResultNotSentError, match=step.id):
                    await step.get(timeout=TIMEOUT)
                with pytest.raises(ResultNotSentError):
                    await step.status()


async def test_a_failing_step_reaches_the_last_steps_promise_by_default(env: Env) -> None:
    result = await (env.add.s(1, 1) | env.boom.s() | env.record.s("never")).delay()
    with pytest.raises(ValueError, match="boom 2"):
        await result.get(timeout=TIMEOUT)
    assert await result.status() is State.FAILURE
    with pytest.raises(ResultNotSentError):
        await result.parent.get(timeout=TIMEOUT)  # type: ignore[union-attr]
    assert env.called("record") == []


async def test_chain_with_task_options(env: Env) -> None:
    other = f"{env.app.default_queue}.other"
    try:
        async with env.app.worker([other], concurrency=2):
            canvas = env.add.s(1, 1) | env.add.s(2).set(queue=other) | env.mul.s(3)
            assert await (await canvas.delay()).get(timeout=TIMEOUT) == 12
    finally:
        for name in (other, dlq_name(other)):
            await env.app.transport.delete_queue(name)
        await env.app.transport.delete_exchange(other)


# -- groups -----------------------------------------------------------------------------


async def test_group_results_are_in_member_order(env: Env) -> None:
    # The first members finish last.
    members = [env.slow_add.s(i, i, (9 - i) / 100) for i in range(10)]
    result = await group(members).delay()

    assert isinstance(result, GroupResult) and len(result) == 10
    assert await result.get(timeout=TIMEOUT) == [2 * i for i in range(10)]
    assert await result.completed_count() == 10
    assert await result.status() is State.SUCCESS
    assert [await r.get(timeout=TIMEOUT) for r in result.results] == [2 * i for i in range(10)]


async def test_group_failure(env: Env) -> None:
    result = await group(env.add.s(1, 1), env.boom.s(2), env.add.s(3, 3), env.boom.s(4)).delay()
    assert isinstance(result, GroupResult)

    values = await result.get(timeout=TIMEOUT, return_exceptions=True)
    assert values[0] == 2 and values[2] == 6
    assert [type(v) for v in values[1::2]] == [ValueError, ValueError]
    assert [str(v) for v in values[1::2]] == ["boom 2", "boom 4"]
    # By default the first failure in member order is raised.
    with pytest.raises(ValueError, match="boom 2"):
        await result.get(timeout=TIMEOUT)
    assert await result.completed_count() == 4
    assert await result.status() is State.FAILURE


async def test_empty_group(env: Env) -> None:
    # An empty group knows no app: send it through one.
    result = await env.app.send_canvas(group([]))
    assert isinstance(result, GroupResult)
    assert await result.get(timeout=TIMEOUT) == []


async def test_group_of_chains(env: Env) -> None:
    canvas = group(
        chain(env.add.s(1, 1), env.mul.s(3)), env.add.s(5, 5), env.add.s(1, 0) | env.boom.s()
    )
    result = await canvas.apply_async(intermediate_results=True)
    assert isinstance(result, GroupResult)

    values = await result.get(timeout=TIMEOUT, return_exceptions=True)
    assert values[:2] == [6, 10]
    assert isinstance(values[2], ValueError) and str(values[2]) == "boom 1"
    assert await result.results[0].parent.get(timeout=TIMEOUT) == 2  # type: ignore[union-attr]


async def test_task_then_group_gives_each_member_the_result(env: Env) -> None:
    result = await (env.add.s(1, 2) | group(env.add.s(10), env.add.s(20), env.mul.s(3))).delay()
    assert isinstance(result, GroupResult)
    assert await result.get(timeout=TIMEOUT) == [13, 23, 9]


# -- chords -----------------------------------------------------------------------------


async def test_chord(env: Env) -> None:
    result = env.track(await chord((env.mul.s(i, i) for i in range(10)), env.xsum.s()).delay())

    assert await result.get(timeout=TIMEOUT) == sum(i * i for i in range(10))
    header = result.parent
    assert isinstance(header, GroupResult)
    assert await header.get(timeout=TIMEOUT) == [i * i for i in range(10)]
    assert env.called("xsum") == [[i * i for i in range(10)]]


async def test_chord_body_gets_results_in_member_order_and_runs_once(env: Env) -> None:
    members = [env.slow_add.s(i, 0, (29 - i) / 300) for i in range(30)]
    result = env.track(await chord(members, env.record.s("body")).delay())

    assert await result.get(timeout=TIMEOUT) == [list(range(30)), "body"]
    await anyio.sleep(0.1)  # let any (wrong) second firing show up
    assert env.called("record") == [[list(range(30)), "body"]]


async def test_chord_with_immutable_body(env: Env) -> None:
    result = env.track(
        await chord([env.add.s(1, 1), env.add.s(2, 2)], env.record.si("done")).delay()
    )
    assert await result.get(timeout=TIMEOUT) == ["done"]


async def test_empty_chord_runs_its_body_with_no_results(env: Env) -> None:
    result = env.track(await chord([], env.xsum.s()).delay())
    assert await result.get(timeout=TIMEOUT) == 0


async def test_group_then_task_is_a_chord(env: Env) -> None:
    result = env.track(await (group(env.add.s(i, 1) for i in range(5)) | env.xsum.s()).delay())
    assert await result.get(timeout=TIMEOUT) == 15
    assert isinstance(result.parent, GroupResult)


async def test_chord_then_task(env: Env) -> None:
    canvas = chord([env.add.s(1, 1), env.add.s(2, 2)], env.xsum.s()) | env.mul.s(10) | env.add.s(1)
    result = env.track(await canvas.apply_async(intermediate_results=True))
    assert await result.get(timeout=TIMEOUT) == 61
    assert await result.parent.get(timeout=TIMEOUT) == 60  # type: ignore[union-attr]


async def test_chord_in_the_middle_of_a_chain(env: Env) -> None:
    canvas = chain(
        env.add.s(1, 1),
        chord([env.add.s(10), env.add.s(20), env.mul.s(5)], env.xsum.s()),
        env.add.s(1000),
    )
    result = env.track(await canvas.delay())
    assert await result.get(timeout=TIMEOUT) == 12 + 22 + 10 + 1000


async def test_chord_with_chain_members(env: Env) -> None:
    canvas = chord([chain(env.add.s(1, 1), env.mul.s(3)), env.add.s(5, 5)], env.xsum.s())
    result = env.track(await canvas.delay())
    assert await result.get(timeout=TIMEOUT) == 16
    assert env.called("xsum") == [[6, 10]]


async def test_failing_chord_member_fails_the_chord(env: Env) -> None:
    members = [env.add.s(1, 1), env.boom.s(3), env.add.s(2, 2)]
    canvas = chord(members, env.xsum.s()) | env.record.s("after")
    result = env.track(await canvas.apply_async(intermediate_results=True))

    with pytest.raises(ValueError, match="boom 3"):
        await result.get(timeout=TIMEOUT)
    body = result.parent
    assert body is not None
    with pytest.raises(ValueError, match="boom 3"):
        await body.get(timeout=TIMEOUT)
    header = body.parent
    assert isinstance(header, GroupResult)
    values = await header.get(timeout=TIMEOUT, return_exceptions=True)
    assert values[0] == 2 and values[2] == 4 and isinstance(values[1], ValueError)
    await anyio.sleep(0.05)
    assert env.called("xsum") == [] and env.called("record") == []


async def test_chord_member_chain_failing_before_its_last_step_fails_the_chord(env: Env) -> None:
    # The failed chain never reaches the step that would record the chord's part.
    members = [chain(env.add.s(1, 1), env.boom.s(), env.record.s("never")), env.add.s(2, 2)]
    result = env.track(await chord(members, env.xsum.s()).delay())

    with pytest.raises(ValueError, match="boom 2"):
        await result.get(timeout=TIMEOUT)
    header = result.parent
    assert isinstance(header, GroupResult)
    values = await header.get(timeout=TIMEOUT, return_exceptions=True)
    assert isinstance(values[0], ValueError) and values[1] == 4
    assert env.called("record") == [] and env.called("xsum") == []


async def test_unknown_task_in_a_chain_fails_the_rest(env: Env) -> None:
    unknown = Signature("canvas.not_registered", app=env.app)
    canvas = chain(env.add.s(1, 1), unknown, env.record.s("never"))
    result = env.track(await canvas.apply_async(intermediate_results=True))

    with pytest.raises(UnknownTaskError, match="not_registered"):
        await result.get(timeout=TIMEOUT)
    with pytest.raises(UnknownTaskError):
        await result.parent.get(timeout=TIMEOUT)  # type: ignore[union-attr]
    assert env.called("record") == []


async def test_chord_member_with_bad_arguments_fails_the_chord(env: Env) -> None:
    unknown = Signature("canvas.not_registered")
    bad_args = env.add.s(1, 2, 3)
    with pytest.raises(ArgumentsError, match="canvas.add"):
        await chord([bad_args, env.add.s(1, 1)], env.xsum.s()).delay()  # refused when sent
    for members in ([env.add.s(1, 1), unknown], [bad_args, env.add.s(1, 1)]):
        # send_canvas does not check: what a client without the task's code sends.
        result = env.track(await env.app.send_canvas(chord(members, env.xsum.s())))
        with pytest.raises((UnknownTaskError, ArgumentsError)):
            await result.get(timeout=TIMEOUT)
    assert env.called("xsum") == []


async def test_chord_with_several_failures_reports_one(env: Env) -> None:
    result = env.track(await chord([env.boom.s(i) for i in range(5)], env.xsum.s()).delay())
    with pytest.raises(ValueError, match=r"boom \d") as caught:
        await result.get(timeout=TIMEOUT)
    assert str(caught.value) in {f"boom {i}" for i in range(5)}
    assert env.called("xsum") == []


# -- map, starmap, chunks ---------------------------------------------------------------


async def test_map_starmap_chunks(env: Env) -> None:
    mapped = await env.xsum.map([[1, 2], [3, 4], []]).delay()
    starred = await env.add.starmap([(1, 2), (3, 4)]).delay()
    chunked = await env.add.chunks(zip(range(10), range(10), strict=True), 3).delay()

    assert await mapped.get(timeout=TIMEOUT) == [3, 7, 0]
    assert await starred.get(timeout=TIMEOUT) == [3, 7]
    assert isinstance(chunked, GroupResult) and len(chunked) == 4
    assert await chunked.get(timeout=TIMEOUT) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


async def test_map_failure_and_chained_map(env: Env) -> None:
    failing = await env.boom.map([1, 2]).delay()
    with pytest.raises(ValueError, match="boom 1"):
        await failing.get(timeout=TIMEOUT)

    # Results of a map feed the next step like any other.
    result = await (env.xsum.map([[1, 2], [3, 4]]) | env.xsum.s()).delay()
    assert await result.get(timeout=TIMEOUT) == 10


# -- links ------------------------------------------------------------------------------


async def test_link_runs_with_the_result(env: Env) -> None:
    signature = env.add.s(2, 2).on_success(env.record.s("linked")).on_error(env.errback.s())
    result = await signature.delay()

    assert await result.get(timeout=TIMEOUT) == 4
    await eventually(lambda: bool(env.called("record")))
    assert env.called("record") == [[4, "linked"]]
    assert env.called("errback") == []


async def test_link_error_runs_with_the_failed_task_id(env: Env) -> None:
    signature = env.boom.s(7).on_success(env.record.s("linked")).on_error(env.errback.s())
    signature = signature.on_error(env.record.si("immutable errback"))
    result = await signature.delay()

    with pytest.raises(ValueError, match="boom 7"):
        await result.get(timeout=TIMEOUT)
    await eventually(lambda: bool(env.called("errback")) and bool(env.called("record")))
    assert env.called("errback") == [result.id]
    assert env.called("record") == [["immutable errback"]]


async def test_link_on_a_chain_step(env: Env) -> None:
    canvas = env.add.s(1, 1).on_success(env.record.s("first")) | env.add.s(10)
    result = await canvas.delay()
    assert await result.get(timeout=TIMEOUT) == 12
    await eventually(lambda: bool(env.called("record")))
    assert env.called("record") == [[2, "first"]]


# -- what the worker is sent by others -------------------------------------------------


async def test_members_redelivered_after_the_chord_fired_do_not_fire_it_again(
    make_app: MakeApp,
) -> None:
    """What RabbitMQ does when a worker dies after the chord fired but before it acked
    the members: it delivers them again. Here the same member messages are published a
    second time, and the body must not run again."""
    app = make_app("canvas-redelivery")
    calls: list[Any] = []

    @app.task(name="redelivery.add")
    async def add(x: int, y: int) -> int:
        calls.append("add")
        return x + y

    @app.task(name="redelivery.body")
    async def body(values: list[int]) -> list[int]:
        calls.append(("body", values))
        return values

    @app.task(name="redelivery.mark")
    async def mark() -> None:
        calls.append("mark")

    members = plan(freeze(chord([add.s(1, 1), add.s(2, 2)], body.s()).to_dict(), None))
    # One task at a time, in queue order: what a member sets in motion runs before
    # anything published after it has been processed.
    async with app:
        try:
            async with app.worker(concurrency=1) as worker:
                await app.broker.publish_plan(members)
                await eventually(lambda: worker.processed == 3, TIMEOUT)  # members and body
                assert calls == ["add", "add", ("body", [2, 4])]

                for outgoing in members.messages:
                    await app.broker.publish_task(outgoing.message, outgoing.options)
                await eventually(lambda: worker.processed >= 5, TIMEOUT)
                await mark.delay()  # queued after a body the redelivered members might fire
                await eventually(lambda: "mark" in calls, TIMEOUT)
        finally:
            await remove_chord_queues(app, set(members.chords))

    assert calls == ["add", "add", ("body", [2, 4]), "add", "add", "mark"]


async def test_chord_without_chord_size_fails_its_promise(make_app: MakeApp) -> None:
    """A chord whose members carry no chord_size (as Celery clients send them) fails the
    chord's promise with a clear error instead of leaving it waiting."""
    app = make_app("sizeless")

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    async with app, app.worker(concurrency=4):
        await app.results.start()
        node = freeze(chord([double.s(1), double.s(2)], total.s()).to_dict(), app.results.reply_to)
        body_id = node["kwargs"]["body"]["options"]["task_id"]
        todo = plan(node)
        try:
            for outgoing in todo.messages:
                embedded = dict(outgoing.message.chord or {})
                embedded["options"] = {
                    k: v for k, v in embedded["options"].items() if k != "chord_size"
                }
                message = outgoing.message.model_copy(update={"chord": embedded})
                await app.broker.publish_task(message)
            with pytest.raises(MalformedMessageError, match="chord_size"):
                await AsyncResult(body_id, app.results).get(timeout=TIMEOUT)
            # The worker still serves.
            assert await (await double.delay(21)).get(timeout=TIMEOUT) == 42
        finally:
            await remove_chord_queues(app, set(todo.chords))


async def test_unserialisable_step_fails_the_chain(make_app: MakeApp) -> None:
    """A chain step whose result cannot be serialised fails the chain with EncodeError;
    the worker goes on serving."""
    app = make_app("unserialisable")

    @app.task
    async def make_object(x: int) -> object:
        return object()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, app.worker(concurrency=4):
        result = await (make_object.s(1) | add.s(1)).delay()
        with pytest.raises(EncodeError, match="make_object"):
            await result.get(timeout=TIMEOUT)
        assert await (await add.delay(1, 2)).get(timeout=TIMEOUT) == 3
