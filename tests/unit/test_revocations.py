"""Revocations, decided in pure code: the revoked-id store and its window, the store's
records, Celery's control commands as they travel, and the terminate of a running task."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from aioqueue.control import (
    decode_revocation,
    encode_revocation,
    revocation_key,
    revoke_command,
)
from aioqueue.exceptions import ConfigurationError, MalformedMessageError, MessageError
from aioqueue.message import TaskMessage
from aioqueue.result import AsyncResult, GroupResult, attach_control
from aioqueue.results.disabled import DisabledBackend
from aioqueue.serialization import Codec
from aioqueue.topology import REVOKED_STATE, pidbox_exchange, pidbox_queue, pidbox_reply_queue
from aioqueue.transport.memory import MemoryTransport
from aioqueue.worker.pidbox import (
    Command,
    addressed_to,
    default_hostname,
    parse_command,
    revoke_answer,
    revoke_arguments,
)
from aioqueue.worker.revocations import Revocations, RevokedIds, Running, sort_records
from tests.celery_vectors import SHARED_DIR, VECTORS_DIR
from tests.helpers import eventually

CONTROL_VECTORS = VECTORS_DIR / "control"


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTROL_VECTORS / f"{name}.json").read_text("utf-8"))
    return data


class Clock:
    """A settable Unix time."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message(task_id: str, root_id: str | None = None, group: str | None = None) -> TaskMessage:
    return TaskMessage(id=task_id, task="t", root_id=root_id, group=group)


# -- the ids in memory ----------------------------------------------------------------------


def test_nothing_revoked_matches_nothing() -> None:
    ids = RevokedIds(clock=Clock())
    assert ids.match(message("a")) is None
    assert len(ids) == 0


@pytest.mark.parametrize(
    ("revoked", "msg", "hit"),
    [
        pytest.param("a", message("a"), "a", id="own-id"),
        pytest.param("root", message("b", root_id="root"), "root", id="root-of-a-chain"),
        pytest.param("g", message("c", root_id="c", group="g"), "g", id="group"),
        pytest.param("x", message("a", root_id="r", group="g"), None, id="another-task"),
    ],
)
def test_what_a_revocation_covers(revoked: str, msg: TaskMessage, hit: str | None) -> None:
    ids = RevokedIds(clock=Clock())
    ids.add([revoked], 2_000_000.0)
    assert ids.match(msg) == hit


def test_a_revocation_lasts_its_window() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock)
    ids.add(["a"], clock.now + 10_800)
    clock.now += 10_799
    assert ids.match(message("a")) == "a"
    assert "a" in ids
    clock.now += 1
    assert ids.match(message("a")) is None
    assert "a" not in ids


def test_an_expired_own_id_does_not_hide_a_live_root() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock)
    ids.add(["a"], clock.now + 1)
    ids.add(["root"], clock.now + 100)
    clock.now += 10
    assert ids.match(message("a", root_id="root")) == "root"


def test_the_later_expiry_wins() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock)
    ids.add(["a"], clock.now + 100)
    ids.add(["a"], clock.now + 10)  # an older record read late does not shorten it
    clock.now += 50
    assert "a" in ids


def test_prune_forgets_only_the_expired() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock)
    ids.add(["old-1", "old-2"], clock.now + 5)
    ids.add(["new"], clock.now + 500)
    assert ids.prune() == 0
    clock.now += 5
    assert ids.prune() == 2
    assert len(ids) == 1
    assert ids.live() == ["new"]
    assert ids.prune() == 0


def test_memory_is_bounded_shedding_what_expires_first() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock, max_size=3)
    for i in range(5):
        ids.add([f"t{i}"], clock.now + 100 - i)  # t0 expires last
    assert len(ids) == 3
    assert sorted(ids.live()) == ["t0", "t1", "t2"]


def test_live_lists_what_is_revoked_now() -> None:
    clock = Clock()
    ids = RevokedIds(clock=clock)
    ids.add(["a", "b"], clock.now + 1)
    ids.add(["c"], clock.now + 100)
    clock.now += 2
    assert ids.live() == ["c"]


# -- the store's records --------------------------------------------------------------------


def test_a_record_roundtrips() -> None:
    value = encode_revocation(["b", "a", "a"], 123.5)
    assert decode_revocation(value) == (["a", "b"], 123.5)


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[]", b'{"ids": "a", "expires": 1}', b'{"ids": ["a"], "expires": "x"}', b"{}"],
)
def test_a_record_of_something_else_is_refused(value: bytes) -> None:
    with pytest.raises(MessageError, match="not a revocation record"):
        decode_revocation(value)


def test_the_key_is_the_same_wherever_it_is_computed() -> None:
    assert revocation_key(["a"]) == "a"
    assert revocation_key(["a", "b"]) == revocation_key(["b", "a", "b"])
    assert revocation_key(["a", "b"]) != revocation_key(["a", "c"])


def test_sort_records_splits_live_expired_and_foreign() -> None:
    records = {
        "live": encode_revocation(["l"], 200.0),
        "expired": encode_revocation(["e"], 100.0),
        "edge": encode_revocation(["x"], 150.0),  # expires exactly now
        "foreign": b"hello",
    }
    live, expired, unreadable = sort_records(records, now=150.0)
    assert live == [(["l"], 200.0)]
    assert sorted(expired) == ["edge", "expired"]
    assert unreadable == ["foreign"]


# -- Celery's control commands on the wire --------------------------------------------------


def test_revoke_command_is_celerys() -> None:
    captured = vector("control-revoke")
    task_id = captured["body_json"]["arguments"]["task_id"]
    body = revoke_command([task_id])
    assert body == captured["body_json"]
    # Byte for byte, key order included, with Celery's JSON separators.
    encoded = Codec().encode(body)
    assert encoded == base64.b64decode(captured["body_b64"])


def test_revoke_command_with_a_reply_is_celerys() -> None:
    captured = vector("control_revoke_reply-01-control-request")["body_json"]
    body = revoke_command(
        [captured["arguments"]["task_id"]],
        ticket=captured["ticket"],
        reply_to=captured["reply_to"]["routing_key"],
    )
    assert list(body) == list(captured)
    assert body == captured


def test_several_ids_travel_as_a_list() -> None:
    body = revoke_command(["a", "b"], terminate=True)
    assert body["arguments"] == {"task_id": ["a", "b"], "terminate": True, "signal": "SIGTERM"}


@pytest.mark.parametrize(
    "name",
    [
        "control-revoke",
        "control-ping",
        "control_revoke_reply-01-control-request",
        "revoke_eta_task-02-control-request",
        "revoke_terminate-02-control-request",
        "control_inspect_revoked-01-control-request",
    ],
)
def test_celerys_commands_parse(name: str) -> None:
    body = vector(name)["body_json"]
    command = parse_command(body)
    assert command.method == body["method"]
    assert command.arguments == body["arguments"]
    assert command.wants_reply == ("reply_to" in body)
    assert addressed_to(command, "aioqueue.1@host")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param([1, 2], "JSON object, not list", id="a-list"),
        pytest.param(None, "JSON object, not null", id="null"),
        pytest.param({"arguments": {}}, "'method'", id="no-method"),
        pytest.param({"method": 3}, "'method'", id="method-not-a-string"),
        pytest.param({"method": "revoke", "arguments": [1]}, "'arguments'", id="arguments-list"),
        pytest.param({"method": "ping", "destination": "w1"}, "'destination'", id="destination"),
        pytest.param(
            {"method": "ping", "pattern": 1, "matcher": "glob"}, "'pattern'", id="pattern"
        ),
        pytest.param(
            {"method": "ping", "reply_to": {"exchange": "x", "routing_key": "k"}},
            "'ticket'",
            id="reply-without-ticket",
        ),
        pytest.param(
            {"method": "ping", "ticket": "t", "reply_to": "somewhere"}, "'reply_to'", id="reply-to"
        ),
    ],
)
def test_malformed_commands_say_why(body: Any, why: str) -> None:
    with pytest.raises(MalformedMessageError, match=why):
        parse_command(body)


@pytest.mark.parametrize(
    ("command", "addressed"),
    [
        pytest.param(Command("ping", {}), True, id="everyone"),
        pytest.param(Command("ping", {}, destination=["w1@h"]), True, id="named"),
        pytest.param(Command("ping", {}, destination=["w2@h"]), False, id="named-another"),
        pytest.param(Command("ping", {}, pattern="w*@h", matcher="glob"), True, id="glob"),
        pytest.param(Command("ping", {}, pattern="x*", matcher="glob"), False, id="glob-miss"),
        pytest.param(Command("ping", {}, pattern=r"w\d@", matcher="pcre"), True, id="pcre"),
        pytest.param(Command("ping", {}, pattern="w1", matcher=None), True, id="no-matcher"),
    ],
)
def test_addressed_as_kombu_decides(command: Command, addressed: bool) -> None:
    assert addressed_to(command, "w1@h") is addressed


@pytest.mark.parametrize(
    "command",
    [
        Command("ping", {}, pattern="w", matcher="soundex"),
        Command("ping", {}, pattern="(", matcher="pcre"),
    ],
)
def test_a_bad_matcher_is_malformed(command: Command) -> None:
    with pytest.raises(MalformedMessageError):
        addressed_to(command, "w1@h")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"task_id": "a"}, (["a"], False)),
        ({"task_id": ["a", "b", "a"], "terminate": True}, (["a", "b"], True)),
    ],
)
def test_revoke_arguments(arguments: dict[str, Any], expected: tuple[list[str], bool]) -> None:
    assert revoke_arguments(arguments) == expected


@pytest.mark.parametrize("task_id", [None, 3, [], ["a", 3], [""], {"a": 1}])
def test_revoke_arguments_refuse_what_is_no_id(task_id: Any) -> None:
    with pytest.raises(MalformedMessageError, match="task_id"):
        revoke_arguments({"task_id": task_id})


def test_revoke_answer_is_celerys() -> None:
    captured = vector("control_revoke_reply-02-control-reply")["body_json"]
    (answer,) = captured.values()
    task_id = "00000000-0000-4000-8000-00000000beef"
    assert revoke_answer([task_id], None) == answer
    assert revoke_answer(["a"], ["a"]) == {"ok": "terminate: a"}
    assert revoke_answer(["a"], []) == {"ok": "terminate: tasks unknown"}


def test_pidbox_topology_is_celerys() -> None:
    exchange = pidbox_exchange()
    assert (exchange.name, exchange.type, exchange.durable) == ("celery.pidbox", "fanout", False)
    queue, binding = pidbox_queue("celery@vm")
    assert queue.name == "celery@vm.celery.pidbox"
    assert (queue.durable, queue.exclusive) == (False, True)
    assert queue.arguments == {"x-expires": 10000, "x-message-ttl": 300000}
    assert (binding.exchange, binding.routing_key) == ("celery.pidbox", "")
    reply, reply_binding = pidbox_reply_queue("oid")
    assert reply.name == "oid.reply.celery.pidbox" and reply.exclusive
    assert (reply_binding.exchange, reply_binding.routing_key) == ("reply.celery.pidbox", "oid")


def test_default_hostnames_are_unique_per_worker() -> None:
    first, second = default_hostname("a1"), default_hostname("b2")
    assert first != second
    assert first.startswith("aioqueue.a1@")


@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="../shared/celery-vectors is not here")
@pytest.mark.parametrize("path", sorted(CONTROL_VECTORS.glob("*.json")), ids=lambda p: p.stem)
def test_copied_control_vector_matches_shared(path: Path) -> None:
    shared = SHARED_DIR / path.name
    if not shared.exists():
        shared = SHARED_DIR / "worker" / path.name
    assert path.read_bytes() == shared.read_bytes()


# -- terminating a running task -------------------------------------------------------------


@pytest.mark.anyio
async def test_terminate_cancels_the_task_and_is_taken_back() -> None:
    registry: set[Running] = set()
    started = asyncio.Event()

    async def run() -> str:
        running = Running(registry, ("t", "root", None))
        with running:
            started.set()
            await asyncio.sleep(30)
        return "terminated" if running.terminated else "ran"

    task = asyncio.create_task(run())
    await started.wait()
    (running,) = registry
    running.terminate()
    running.terminate()  # once only
    assert await task == "terminated"
    assert task.cancelling() == 0
    assert not registry


@pytest.mark.anyio
async def test_another_cancellation_passes_through() -> None:
    registry: set[Running] = set()
    started = asyncio.Event()

    async def run() -> None:
        with Running(registry, ("t",)):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(run())
    await started.wait()
    (running,) = registry
    running.terminate()
    task.cancel()  # the worker stopping, at the same moment
    with pytest.raises(asyncio.CancelledError):
        await task


# -- results revoke through the app's control -----------------------------------------------


class Recorder:
    """A control that records what it is asked to revoke."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    async def revoke(self, task_id: Any, *, terminate: bool = False) -> None:
        self.calls.append((list(task_id), terminate))


@pytest.mark.anyio
async def test_a_result_made_without_an_app_cannot_revoke() -> None:
    with pytest.raises(ConfigurationError, match="app.control.revoke"):
        await AsyncResult("t", DisabledBackend(lambda: ())).revoke()


@pytest.mark.anyio
async def test_results_revoke_their_ids_through_the_control() -> None:
    backend = DisabledBackend(lambda: ())
    first = AsyncResult[Any]("first", backend)
    last = AsyncResult[Any]("last", backend, parent=first)
    members: list[AsyncResult[Any]] = [AsyncResult("m0", backend), AsyncResult("m1", backend)]
    grouped = GroupResult[Any]("g", members, backend, parent=last)
    control = Recorder()
    attach_control(grouped, control)
    await first.revoke(terminate=True)
    await last.revoke()
    await grouped.revoke()  # the group's id, and its members' for Celery's workers
    await members[1].revoke()
    assert control.calls == [
        (["first"], True),
        (["last"], False),
        (["g", "m0", "m1"], False),
        (["m1"], False),
    ]


# -- the store, read and swept (on the memory transport) ------------------------------------


async def _store(transport: MemoryTransport) -> dict[str, bytes]:
    return await transport.state_read(REVOKED_STATE)


@pytest.mark.anyio
async def test_expired_revocations_leave_memory_and_the_store() -> None:
    transport = MemoryTransport()
    clock = Clock()
    await transport.state_put(REVOKED_STATE, "gone", encode_revocation(["gone"], clock.now - 1))
    await transport.state_put(REVOKED_STATE, "soon", encode_revocation(["soon"], clock.now + 10))
    await transport.state_put(REVOKED_STATE, "late", encode_revocation(["late"], clock.now + 99))
    revocations = Revocations(transport, clock=clock, check_interval=0.01, prune_interval=0.02)
    await revocations.start()
    try:
        assert sorted(revocations.ids.live()) == ["late", "soon"]
        # The reader deletes what it found expired.
        await eventually(lambda: _absent(transport, "gone"))
        clock.now += 10
        # Memory drops "soon"; the worker that noticed sweeps the store.
        await eventually(lambda: _absent(transport, "soon"))
        assert revocations.ids.live() == ["late"]
        assert "late" in await _store(transport)
    finally:
        await revocations.aclose()


async def _absent(transport: MemoryTransport, key: str) -> bool:
    return key not in await _store(transport)


@pytest.mark.anyio
async def test_the_store_is_read_again_after_a_reconnection() -> None:
    transport = MemoryTransport()
    clock = Clock()
    revocations = Revocations(transport, clock=clock, check_interval=0.01)
    await transport.connect()
    await revocations.start()
    try:
        await transport.aclose()
        # Revoked while this connection was down: only the store has it.
        other = transport.new_connection()
        await other.state_put(REVOKED_STATE, "t", encode_revocation(["t"], clock.now + 60))
        assert revocations.revoked(message("t")) is None
        await transport.connect()
        await eventually(lambda: revocations.revoked(message("t")) == "t")
    finally:
        await revocations.aclose()
