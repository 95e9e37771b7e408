"""Calling tasks: arguments checked when sent, partials completed when sent, STARTED,
and the errors a caller reads."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from aioqueue import App, ArgumentsError, ConfigurationError, GroupResult, Task, group
from aioqueue.canvas import Canvas, Signature
from aioqueue.message import State, TaskMessage
from aioqueue.options import Options
from aioqueue.result import AsyncResult
from aioqueue.results.disabled import DisabledBackend
from aioqueue.worker.execute import started_state

pytestmark = pytest.mark.anyio


class Recorder:
    """A sender that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Canvas] = []

    async def send_canvas(
        self, canvas: Canvas, *, intermediate_results: bool | None = None
    ) -> AsyncResult[Any]:
        self.sent.append(canvas)
        return AsyncResult("id", DisabledBackend(tuple))

    async def send_many(self, signatures: Iterable[Signature[Any]]) -> list[AsyncResult[Any]]:
        sent = list(signatures)
        self.sent.extend(sent)
        return [AsyncResult(f"id{i}", DisabledBackend(tuple)) for i in range(len(sent))]

    def check_arguments(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pass


def make_task(fn: Any, *, bind: bool = False) -> tuple[Task[Any, Any], Recorder]:
    sender = Recorder()
    return Task(sender, fn, name="t.add", options=Options(), bind=bind), sender


def add(x: int, y: int) -> int:
    return x + y


def flexible(x: int, y: int = 1, *rest: int, scale: int = 1, **extra: Any) -> int:
    return x


# -- arguments checked at call time -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, 2), {}), ((1,), {"y": 2}), ((), {"x": 1, "y": 2})],
)
async def test_arguments_that_fit_are_sent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    task, sender = make_task(add)
    await task.delay(*args, **kwargs)
    await task.apply_async(args, kwargs)
    assert [(s.args, s.kwargs) for s in sender.sent] == [(args, kwargs)] * 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        ((1,), {}, "missing a required argument: 'y'"),
        ((1, 2, 3), {}, "too many positional arguments"),
        ((1, 2), {"z": 3}, "got an unexpected keyword argument 'z'"),
        ((1,), {"x": 2}, "multiple values for argument 'x'"),
    ],
)
async def test_arguments_that_do_not_fit_raise_before_anything_is_sent(
    args: tuple[Any, ...], kwargs: dict[str, Any], reason: str
) -> None:
    task, sender = make_task(add)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: task.delay(*args, **kwargs),
        lambda: task.apply_async(args, kwargs),
    ]
    for call in calls:
        with pytest.raises(ArgumentsError, match=f"task 't.add': {reason}") as raised:
            await call()
        assert isinstance(raised.value, TypeError)  # what Celery raises
    assert sender.sent == []


async def test_defaults_varargs_and_keyword_only_parameters_are_checked_too() -> None:
    task, sender = make_task(flexible)
    assert task.plain_arity == -1
    await task.delay(1, 2, 3, 4, scale=2, other=5)
    with pytest.raises(TypeError, match="t.add"):
        await task.delay(scale=2)
    assert len(sender.sent) == 1


async def test_a_bound_task_is_checked_without_its_first_parameter() -> None:
    def bound(self: Task[Any, Any], x: int) -> int:
        return x

    task, sender = make_task(bound, bind=True)
    await task.delay(1)
    with pytest.raises(ArgumentsError, match="too many positional arguments"):
        await task.delay(1, 2)
    assert len(sender.sent) == 1


async def test_send_task_by_name_is_not_checked() -> None:
    app = App("calls")

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    async with app:
        result = await app.send_task("t.add", (1, 2, 3))
    assert result.id


# -- partial signatures completed when sent ---------------------------------------------


def test_merged_puts_new_args_first_and_lets_new_kwargs_win() -> None:
    sig: Signature[int] = Signature("t.add", (1,), {"a": 1, "b": 2})
    merged = sig.merged((2, 3), {"b": 20, "c": 30})
    assert merged.args == (2, 3, 1)
    assert merged.kwargs == {"a": 1, "b": 20, "c": 30}
    assert sig.merged() is sig


def test_merged_leaves_an_immutable_signature_as_it_is() -> None:
    sig: Signature[int] = Signature("t.add", (1, 2), immutable=True)
    assert sig.merged((3,), {"x": 1}) is sig


async def test_signature_delay_and_apply_async_complete_the_partial() -> None:
    task, sender = make_task(add)
    await task.s(1).delay(2)
    await task.s(y=1).apply_async((2,), {"y": 5}, countdown=10)
    await task.si(1, 2).delay(3)
    # Accepted as by every canvas, and not taken for a send option.
    await task.s(1).apply_async((2,), intermediate_results=True, priority=3)
    first, second, third, fourth = sender.sent
    assert isinstance(first, Signature) and (first.args, first.kwargs) == ((2, 1), {})
    assert isinstance(second, Signature) and (second.args, second.kwargs) == ((2,), {"y": 5})
    assert second.options.countdown == 10
    assert isinstance(third, Signature) and third.args == (1, 2)
    assert isinstance(fourth, Signature) and fourth.args == (2, 1)
    assert fourth.options.priority == 3


# -- STARTED ----------------------------------------------------------------------------


def test_track_started_comes_from_the_task_else_the_app() -> None:
    for app_default in (False, True):
        app = App("calls", track_started=app_default)

        @app.task(name="t.default")
        def default() -> None: ...

        @app.task(name="t.on", track_started=True)
        def on() -> None: ...

        @app.task(name="t.off", track_started=False)
        def off() -> None: ...

        assert (default.track_started, on.track_started, off.track_started) == (
            app_default,
            True,
            False,
        )


def test_started_state_is_celerys() -> None:
    # worker/started_state-02-result.json, its pid and hostname being volatile.
    celery: dict[str, Any] = {
        "status": "STARTED",
        "result": {"pid": 2423, "hostname": "celery@vm"},
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": "fe6290dc-dadd-4c57-b01a-280431280451",
    }
    message = TaskMessage(id=celery["task_id"], task="t.tracked", args=[5])
    state = started_state(message, "celery@vm")
    assert state.status is State.STARTED and not state.status.ready
    body = state.body()
    assert body["result"] == {"pid": os.getpid(), "hostname": "celery@vm"}
    assert list(body) == list(celery)
    assert {**body, "result": celery["result"]} == celery


# -- errors a caller reads --------------------------------------------------------------


async def test_an_unbound_signature_names_its_task_and_how_to_bind_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        await Signature("tasks.add", (1, 2)).delay()
    text = str(raised.value)
    assert "'tasks.add'" in text and "not bound to an app" in text
    assert "add.s(...)" in text and "app.send_canvas" in text
    assert "Options(" not in text


async def test_an_unbound_chain_says_how_to_bind_it() -> None:
    unbound = Signature("a") | Signature("b")
    with pytest.raises(ConfigurationError, match="this chain is not bound to an app") as raised:
        await unbound.delay()
    assert "Options(" not in str(raised.value)


async def test_an_empty_group_is_the_same_with_and_without_an_app() -> None:
    # Celery's: an empty group sends nothing and its result is ready, an empty list.
    alone = await group([]).delay()
    async with App("calls") as app:
        sent = await app.send_canvas(group([]))
    for result in (alone, sent):
        assert isinstance(result, GroupResult) and len(result) == 0
        assert await result.get(timeout=1) == []
        assert await result.status() is State.SUCCESS
