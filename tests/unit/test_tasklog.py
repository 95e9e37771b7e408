"""The worker's task log lines and the JSON log format (``aioqueue.worker.tasklog``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import pytest

from aioqueue.worker import tasklog
from aioqueue.worker.blocking import BlockWatch


def test_received() -> None:
    assert tasklog.received("proj.add", "id-1") == "Task proj.add[id-1] received"


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        (3, "3"),
        (None, "None"),
        ("ok", "'ok'"),
        ({"a": [1, 2]}, "{'a': [1, 2]}"),
        (
            list(range(100)),
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, ...]",
        ),
    ],
)
def test_succeeded_shortens_the_result(result: object, shown: str) -> None:
    line = tasklog.succeeded("proj.add", "id-1", 0.0042, result)
    assert line == f"Task proj.add[id-1] succeeded in 0.004s: {shown}"


def test_a_long_string_result_is_shortened() -> None:
    line = tasklog.succeeded("t", "i", 1.5, "x" * 10_000)
    assert line.startswith("Task t[i] succeeded in 1.500s: 'xxx")
    assert "..." in line and len(line) < 300


def test_failed_retried_unserialisable_blocked() -> None:
    assert tasklog.failed("t", "i", ValueError("bad")) == "Task t[i] raised ValueError: bad"
    eta = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        tasklog.retried("t", "i", eta, "Retry in 5s")
        == "Task t[i] retry at 2026-01-02T03:04:05+00:00: Retry in 5s"
    )
    assert tasklog.unserialisable("t", "i", TypeError("no")) == (
        "Task t[i] returned a result that cannot be serialised: no"
    )
    assert tasklog.blocked("t", "i", 0.351) == (
        "task t[i] blocked the event loop for 0.35 s: it stalls every other task on this "
        "worker; run CPU work in a sync task or --processes"
    )
    assert (
        tasklog.blocked(None, None, 0.2) == "the event loop was blocked for 0.20 s (not by a task)"
    )


def _record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("aioqueue.worker", level, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_json_line_of_a_task_event() -> None:
    fields = tasklog.fields("t", "i", "succeeded", 0.0123456789)
    line = json.loads(tasklog.JsonFormatter().format(_record("Task t[i] succeeded", **fields)))
    assert line.pop("time").endswith("+00:00")
    assert line == {
        "level": "INFO",
        "logger": "aioqueue.worker",
        "message": "Task t[i] succeeded",
        "task": "t",
        "id": "i",
        "event": "succeeded",
        "duration": 0.012346,
    }


def test_json_line_of_another_record_and_a_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record("went %s", logging.ERROR)
        record.args = ("wrong",)
        record.exc_info = sys.exc_info()
    line = json.loads(tasklog.JsonFormatter().format(record))
    assert line["message"] == "went wrong" and line["level"] == "ERROR"
    assert "task" not in line and "event" not in line
    assert "ValueError: bad" in line["exc_info"]


def test_block_watch_needs_a_positive_threshold() -> None:
    with pytest.raises(ValueError, match="positive"):
        BlockWatch(0, test_received.__code__, lambda frame: None)
    assert BlockWatch(0.1, test_received.__code__, lambda frame: None).interval == 0.025
    assert BlockWatch(1.0, test_received.__code__, lambda frame: None).interval == 0.05
