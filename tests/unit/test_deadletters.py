"""Dead letters, the pure part: reasons, selection, what a replay publishes, rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aioqueue.deadletters import (
    dead_letters,
    reason,
    render_list,
    render_one,
    replay_publishes,
    select,
)
from aioqueue.transport.base import Envelope

PARKED = {
    "task": "app.add",
    "id": "id-1",
    "x-aioqueue-error": "unknown task 'app.add'",
    "x-aioqueue-error-type": "UnknownTaskError",
    "x-aioqueue-queue": "orders",
    "x-aioqueue-redeliveries": 3,
}
DEATH = {
    "task": "app.mul",
    "id": "id-2",
    "x-death": [{"reason": "expired", "queue": "orders.fast", "count": 2}],
    "x-first-death-reason": "expired",
}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (PARKED, "UnknownTaskError: unknown task 'app.add'"),
        (DEATH, "RabbitMQ: expired from orders.fast (2 times)"),
        (
            {"x-death": [{"reason": b"rejected", "queue": "q", "count": 1}]},
            "RabbitMQ: rejected from q",
        ),
        ({}, "unknown"),
    ],
)
def test_reason(headers: dict[str, Any], expected: str) -> None:
    assert reason(headers) == expected


def _letters() -> list[Any]:
    envelopes = [
        Envelope(b"[[1, 2], {}, {}]", headers=PARKED),
        Envelope(b"[[3], {}, {}]", headers=DEATH),
        Envelope(b"not json", headers={}, content_type="text/plain", correlation_id="c-3"),
    ]
    return dead_letters(envelopes, "default")


def test_each_letter_says_where_it_came_from() -> None:
    letters = _letters()
    assert [(x.position, x.task, x.id, x.queue) for x in letters] == [
        (1, "app.add", "id-1", "orders"),
        (2, "app.mul", "id-2", "orders.fast"),
        (3, None, "c-3", "default"),
    ]


@pytest.mark.parametrize(
    ("ids", "reason_contains", "chosen"),
    [
        ((), None, ["id-1", "id-2", "c-3"]),
        (("id-2",), None, ["id-2"]),
        ((), "EXPIRED", ["id-2"]),
        (("id-1",), "expired", []),
        (("nope",), None, []),
    ],
)
def test_select(ids: tuple[str, ...], reason_contains: str | None, chosen: list[str]) -> None:
    picked, kept = select(_letters(), ids, reason_contains)
    assert [x.id for x in picked] == chosen
    assert len(picked) + len(kept) == 3


def test_a_replay_sends_the_chosen_home_clean_and_keeps_the_others() -> None:
    chosen, kept = select(_letters(), ("id-1", "id-2"))
    publishes = replay_publishes(chosen, kept, "default.dlq")
    assert [(p.exchange, p.routing_key) for p in publishes] == [
        ("", "orders"),
        ("", "orders.fast"),
        ("", "default.dlq"),
    ]
    assert publishes[0].envelope.headers == {"task": "app.add", "id": "id-1"}
    assert publishes[1].envelope.headers == {"task": "app.mul", "id": "id-2"}
    assert publishes[2].envelope == kept[0].envelope


def test_render() -> None:
    letters = _letters()
    listing = render_list("default.dlq", letters)
    assert listing.splitlines()[0] == "default.dlq: 3 dead letters"
    assert "1. app.add id=id-1 from orders: UnknownTaskError: unknown task 'app.add'" in listing
    assert "3. (no task name) id=c-3 from default: unknown" in listing
    assert render_list("x.dlq", []) == "x.dlq: no dead letters"
    shown = json.loads(render_one(letters[0]))
    assert shown["body"] == [[1, 2], {}, {}]
    assert shown["headers"]["x-aioqueue-error-type"] == "UnknownTaskError"
    assert json.loads(render_one(letters[2]))["body"] == "not json"
