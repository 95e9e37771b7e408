"""The pure parts of remote control: command bodies (against Celery's vectors), reply
merging, and the answers built from a worker's read-only view."""

from __future__ import annotations

import base64
import json
from typing import Any

from aioqueue.control import control_command, merge_replies
from aioqueue.message import TaskMessage
from aioqueue.worker.inspection import WorkerView, query_answer, request_info, stats_answer
from aioqueue.worker.pidbox import parse_command
from tests.celery_vectors import VECTORS_DIR

CONTROL_VECTORS = VECTORS_DIR / "control"


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTROL_VECTORS / f"{name}.json").read_text("utf-8"))
    return data


def test_ping_command_is_celerys_byte_for_byte_but_for_its_volatile_fields() -> None:
    captured = vector("control-ping")
    expected = captured["body_json"]
    body = control_command(
        "ping",
        {},
        ticket=expected["ticket"],
        reply_to=expected["reply_to"]["routing_key"],
    )
    assert body == expected
    # Celery's key order, as the bytes on the wire have it.
    assert list(body) == list(json.loads(base64.b64decode(captured["body_b64"])))


def test_inspect_revoked_command_is_celerys() -> None:
    expected = vector("control_inspect_revoked-01-control-request")["body_json"]
    body = control_command(
        "revoked",
        expected["arguments"],
        ticket=expected["ticket"],
        reply_to=expected["reply_to"]["routing_key"],
    )
    assert body == expected


def test_ping_reply_shape_is_celerys() -> None:
    reply = vector("control_ping-02-control-reply")["body_json"]
    [(hostname, answer)] = reply.items()
    assert merge_replies([reply]) == {hostname: {"ok": "pong"}} == {hostname: answer}


def test_a_command_with_destination_parses_back() -> None:
    body = control_command("stats", {}, destination=["a@h", "b@h"], ticket="t", reply_to="k")
    command = parse_command(body)
    assert command.method == "stats"
    assert command.destination == ["a@h", "b@h"]
    assert command.wants_reply and command.reply_key == "k"


def test_no_destination_is_sent_as_null() -> None:
    assert control_command("ping", {}, destination=[])["destination"] is None
    assert "reply_to" not in control_command("ping", {})


def test_merge_replies() -> None:
    assert merge_replies([{"a": {"ok": "pong"}}, {"b": {"ok": "pong"}}]) == {
        "a": {"ok": "pong"},
        "b": {"ok": "pong"},
    }
    assert merge_replies([]) == {}


def test_stats_answer_shape() -> None:
    answer = stats_answer(pid=7, concurrency=4, totals={}, uptime=3.9, broker={})
    assert answer["pid"] == 7 and answer["uptime"] == 3
    assert answer["pool"]["max-concurrency"] == 4
    assert answer["total"] == {}
    totals = {"t.add": 2, "t.mul": 1}
    assert stats_answer(pid=7, concurrency=4, totals=totals, uptime=0, broker={})["total"] == totals


def test_active_lists_only_running_messages() -> None:
    view = WorkerView(tasks=lambda: ["b", "a"], concurrency=1, totals=dict, hostname="w")
    assert view.registered() == ["a", "b"]
    message = TaskMessage(id="id-1", task="t.add", args=[1, 2])
    with view.running(message):
        [request] = view.active()
        assert request["id"] == "id-1" and request["name"] == "t.add"
        assert request["args"] == [1, 2] and request["hostname"] == "w"
    assert view.active() == []


def test_query_answer_picks_the_asked_ids() -> None:
    running = [request_info(TaskMessage(id=i, task="t"), "w", 0.0) for i in ("x", "y")]
    assert list(query_answer(running, {"ids": ["y", "z"]})) == ["y"]
    assert list(query_answer(running, {"ids": "x"})) == ["x"]
    assert query_answer(running, {"ids": 5}) == {}
    assert query_answer(running, {}) == {}
