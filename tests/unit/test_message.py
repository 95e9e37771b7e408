"""Reading Celery's protocol v2 messages: every captured task and result vector decodes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aioqueue.exceptions import MalformedMessageError
from aioqueue.message import ResultMessage, State, TaskMessage
from aioqueue.result import DEFAULT_EXCEPTION_MODULES, rebuild_exception
from aioqueue.serialization import Codec
from tests.celery_vectors import RESULT_CASES, TASK_CASES, body_bytes, load_vector

PROTOCOL_HEADERS = frozenset(load_vector("task-delay")["headers"])

# What each task vector must decode to, beyond what every vector shares.
TASK_EXPECTED: dict[str, dict[str, Any]] = {
    "task-delay": {"args": [3, 4], "kwargs": {}},
    "task-send_task": {"args": [3, 4], "kwargs": {}, "ignore_result": False},
    "task-send_task_kwargs": {"args": [], "kwargs": {"x": 3, "y": 4}},
    "task-ignore_result": {"ignore_result": True},
    "task-apply_async_countdown": {
        "eta": datetime(2026, 11, 24, 12, 32, 38, 353601, tzinfo=UTC),
        "expires": None,
    },
    "task-apply_async_eta_expires_priority": {
        "eta": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "expires": datetime(2026, 11, 24, 12, 33, 28, 661543, tzinfo=UTC),
        "priority": 5,
    },
    "task-apply_async_queue_other": {"args": [3, 4]},
    "task-apply_async_time_limits_headers": {
        "timelimit": (30, 20),
        "extra_headers": {"x-custom": "v"},
    },
}


def _decode_task(vector: dict[str, Any]) -> TaskMessage:
    props = vector["properties"]
    body = Codec().decode(body_bytes(vector), props["content_type"])
    return TaskMessage.from_wire(
        vector["headers"], body, reply_to=props["reply_to"], priority=props["priority"]
    )


@pytest.mark.parametrize("case", TASK_CASES)
def test_task_vector_decodes(case: str) -> None:
    vector = load_vector(case)
    headers, props = vector["headers"], vector["properties"]
    assert Codec().decode(body_bytes(vector), props["content_type"]) == vector["body_json"]

    message = _decode_task(vector)

    assert message.task == "tasks.multiply"
    assert message.id == headers["id"] == props["correlation_id"]
    assert message.root_id == headers["id"]
    assert message.parent_id is None and message.group is None and message.group_index is None
    assert message.retries == 0
    assert message.origin == "gen22454@vm"
    assert message.reply_to == props["reply_to"]
    assert message.priority == props["priority"]
    assert message.callbacks is None and message.errbacks is None
    assert message.chain is None and message.chord is None
    defaults: dict[str, Any] = {
        "args": [3, 4],
        "kwargs": {},
        "eta": None,
        "expires": None,
        "timelimit": (None, None),
        "ignore_result": False,
        "extra_headers": {},
    }
    for field, expected in (defaults | TASK_EXPECTED[case]).items():
        assert getattr(message, field) == expected, field


@pytest.mark.parametrize("case", TASK_CASES)
def test_task_vector_headers_round_trip(case: str) -> None:
    """Decoding then encoding gives Celery's headers back, key for key."""
    vector = load_vector(case)
    expected = dict(vector["headers"])
    if expected["ignore_result"] is None:
        # send_task leaves it null; aioqueue reads null as "not ignored" and writes false.
        expected["ignore_result"] = False

    headers = _decode_task(vector).full_headers()

    assert list(headers) == list(expected)
    assert json.dumps(headers) == json.dumps(expected)


def test_task_vector_body_round_trip() -> None:
    vector = load_vector("task-delay")
    assert Codec().encode(_decode_task(vector).body()) == body_bytes(vector)


def test_user_headers_are_kept_apart_from_protocol_headers() -> None:
    vector = load_vector("task-apply_async_time_limits_headers")
    assert set(vector["headers"]) - PROTOCOL_HEADERS == {"x-custom"}
    message = _decode_task(vector)
    assert message.extra_headers == {"x-custom": "v"}
    assert message.headers()["x-custom"] == "v"


RESULT_EXPECTED: dict[str, tuple[State, Any]] = {
    "result-success": (State.SUCCESS, 12),
    "result-failure": (
        State.FAILURE,
        {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"},
    ),
    "result-kwargs-call": (State.SUCCESS, 10),
    "result-retry": (State.RETRY, None),
    "result-after-retry": (State.SUCCESS, 7),
}


@pytest.mark.parametrize("case", RESULT_CASES)
def test_result_vector_decodes(case: str) -> None:
    vector = load_vector(case)
    props = vector["properties"]
    assert props["delivery_mode"] == 1
    body = Codec().decode(body_bytes(vector), props["content_type"])
    assert body == vector["body_json"]

    message = ResultMessage.model_validate(body)

    status, result = RESULT_EXPECTED[case]
    assert message.status is status
    assert message.result == result
    assert message.task_id == props["correlation_id"]
    assert message.status.ready is (status is not State.RETRY)
    if status is State.RETRY:
        assert message.date_done is None
        assert message.children == [[[message.task_id, None], None]]
        assert message.traceback is not None and "Retry in 1s" in message.traceback
    else:
        assert message.date_done is not None and message.date_done.tzinfo is not None


def test_result_failure_vector_rebuilds_the_remote_exception() -> None:
    vector = load_vector("result-failure")
    message = ResultMessage.model_validate(vector["body_json"])

    exc = rebuild_exception(message, DEFAULT_EXCEPTION_MODULES)

    assert type(exc) is ValueError
    assert exc.args == ("boom",)
    notes = getattr(exc, "__notes__", [])
    assert len(notes) == 1
    assert message.task_id in notes[0]
    assert 'File "/app/tasks.py", line 28, in fail' in notes[0]


# -- the model on its own --------------------------------------------------------------


def test_headers_leave_out_the_keys_at_their_protocol_defaults() -> None:
    message = TaskMessage(id="id-1", task="t", args=[1, "a"], kwargs={"k": None})

    headers = message.headers()

    # What every message carries: its name and id, its workflow root, what monitors
    # show (reprs, origin), and ignore_result (Celery's worker would read a missing
    # one as its own task's setting, not as false).
    assert list(headers) == [
        "lang", "task", "id", "root_id", "argsrepr", "kwargsrepr", "origin", "ignore_result"
    ]  # fmt: skip
    assert headers["root_id"] == "id-1"
    assert headers["argsrepr"] == "(1, 'a')"
    assert headers["kwargsrepr"] == "{'k': None}"
    assert headers["ignore_result"] is False
    assert message.body() == [
        [1, "a"],
        {"k": None},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
    # Read back, the missing keys are their defaults; the full table is Celery's.
    read = TaskMessage.from_wire(headers, message.body())
    assert (read.retries, read.timelimit, read.eta, read.group, read.stamps) == (
        0, (None, None), None, None, {}
    )  # fmt: skip
    assert read.headers() == headers
    full = message.full_headers()
    assert set(full) == PROTOCOL_HEADERS and list(full)[:3] == ["lang", "task", "id"]
    assert full["timelimit"] == [None, None] and full["retries"] == 0
    assert full["stamps"] == {} and full["stamped_headers"] is None


def test_headers_carry_every_key_that_differs_from_its_default() -> None:
    eta = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    message = TaskMessage(
        id="id-2",
        task="t",
        shadow="s",
        eta=eta,
        expires=eta,
        group="g",
        group_index=0,
        retries=2,
        timelimit=(30, None),
        root_id="r",
        parent_id="p",
        replaced_task_nesting=1,
        stamped_headers=["x"],
        stamps={"x": 1},
        extra_headers={"x-custom": "v"},
    )

    headers = message.headers()

    assert set(headers) == PROTOCOL_HEADERS | {"x-custom"}
    assert headers["group_index"] == 0 and headers["timelimit"] == [30, None]
    assert message.full_headers() == headers
    assert TaskMessage.from_wire(headers, message.body()).headers() == headers


def test_embed_may_be_null() -> None:
    message = TaskMessage.from_wire({"task": "t", "id": "i"}, [[1], {}, None])
    assert message.args == [1] and message.chain is None


GOOD_HEADERS = {"task": "tasks.multiply", "id": "i-1"}


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        pytest.param({"id": "i-1"}, [[], {}, {}], "'task' and 'id' must be strings", id="no-task"),
        pytest.param({"task": "t"}, [[], {}, {}], "'task' and 'id' must be strings", id="no-id"),
        pytest.param(
            {"task": 3, "id": "i"}, [[], {}, {}], "'task' and 'id' must be strings", id="int-task"
        ),
        pytest.param(GOOD_HEADERS, {"args": []}, "got dict", id="body-object"),
        pytest.param(GOOD_HEADERS, [[], {}], "got list of length 2", id="body-too-short"),
        pytest.param(GOOD_HEADERS, "x", "got str", id="body-string"),
        pytest.param(GOOD_HEADERS, [[], {}, []], "embed must be an object", id="embed-list"),
        pytest.param(GOOD_HEADERS, ["x", {}, {}], "args", id="args-not-list"),
        pytest.param(GOOD_HEADERS, [[], [1], {}], "kwargs", id="kwargs-not-object"),
        pytest.param(
            {**GOOD_HEADERS, "retries": "many"}, [[], {}, {}], "retries", id="retries-not-int"
        ),
        pytest.param({**GOOD_HEADERS, "eta": "soon"}, [[], {}, {}], "eta", id="eta-not-a-time"),
    ],
)
def test_from_wire_names_the_problem(headers: dict[str, Any], body: Any, problem: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        TaskMessage.from_wire(headers, body)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("state", "ready"),
    [
        (State.PENDING, False),
        (State.STARTED, False),
        (State.RETRY, False),
        (State.SUCCESS, True),
        (State.FAILURE, True),
        (State.REVOKED, True),
    ],
)
def test_state_ready(state: State, ready: bool) -> None:
    assert state.ready is ready
