"""The pure parts of the control commands that change workers, and of ``inspect
reserved|scheduled|stats``: arguments checked, answers in Celery's shapes (compared with
Celery 5.7's captured replies)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from aioqueue import Broadcast, Exchange, Queue
from aioqueue.control import render_replies
from aioqueue.exceptions import ConfigurationError, MalformedMessageError
from aioqueue.message import TaskMessage
from aioqueue.transport.base import Envelope
from aioqueue.worker.commands import (
    cancel_consumer_arguments,
    consumer_arguments,
    rate_limit_arguments,
)
from aioqueue.worker.inspection import (
    WorkerView,
    broker_info,
    delivery_info,
    queue_info,
    request_info,
    rusage,
    scheduled_info,
    stats_answer,
)
from aioqueue.worker.pool import ChildExit, Leave, Strikes, judge
from tests.celery_vectors import VECTORS_DIR


def reply(name: str) -> Any:
    """The answer of the one Celery worker in the captured reply ``name``."""
    data = json.loads((VECTORS_DIR / "control" / f"{name}.json").read_text("utf-8"))
    [answer] = data["body_json"].values()
    return answer


@dataclass
class _Received:
    """A delivery as the view sees one: what it was, where it came from."""

    envelope: Envelope
    queue: str = "celery"
    redelivered: bool = False
    settled: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def reject(self, *, requeue: bool) -> None:
        self.settled.append("reject")


# -- add_consumer / cancel_consumer -------------------------------------------------------


def test_add_consumer_with_a_queue_only_uses_the_workers_definition() -> None:
    request = consumer_arguments(
        {"queue": "q1", "exchange": None, "exchange_type": "direct", "routing_key": None}
    )
    assert (request.queue, request.definition) == ("q1", None)


def test_add_consumer_with_an_exchange_binds_the_queue_to_it() -> None:
    request = consumer_arguments({"queue": "q1", "exchange": "ex", "exchange_type": "topic"})
    assert request.definition == Queue(
        "q1", exchange=Exchange("ex", type="topic"), routing_key="q1"
    )
    keyed = consumer_arguments({"queue": "q1", "exchange": "ex", "routing_key": "k.#"})
    assert keyed.definition == Queue("q1", exchange=Exchange("ex"), routing_key="k.#")


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({}, MalformedMessageError, "add_consumer: 'queue' must be a queue name, got None"),
        ({"queue": " "}, MalformedMessageError, "'queue' must be a queue name"),
        ({"queue": 5}, MalformedMessageError, "got 5"),
        ({"queue": "q", "exchange": 1}, MalformedMessageError, "'exchange' must be a string"),
        ({"queue": "q", "exchange": "x", "exchange_type": "lol"}, ConfigurationError, "lol"),
    ],
)
def test_add_consumer_refuses_bad_arguments(
    arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        consumer_arguments(arguments)


def test_cancel_consumer_needs_a_queue() -> None:
    assert cancel_consumer_arguments({"queue": "q1"}) == "q1"
    with pytest.raises(MalformedMessageError, match="cancel_consumer: 'queue'"):
        cancel_consumer_arguments({"queue": None})


# -- rate_limit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "rate", "set_"),
    [
        ("10/s", 10.0, True),
        ("60/m", 1.0, True),
        ("3600/h", 1.0, True),
        ("4", 4.0, True),
        (2.5, 2.5, True),
        # Celery: 0 is no limit, "new rate limit set"; empty is "disabled".
        ("0", None, True),
        ("0/m", None, True),
        (0, None, True),
        ("", None, False),
        (None, None, False),
    ],
)
def test_rate_limit_arguments(given: Any, rate: float | None, set_: bool) -> None:
    limit = rate_limit_arguments({"task_name": "t.add", "rate_limit": given})
    assert (limit.task_name, limit.rate, limit.given) == ("t.add", rate, set_)


@pytest.mark.parametrize("given", ["fast", "1/d", "-1/s", "x/s", True, [1]])
def test_a_bad_rate_is_an_invalid_rate_limit_string(given: Any) -> None:
    with pytest.raises(ConfigurationError, match="^Invalid rate limit string: "):
        rate_limit_arguments({"task_name": "t.add", "rate_limit": given})


def test_rate_limit_needs_a_task_name() -> None:
    with pytest.raises(MalformedMessageError, match="'task_name' must be a task name"):
        rate_limit_arguments({"rate_limit": "1/s"})


# -- the answers' shapes, against Celery's ---------------------------------------------------


def test_scheduled_entry_is_celerys() -> None:
    [captured] = reply("control_inspect_scheduled-03-control-reply")
    request = captured["request"]
    message = TaskMessage(id=request["id"], task=request["name"], args=request["args"])
    eta = datetime.fromisoformat(captured["eta"])
    info = delivery_info("celery", 0, redelivered=False)
    assert scheduled_info(message, request["hostname"], eta, info) == captured


def test_active_request_is_celerys() -> None:
    [captured] = reply("control_inspect_active-03-control-reply")
    message = TaskMessage(id=captured["id"], task=captured["name"], args=captured["args"])
    info = delivery_info("celery", None, redelivered=False)
    ours = request_info(message, captured["hostname"], captured["time_start"], info)
    assert isinstance(ours["worker_pid"], int)
    assert ours == {**captured, "worker_pid": ours["worker_pid"]}


def test_stats_has_celerys_keys_and_broker_shape() -> None:
    captured = reply("control_inspect_stats-02-control-reply")
    broker = broker_info(["amqp://guest:secret@127.0.0.1:5672/proto"], connect_timeout=4)
    ours = stats_answer(
        pid=1, concurrency=2, totals={"t.add": 3}, uptime=5, broker=broker, usage=rusage()
    )
    # Celery's own keys, but its clock (aioqueue's Lamport clock is the pidbox's).
    assert set(ours) == set(captured) - {"clock"}
    assert set(ours["broker"]) == set(captured["broker"])
    assert set(ours["rusage"]) == set(captured["rusage"])
    assert ours["total"] == {"t.add": 3}
    same = ("hostname", "userid", "virtual_host", "port", "insist", "ssl", "transport")
    assert {k: ours["broker"][k] for k in same} == {k: captured["broker"][k] for k in same}
    assert "secret" not in json.dumps(ours)


def test_broker_info_of_several_nodes_and_tls() -> None:
    info = broker_info(["amqps://u:pw@h1/v%2Fx?heartbeat=30", "amqps://u:pw@h2:5673/v"])
    assert (info["hostname"], info["port"], info["ssl"]) == ("h1", 5671, True)
    assert (info["virtual_host"], info["heartbeat"]) == ("v/x", 30.0)
    assert info["alternates"] == ["amqps://u@h2:5673/v"]
    assert broker_info(["amqp://localhost"])["virtual_host"] == "/"
    assert broker_info([]) == {}


def test_reserved_lists_what_waits_decoding_only_when_asked() -> None:
    decoded: list[bytes] = []

    def decode(envelope: Envelope) -> TaskMessage:
        decoded.append(envelope.body)
        if envelope.body == b"junk":
            raise MalformedMessageError("not a task")
        return TaskMessage(id=envelope.body.decode(), task="t.add")

    view = WorkerView(tasks=list, concurrency=1, totals=dict, hostname="w", decode=decode)
    first, junk = _Received(Envelope(body=b"id-1", priority=3)), _Received(Envelope(body=b"junk"))
    known = TaskMessage(id="id-2", task="t.mul")
    with view.waiting(first), view.waiting(junk), view.waiting(_Received(Envelope(b"")), known):
        assert decoded == []
        reserved = view.reserved()
        assert [r["id"] for r in reserved] == ["id-1", "id-2"]  # the junk left out
        assert reserved[0]["delivery_info"] == {
            "exchange": "",
            "routing_key": "celery",
            "priority": 3,
            "redelivered": False,
        }
        assert reserved[0]["acknowledged"] is False and reserved[0]["time_start"] is None
        assert reserved[0]["worker_pid"] is None
    assert view.reserved() == []


def test_scheduled_lists_what_is_held_until_its_eta() -> None:
    view = WorkerView(tasks=list, concurrency=1, totals=dict, hostname="w")
    eta = datetime.fromisoformat("2026-11-24T14:00:03.348189+00:00")
    message = TaskMessage(id="id-1", task="t.add", eta=eta)
    assert view.scheduled() == []
    with view.holding(_Received(Envelope(b"")), message):
        [entry] = view.scheduled()
        assert entry["eta"] == "2026-11-24T14:00:03.348189+00:00"
        assert entry["priority"] == 6 and entry["request"]["id"] == "id-1"
    assert view.scheduled() == []


def test_error_replies_render_as_celerys_cli_says_them() -> None:
    text = render_replies({"w@h": {"error": "unknown task 'x'"}, "v@h": {"ok": "shutdown"}})
    assert text.splitlines()[:2] == ["->  v@h: OK shutdown", "->  w@h: ERROR unknown task 'x'"]


def test_a_pool_child_shut_down_by_remote_control_is_replaced_at_once() -> None:
    ended = ChildExit(int(Leave.SHUTDOWN), ready=True, lived=0.1, stopping=False)
    verdict = judge(ended, Strikes(crashes=2), pool_ready=True)
    assert verdict.restart_in == 0.0 and verdict.give_up is None
    assert verdict.level == logging.INFO and verdict.strikes == Strikes()
    assert "remote control" in verdict.what


def test_active_queue_is_celerys() -> None:
    [captured] = reply("control_inspect_active_queues-02-control-reply")
    assert queue_info("celery", Queue("celery")) == captured
    view = WorkerView(
        tasks=list, concurrency=1, totals=dict, queues=lambda: [("celery", Queue("celery"))]
    )
    assert view.active_queues() == [captured]


def test_active_queue_of_a_bound_queue_and_a_broadcast() -> None:
    queue = Queue("q", exchange=Exchange("ex", type="topic"), routing_key="a.#", max_priority=5)
    info = queue_info("q", queue)
    assert (info["exchange"]["name"], info["exchange"]["type"]) == ("ex", "topic")
    assert (info["routing_key"], info["max_priority"]) == ("a.#", 5)
    assert info["queue_arguments"] == {"x-max-priority": 5}
    mine = queue_info("news.w1", Broadcast("news"))
    assert mine["exchange"]["type"] == "fanout" and mine["exclusive"] is True
