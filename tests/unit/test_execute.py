"""The worker's pure decisions about one delivery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aioqueue import App
from aioqueue.exceptions import (
    ArgumentsError,
    ContentTypeError,
    MalformedMessageError,
    MessageError,
    TimeLimitExceeded,
    UnknownTaskError,
)
from aioqueue.message import State, TaskMessage
from aioqueue.serialization import Codec
from aioqueue.transport.base import Envelope
from aioqueue.worker import execute
from aioqueue.worker.execute import Due, when_due

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("eta", "expires", "due"),
    [
        (None, None, Due(expired=False, delay_bucket_ms=None)),
        (_at(-60), None, Due(expired=False, delay_bucket_ms=None)),
        # Too close for a bucket: waited for here, never run early.
        (_at(0.004), None, Due(expired=False, delay_bucket_ms=None, wait_s=0.004)),
        (_at(0.010), None, Due(expired=False, delay_bucket_ms=8)),
        (_at(10), None, Due(expired=False, delay_bucket_ms=8192)),
        (_at(10), _at(60), Due(expired=False, delay_bucket_ms=8192)),
        (None, _at(1), Due(expired=False, delay_bucket_ms=None)),
        (None, _at(0), Due(expired=True, delay_bucket_ms=None)),
        (None, _at(-1), Due(expired=True, delay_bucket_ms=None)),
        # Expired wins over not-yet-due: it will never be allowed to run.
        (_at(10), _at(-1), Due(expired=True, delay_bucket_ms=None)),
    ],
)
def test_when_due(eta: datetime | None, expires: datetime | None, due: Due) -> None:
    assert when_due(eta, expires, NOW) == due


class CustomError(Exception):
    pass


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("exc", "exc_type", "exc_message", "exc_module"),
    [
        (ValueError("boom"), "ValueError", ["boom"], "builtins"),
        (KeyError("k"), "KeyError", ["k"], "builtins"),
        (RuntimeError(), "RuntimeError", [], "builtins"),
        (CustomError("a", 2, None), "CustomError", ["a", 2, None], __name__),
        # Arguments JSON cannot carry travel as their repr.
        (ValueError({1, 2}, b"x"), "ValueError", ["{1, 2}", "b'x'"], "builtins"),
        # aioqueue's own errors name their home module, whoever raised them.
        (TimeLimitExceeded("too slow"), "TimeLimitExceeded", ["too slow"], "aioqueue.exceptions"),
    ],
)
def test_failure_state(
    exc: BaseException, exc_type: str, exc_message: list[Any], exc_module: str
) -> None:
    state = execute.failure_state("t-1", _raised(exc))

    assert state.status is State.FAILURE
    assert state.task_id == "t-1"
    assert state.result == {
        "exc_type": exc_type,
        "exc_message": exc_message,
        "exc_module": exc_module,
    }
    assert state.traceback is not None
    assert state.traceback.startswith("Traceback (most recent call last):\n")
    assert exc_type in state.traceback.splitlines()[-1]
    assert state.date_done is not None and state.date_done.tzinfo is not None
    json.dumps(state.body())  # always serialisable


def test_revoked_state() -> None:
    state = execute.revoked_state("t-1", "expired")
    assert state.status is State.REVOKED
    assert state.result == {
        "exc_type": "TaskRevokedError",
        "exc_message": ["expired"],
        "exc_module": "celery.exceptions",
    }


def _app() -> App:
    app = App("execute")

    @app.task(name="add")
    async def add(x: int, y: int = 0, *, scale: int = 1) -> int:
        return (x + y) * scale

    @app.task(name="anything")
    def anything(*args: Any, **kwargs: Any) -> None:
        pass

    return app


@pytest.mark.parametrize(
    ("args", "kwargs", "bound"),
    [
        ([1], {}, {"x": 1}),
        ([1, 2], {"scale": 3}, {"x": 1, "y": 2, "scale": 3}),
        ([], {"x": 1, "y": 2}, {"x": 1, "y": 2}),
    ],
)
def test_bind(args: list[Any], kwargs: dict[str, Any], bound: dict[str, Any]) -> None:
    task = _app().tasks["add"]
    message = TaskMessage(id="i", task="add", args=args, kwargs=kwargs)
    call_args, call_kwargs = execute.bind(task, message)
    assert task.signature.bind(*call_args, **call_kwargs).arguments == bound


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ([], {}, "missing a required argument: 'x'"),
        ([1, 2, 3], {}, "too many positional arguments"),
        ([1], {"z": 1}, "unexpected keyword argument 'z'"),
        ([1], {"x": 1}, "multiple values for argument 'x'"),
    ],
)
def test_bind_refuses_arguments_that_do_not_fit(
    args: list[Any], kwargs: dict[str, Any], problem: str
) -> None:
    task = _app().tasks["add"]
    message = TaskMessage(id="i", task="add", args=args, kwargs=kwargs)
    with pytest.raises(ArgumentsError) as caught:
        execute.bind(task, message)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, MessageError)
    assert str(caught.value).startswith("task 'add': ")
    assert problem in str(caught.value)


def test_bind_accepts_anything_for_star_parameters() -> None:
    task = _app().tasks["anything"]
    message = TaskMessage(id="i", task="anything", args=[1, 2, 3], kwargs={"a": 1})
    assert execute.bind(task, message) == ((1, 2, 3), {"a": 1})


def test_bind_plain_parameters() -> None:
    app = App("plain")

    @app.task(name="mul")
    async def mul(x: int, y: int) -> int:
        return x * y

    task = app.tasks["mul"]
    assert task.plain_arity == 2
    assert execute.bind(task, TaskMessage(id="i", task="mul", args=[2, 3])) == ((2, 3), {})
    with pytest.raises(ArgumentsError, match="missing a required argument: 'y'"):
        execute.bind(task, TaskMessage(id="i", task="mul", args=[2]))
    with pytest.raises(ArgumentsError, match="too many positional arguments"):
        execute.bind(task, TaskMessage(id="i", task="mul", args=[1, 2, 3]))


def test_lookup_unknown_task() -> None:
    with pytest.raises(UnknownTaskError, match="'nope' is not registered"):
        _app().registry.lookup("nope")
    assert _app().registry.lookup("add").name == "add"


def test_decode_refuses_a_message_without_content_type() -> None:
    envelope = Envelope(body=b"[[1], {}, {}]", headers={"task": "add", "id": "i"}, content_type="")
    with pytest.raises(ContentTypeError, match="no content type"):
        execute.decode(envelope, Codec())


def test_a_naive_eta_is_utc_as_in_celery() -> None:
    headers = {
        "task": "add",
        "id": "i",
        "eta": "2030-01-01T10:00:00",
        "expires": "2030-01-02T00:00",
    }
    message = execute.decode(Envelope(body=b"[[1], {}, {}]", headers=headers), Codec())
    assert message.eta == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert message.expires == datetime(2030, 1, 2, tzinfo=UTC)
    due = execute.when_due(message.eta, message.expires, datetime(2030, 1, 1, 9, 59, tzinfo=UTC))
    assert due.delay_bucket_ms == 32_768 and not due.expired


def test_decode_requires_the_task_header() -> None:
    envelope = Envelope(body=b"[[], {}, {}]", headers={"id": "i"})
    with pytest.raises(MalformedMessageError, match="no 'task' header"):
        execute.decode(envelope, Codec())


def test_decode_ignores_dead_letter_headers() -> None:
    envelope = Envelope(
        body=b"[[1], {}, {}]",
        headers={"task": "add", "id": "i", "x-death": [{"count": 1}], "x-first-death-queue": "q"},
        reply_to="r",
        priority=3,
    )
    message = execute.decode(envelope, Codec())
    assert message.extra_headers == {}
    assert (message.args, message.reply_to, message.priority) == ([1], "r", 3)
    assert execute.strip_broker_headers({"x-death": 1, "x-custom": 2}) == {"x-custom": 2}
