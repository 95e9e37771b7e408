"""The pure event builders against Celery 5.7's captured events."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from aioqueue import events
from aioqueue.events import EventSource

VECTORS = Path(__file__).parents[1] / "vectors" / "events"
# Which software sent it differs by design: aioqueue names itself.
_OURS = {"sw_ident", "sw_ver"}


def _vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text("utf-8"))
    return data


def _volatile_fields(vector: dict[str, Any]) -> set[tuple[int | None, str]]:
    """(list index or None, field) of each volatile body field."""
    found: set[tuple[int | None, str]] = set()
    for pointer in vector["volatile"]:
        parts = pointer.strip("/").split("/")
        if parts[0] != "body_json":
            continue
        if len(parts) == 3:
            found.add((int(parts[1]), parts[2]))
        else:
            found.add((None, parts[1]))
    return found


def _blank(doc: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    return {key: ("<volatile>" if key in fields else value) for key, value in doc.items()}


def _compare(ours: dict[str, Any], vector: dict[str, Any], index: int | None) -> None:
    expected = vector["body_json"] if index is None else vector["body_json"][index]
    volatile = {name for at, name in _volatile_fields(vector) if at == index} | _OURS
    assert list(ours) == list(expected), "fields or their order differ from Celery's"
    assert _blank(ours, volatile) == _blank(expected, volatile)


def _source() -> EventSource:
    return EventSource(hostname="celery@vm", pid=2420)


def test_worker_events_match_celery() -> None:
    for kind in ("online", "heartbeat", "offline"):
        vector = _vector(f"worker-{kind}")
        body = vector["body_json"]
        ours = events.worker_event(
            _source(), kind, active=body["active"], processed=body["processed"]
        )
        _compare(ours, vector, None)
        key, raw = events.encode_events([ours], multi=False)
        assert key == vector["routing_key"]
        assert json.loads(raw) == ours


def test_worker_event_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="not a worker event"):
        events.worker_event(_source(), "asleep", active=0, processed=0)


def test_task_received_and_started_match_celery() -> None:
    received = _vector("task-multi--task-received")
    ours = events.task_received(
        _source(),
        task_id="98c5ccf6-026b-48e9-a192-10a82a7a016a",
        name="tasks.multiply",
        args=[3, 4],
        kwargs={},
        root_id="98c5ccf6-026b-48e9-a192-10a82a7a016a",
        parent_id=None,
    )
    _compare(ours, received, 0)
    started = events.task_started(_source(), task_id="x")
    _compare(started, _vector("task-multi--task-started"), 0)


def test_kwargs_are_sent_as_their_repr() -> None:
    vector = _vector("task-multi--task-received+task-succeeded")
    ours = events.task_received(
        _source(),
        task_id="x",
        name="tasks.multiply",
        args=[6],
        kwargs={"y": 10},
        root_id="r",
        parent_id="p",
    )
    _compare(ours, vector, 1)


def test_task_outcomes_match_celery() -> None:
    succeeded = events.task_succeeded(_source(), task_id="x", result=12, runtime=0.01)
    _compare(succeeded, _vector("task-multi--task-succeeded"), 0)
    # The result is its repr: a string result would be quoted, as Celery's.
    assert events.task_succeeded(_source(), task_id="x", result="a", runtime=0)["result"] == "'a'"
    failed = events.task_failed(
        _source(), task_id="x", exception=ValueError("boom"), traceback="Traceback ..."
    )
    _compare(failed, _vector("task-multi--task-failed"), 0)
    retried = events.task_retried(_source(), task_id="x", exception=None, traceback="tb")
    _compare(retried, _vector("task-multi--task-retried"), 0)
    revoked = events.task_revoked(_source(), task_id="x", expired=True)
    _compare(revoked, _vector("task-multi--task-revoked"), 0)
    not_expired = events.task_revoked(_source(), task_id="x")
    _compare(not_expired, _vector("task-multi--task-received+task-revoked"), 0)


def test_task_sent_matches_celery() -> None:
    vector = _vector("task-sent")
    source = EventSource(hostname="gen2255@vm", pid=2255)
    ours = events.task_sent(
        source,
        task_id="x",
        name="tasks.multiply",
        args=(3, 4),
        kwargs={},
        root_id="x",
        parent_id=None,
        queue="celery",
        exchange="",
        routing_key="celery",
    )
    _compare(ours, vector, None)
    key, _ = events.encode_events([ours], multi=False)
    assert key == "task.sent"


def test_task_events_are_batched_under_task_multi() -> None:
    vector = _vector("task-multi--task-received+task-succeeded")
    batch = [
        events.task_succeeded(_source(), task_id="a", result=6, runtime=0.001),
        events.task_started(_source(), task_id="b"),
    ]
    key, raw = events.encode_events(batch, multi=True)
    assert key == vector["routing_key"] == "task.multi"
    assert json.loads(raw) == batch
    # Celery's separators, so a byte-level reader sees the same shape.
    assert base64.b64decode(vector["body_b64"]).startswith(b'[{"hostname": "celery@vm", ')
    assert raw.startswith(b'[{"hostname": "celery@vm", ')


def test_encoding_refuses_nothing_or_an_unbatched_pair() -> None:
    with pytest.raises(ValueError, match="no events"):
        events.encode_events([], multi=True)
    pair = [events.task_started(_source(), task_id=n) for n in "ab"]
    with pytest.raises(ValueError, match="multi=True"):
        events.encode_events(pair, multi=False)


def test_the_clock_advances_once_per_event() -> None:
    source = _source()
    clocks = [events.task_started(source, task_id="x")["clock"] for _ in range(3)]
    assert clocks == [1, 2, 3]


def test_properties_match_celery() -> None:
    vector = _vector("worker-online")
    assert dict(events.EVENT_PROPERTIES) == vector["properties"]
    assert vector["exchange"] == events.EVENT_EXCHANGE


def test_describe_makes_one_line_per_event() -> None:
    from aioqueue.eventstream import describe

    received = events.task_received(
        _source(),
        task_id="t1",
        name="tasks.add",
        args=[1],
        kwargs={},
        root_id="t1",
        parent_id=None,
    )
    line = describe(received | {"timestamp": 0.0})
    assert (
        line == "00:00:00.000 celery@vm task-received tasks.add[t1] "
        "args=(1,) kwargs={} retries=0 eta=None"
    )
    failed = events.task_failed(_source(), task_id="t2", exception=ValueError("x"), traceback="")
    assert describe(failed).endswith("task-failed [t2] exception=ValueError('x')")
