"""Every Celery 5.7 message vector of every folder (``client/``, ``worker/``, ``events/``,
``beat/``, ``chord/``) decodes with aioqueue's readers, as a worker, a client or a monitor
meets it.

The vectors are copies of ``../shared/celery-vectors`` in ``tests/vectors/<folder>/``; the
drift checks compare the copies with the originals when those are beside the repository.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aioqueue import App
from aioqueue.control import merge_replies, render_replies
from aioqueue.events import routing_key
from aioqueue.eventstream import describe
from aioqueue.exceptions import (
    ArgumentsError,
    ContentTypeError,
    DecodeError,
    MalformedMessageError,
    MessageError,
)
from aioqueue.message import ResultMessage, State
from aioqueue.serialization import Codec
from aioqueue.worker import execute
from aioqueue.worker.pidbox import parse_command
from tests.celery_vectors import (
    FOLDERS,
    SHARED_DIR,
    VECTORS_DIR,
    envelope_of,
    folder_vector,
    folder_vectors,
)

ALL = [name for folder in FOLDERS for name in folder_vectors(folder)]

# Messages aioqueue refuses on purpose: (error, what the error says), and why.
REFUSED: dict[str, tuple[type[MessageError], str, str]] = {
    "client/protocol_v1-1": (
        MalformedMessageError,
        "protocol v1",
        "aioqueue reads protocol v2 only; a v1 message is dead-lettered, its reason named",
    ),
    "client/protocol_v1-2": (MalformedMessageError, "protocol v1", "as protocol_v1-1"),
    "worker/protocol_v1_to_worker-01-task": (
        MalformedMessageError,
        "protocol v1",
        "as protocol_v1-1",
    ),
    "worker/malformed_bad_json-01-input": (
        DecodeError,
        "not valid JSON",
        "hand-made bad input: dead-lettered",
    ),
    "worker/malformed_no_task_header-01-input": (
        MalformedMessageError,
        "no 'task' header",
        "hand-made bad input: dead-lettered",
    ),
    "worker/malformed_pickle_content_type-01-input": (
        ContentTypeError,
        "application/x-python-serialize",
        "pickle is refused unless App(accept_pickle=True)",
    ),
}

# Headers aioqueue reads into another value than the one on the wire, and why. Each
# check says how the two must relate.
READ_OTHERWISE: dict[str, tuple[str, Any]] = {
    "ignore_result": (
        "Celery's send_task leaves it null; both read null as 'do not ignore'",
        lambda celery, ours: celery is None and ours is False,
    ),
    "eta": (
        "a time without a zone is read as UTC (Celery's default timezone); the message "
        "is sent on with the zone made explicit",
        lambda celery, ours: ours == f"{celery}+00:00",
    ),
}


def _decoded_body(vector: dict[str, Any]) -> Any:
    envelope = envelope_of(vector)
    return Codec().decode(envelope.body, envelope.content_type)


def test_every_folder_has_vectors() -> None:
    counts = {folder: len(folder_vectors(folder)) for folder in FOLDERS}
    assert all(counts.values()), counts


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/celery-vectors is not here")
@pytest.mark.parametrize("folder", FOLDERS)
def test_every_shared_vector_is_copied(folder: str) -> None:
    shared = {
        f"{folder}/{path.stem}"
        for path in (SHARED_DIR / folder).glob("*.json")
        if not path.name.startswith("_")
    }
    assert shared == set(folder_vectors(folder))


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/celery-vectors is not here")
@pytest.mark.parametrize("name", ALL)
def test_copied_folder_vector_matches_shared(name: str) -> None:
    copied = (VECTORS_DIR / f"{name}.json").read_bytes()
    assert copied == (SHARED_DIR / f"{name}.json").read_bytes()


@pytest.mark.parametrize("name", ALL)
def test_vector_decodes(name: str) -> None:
    vector = folder_vector(name)
    assert vector["celery_version"] == "5.7.0"
    kind = vector["kind"]
    if kind in ("task", "input"):
        _check_task(name, vector)
    elif kind == "result":
        _check_result(vector)
    elif kind == "event":
        _check_event(vector)
    elif kind == "control-request":
        _check_request(vector)
    elif kind == "control-reply":
        _check_reply(vector)
    else:
        raise AssertionError(f"{name}: a kind no check covers: {kind!r}")


def _check_task(name: str, vector: dict[str, Any]) -> None:
    envelope = envelope_of(vector)
    if name in REFUSED:
        error, says, _ = REFUSED[name]
        with pytest.raises(error, match=re.escape(says)):
            execute.decode(envelope, Codec())
        return
    message = execute.decode(envelope, Codec())
    headers, body = vector["headers"], vector["body_json"]
    assert (message.id, message.task) == (headers["id"], headers["task"])
    assert [message.args, message.kwargs] == body[:2]
    assert message.reply_to == (vector["properties"].get("reply_to") or None)
    # Read back as aioqueue would send it on: the same body, the same headers.
    assert message.body() == [*body[:2], body[2] or _NO_EMBED]
    ours = message.full_headers()
    for key, value in headers.items():
        if key in READ_OTHERWISE and json.dumps(ours[key]) != json.dumps(value):
            assert READ_OTHERWISE[key][1](value, ours[key]), key
        elif key in message.extra_headers:
            assert message.extra_headers[key] == value
        else:
            assert json.dumps(ours[key]) == json.dumps(value), key
    if name == "worker/malformed_wrong_arity-01-input":
        with pytest.raises(ArgumentsError):
            execute.bind(_multiply(), message)


_NO_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _multiply() -> Any:
    app = App("vectors")

    @app.task(name="tasks.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    return multiply


def _check_result(vector: dict[str, Any]) -> None:
    body = _decoded_body(vector)
    assert body == vector["body_json"]
    message = ResultMessage.model_validate(body)
    assert message.task_id == vector["properties"]["correlation_id"]
    assert message.status is State(body["status"])
    # What aioqueue would send for the same state: Celery's keys, Celery's order.
    assert message.body() == body


def _check_event(vector: dict[str, Any]) -> None:
    body = _decoded_body(vector)
    events = body if isinstance(body, list) else [body]
    assert events and all(isinstance(e, dict) for e in events)
    if isinstance(body, list):
        assert vector["routing_key"] == "task.multi"
    else:
        assert vector["routing_key"] == routing_key(body["type"])
    for event in events:
        line = describe(event)
        assert event["type"] in line and event["hostname"] in line
        if "uuid" in event:
            assert event["uuid"] in line


def _check_request(vector: dict[str, Any]) -> None:
    body = _decoded_body(vector)
    command = parse_command(body)
    assert command.method == body["method"]
    assert command.arguments == (body.get("arguments") or {})
    assert command.wants_reply is ("reply_to" in body)


def _check_reply(vector: dict[str, Any]) -> None:
    body = _decoded_body(vector)
    merged = merge_replies([body])
    assert merged == body
    shown = render_replies(merged)
    for hostname in body:
        assert hostname in shown


def test_refusals_name_real_vectors() -> None:
    """The table of refused messages holds no stale names."""
    assert set(REFUSED) <= set(ALL)


def test_values_read_otherwise_are_still_checked() -> None:
    """A header read otherwise must still relate to the wire value as its entry says."""
    assert not READ_OTHERWISE["ignore_result"][1](None, True)
    assert not READ_OTHERWISE["eta"][1]("2030-01-02T03:04:05", "2030-01-02T04:04:05+01:00")
