"""Rebuilding a remote failure on the caller."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from aioqueue.exceptions import (
    MaxRetriesExceededError,
    SoftTimeLimitExceeded,
    TaskError,
    TaskExpiredError,
    TaskRevokedError,
    TimeLimitExceeded,
    UnknownTaskError,
)
from aioqueue.message import ResultMessage, State
from aioqueue.result import DEFAULT_EXCEPTION_MODULES, rebuild_exception

TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/tasks.py", line 3\nX: y\n'


class NotAllowedError(Exception):
    pass


class NeedsTwoArgs(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(a, b)


def _failure(exc_type: str, exc_module: str | None, *args: Any) -> ResultMessage:
    result: dict[str, Any] = {"exc_type": exc_type, "exc_message": list(args)}
    if exc_module is not None:
        result["exc_module"] = exc_module
    return ResultMessage(task_id="t-1", status=State.FAILURE, result=result, traceback=TRACEBACK)


@pytest.mark.parametrize(
    ("message", "cls", "args"),
    [
        (_failure("ValueError", "builtins", "boom"), ValueError, ("boom",)),
        (_failure("KeyError", "builtins", "k"), KeyError, ("k",)),
        (
            _failure("TimeLimitExceeded", "aioqueue.exceptions", "slow"),
            TimeLimitExceeded,
            ("slow",),
        ),
        (_failure("NotAllowedError", __name__, "x", 1), NotAllowedError, ("x", 1)),
    ],
)
def test_allowed_type_is_rebuilt_with_the_remote_traceback(
    message: ResultMessage, cls: type[Exception], args: tuple[Any, ...]
) -> None:
    exc = rebuild_exception(message, DEFAULT_EXCEPTION_MODULES | {__name__})

    assert type(exc) is cls
    assert exc.args == args
    assert exc.__notes__ == [f"Remote traceback (task t-1):\n{TRACEBACK}"]


@pytest.mark.parametrize(
    ("message", "exc_type", "text", "exc_module"),
    [
        # The module is not allowed.
        (_failure("NotAllowedError", __name__, "x", 1), "NotAllowedError", "x, 1", __name__),
        # Allowed, but never imported here: nothing is imported for a message.
        (_failure("Boom", "celery_only.errors", "b"), "Boom", "b", "celery_only.errors"),
        # Allowed, but the name is not an exception class.
        (_failure("path", "os", "p"), "path", "p", "os"),
        # Allowed, but it cannot be built from exc_message.
        (_failure("NeedsTwoArgs", __name__, "only one"), "NeedsTwoArgs", "only one", __name__),
        # A BaseException that is not an Exception (e.g. SystemExit) is never raised here.
        (_failure("SystemExit", "builtins", 1), "SystemExit", "1", "builtins"),
        (_failure("Weird", None, "w"), "Weird", "w", None),
    ],
)
def test_other_failures_become_task_error(
    message: ResultMessage, exc_type: str, text: str, exc_module: str | None
) -> None:
    allowed = {"builtins", "os", "celery_only.errors"}
    if "NeedsTwoArgs" in exc_type:
        allowed.add(__name__)
    assert "celery_only" not in sys.modules

    exc = rebuild_exception(message, allowed)

    assert type(exc) is TaskError
    assert isinstance(exc, TaskError)
    assert exc.exc_type == exc_type
    assert exc.message == text
    assert exc.exc_module == exc_module
    assert exc.remote_traceback == TRACEBACK
    assert str(exc) == f"{exc_type}: {text}"
    assert exc.__notes__ == [f"Remote traceback (task t-1):\n{TRACEBACK}"]


def test_result_that_is_not_a_celery_failure_object() -> None:
    message = ResultMessage(task_id="t", status=State.FAILURE, result="oops")
    exc = rebuild_exception(message, DEFAULT_EXCEPTION_MODULES)
    assert isinstance(exc, TaskError)
    assert exc.exc_type == "Exception"
    assert not hasattr(exc, "__notes__")


@pytest.mark.parametrize(
    ("words", "kind", "text"),
    [
        (["revoked"], TaskRevokedError, "task t-9 was revoked"),
        (["terminated"], TaskRevokedError, "task t-9 was revoked and terminated while it ran"),
        # Celery's expired state has no time; aioqueue's adds it.
        (["expired"], TaskExpiredError, "task t-9 expired, not run"),
        (["expired", "2030-01-01T00:00:00+00:00"], TaskExpiredError, "expired at 2030-01-01T00:00"),
        (["odd"], TaskRevokedError, "task t-9 was revoked: "),
    ],
)
def test_revoked_becomes_task_revoked_error(
    words: list[str], kind: type[Exception], text: str
) -> None:
    message = ResultMessage(
        task_id="t-9",
        status=State.REVOKED,
        result={"exc_type": "TaskRevokedError", "exc_message": words},
    )
    exc = rebuild_exception(message, DEFAULT_EXCEPTION_MODULES)
    assert type(exc) is kind
    assert text in str(exc)


@pytest.mark.parametrize(
    ("exc_type", "args", "cls", "text"),
    [
        (
            "NotRegistered",
            ["tasks.gone"],
            UnknownTaskError,
            "task 'tasks.gone' is not registered on the worker (celery.exceptions.NotRegistered)",
        ),
        (
            "MaxRetriesExceededError",
            ["Can't retry tasks.flaky[t-1] args:() kwargs:{}"],
            MaxRetriesExceededError,
            "Can't retry tasks.flaky[t-1] args:() kwargs:{} "
            "(celery.exceptions.MaxRetriesExceededError)",
        ),
        (
            "TimeLimitExceeded",
            [30.0],
            TimeLimitExceeded,
            "30.0 (celery.exceptions.TimeLimitExceeded)",
        ),
        (
            "SoftTimeLimitExceeded",
            ["SoftTimeLimitExceeded()"],
            SoftTimeLimitExceeded,
            "SoftTimeLimitExceeded() (celery.exceptions.SoftTimeLimitExceeded)",
        ),
    ],
)
def test_a_celery_workers_own_errors_become_aioqueues(
    exc_type: str, args: list[Any], cls: type[Exception], text: str
) -> None:
    # celery.exceptions is not allowed (nor imported): the names map all the same.
    exc = rebuild_exception(_failure(exc_type, "celery.exceptions", *args), {"builtins"})
    assert type(exc) is cls
    assert str(exc) == text
    assert exc.__notes__ == [f"Remote traceback (task t-1):\n{TRACEBACK}"]


def test_other_celery_errors_stay_task_errors() -> None:
    exc = rebuild_exception(_failure("Ignore", "celery.exceptions", "x"), DEFAULT_EXCEPTION_MODULES)
    assert isinstance(exc, TaskError)
    assert exc.exc_type == "Ignore"


@pytest.mark.parametrize("module", ["celery.exceptions", "aioqueue.exceptions"])
def test_a_revocation_passed_on_as_a_failure_is_a_revocation(module: str) -> None:
    # What a chord's body gets when a header member was revoked.
    exc = rebuild_exception(_failure("TaskRevokedError", module, "revoked"), {"builtins"})
    assert type(exc) is TaskRevokedError
    assert str(exc) == "task t-1 was revoked"
