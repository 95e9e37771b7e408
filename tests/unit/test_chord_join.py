"""Which chord header members an aioqueue worker can join (``chord.unjoinable``)."""

from __future__ import annotations

from typing import Any

import pytest

from aioqueue.message import TaskMessage
from aioqueue.worker.chord import unjoinable


def _member(options: dict[str, Any], **fields: Any) -> TaskMessage:
    body = {"task": "tasks.xsum", "args": [], "kwargs": {}, "options": options}
    return TaskMessage(id="m-1", task="tasks.add", chord=body, **fields)


def test_an_aioqueue_clients_member_is_joinable() -> None:
    member = _member({"task_id": "b", "group_id": "g", "chord_size": 2}, group="g", group_index=0)
    assert unjoinable(member) is None


@pytest.mark.parametrize(
    ("options", "fields", "reason"),
    [
        # As a Celery client sends it (Redis backend): no chord_size.
        (
            {"task_id": "b", "reply_to": "q", "group_id": "g"},
            {"group": "g", "group_index": 1},
            "task tasks.add[m-1] is a member of chord g, whose body 'tasks.xsum' has no "
            "chord_size: a chord sent by a Celery client is joined in that client's result "
            "backend",
        ),
        # The group id from the body's options is enough; the size must be an integer.
        (
            {"task_id": "b", "group_id": "g", "chord_size": "2"},
            {"group_index": 0},
            "member of chord g, whose body 'tasks.xsum' has no chord_size",
        ),
        (
            {"task_id": "b", "chord_size": 2},
            {"group_index": 0},
            "task tasks.add[m-1] carries a chord body ('tasks.xsum') but no group id and "
            "group_index",
        ),
        ({"task_id": "b", "group_id": "g", "chord_size": 2}, {"group": "g"}, "no group id and"),
    ],
)
def test_what_cannot_be_joined_says_why(
    options: dict[str, Any], fields: dict[str, Any], reason: str
) -> None:
    found = unjoinable(_member(options, **fields))
    assert found is not None and reason in found
