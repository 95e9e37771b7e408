"""aioqueue's own messages for the calls and outcomes Celery 5.7 was captured making.

Each Celery vector in ``tests/vectors/<folder>/`` is compared with what aioqueue publishes
for the same call (``client/``), the same outcome of a task (``worker/`` results) and the
same beat entry (``beat/``): exchange, routing key, properties, headers and body, with the
values the vector lists as volatile replaced by a placeholder on both sides (README
"Comparing"). Where aioqueue differs on purpose, :data:`DIFFERENCES` says so and why; a
difference not in that table fails.

Everything runs on the memory transport; the transport given to the app records each
publish on its way to the broker.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from aioqueue import App, Queue, chain, group
from aioqueue.exceptions import BrokerError
from aioqueue.message import full_headers
from aioqueue.options import Options
from aioqueue.task import Task
from aioqueue.transport.base import Envelope, Publish, QueueSpec
from aioqueue.transport.memory import MemoryTransport
from tests.celery_vectors import (
    PLACEHOLDER,
    blank_volatile,
    envelope_of,
    folder_vector,
    folder_vectors,
)
from tests.helpers import eventually

pytestmark = pytest.mark.anyio


class Recording(MemoryTransport):
    """The memory transport, keeping ``(exchange, routing key, envelope)`` of each publish."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, str, Envelope]] = []

    async def publish(
        self, envelope: Envelope, *, exchange: str = "", routing_key: str, mandatory: bool = False
    ) -> None:
        self.published.append((exchange, routing_key, envelope))
        await super().publish(
            envelope, exchange=exchange, routing_key=routing_key, mandatory=mandatory
        )

    async def publish_many(self, publishes: Sequence[Publish]) -> list[BrokerError | None]:
        self.published += [(p.exchange, p.routing_key, p.envelope) for p in publishes]
        return await super().publish_many(publishes)

    def tasks(self) -> list[dict[str, Any]]:
        """The task messages published, as vector-shaped documents."""
        return [document(*p) for p in self.published if "task" in p[2].headers]


def document(exchange: str, routing_key: str, envelope: Envelope) -> dict[str, Any]:
    """A publish in the shape of a vector (properties as sent: absent when not set)."""
    headers = dict(envelope.headers)
    properties: dict[str, Any] = {
        "content_type": envelope.content_type,
        "content_encoding": envelope.content_encoding,
        "delivery_mode": 2 if envelope.persistent else 1,
    }
    for name in ("priority", "correlation_id", "reply_to"):
        if getattr(envelope, name) is not None:
            properties[name] = getattr(envelope, name)
    if envelope.expiration_ms is not None:
        properties["expiration"] = str(envelope.expiration_ms)
    return {
        "exchange": exchange,
        "routing_key": routing_key,
        "properties": properties,
        # A task message as Celery sends it: every key (aioqueue leaves defaults out).
        "headers": full_headers(headers) if "task" in headers else headers,
        "body_json": json.loads(envelope.body),
        "body_b64": base64.b64encode(envelope.body).decode(),
    }


COMPARED = ("exchange", "routing_key", "properties", "headers", "body_json", "body_b64")


@dataclass(frozen=True)
class Difference:
    """A value aioqueue sends otherwise than Celery, and why. ``cases`` limits it to the
    cases named (their vectors must then really differ there); empty: any case."""

    reason: str
    cases: tuple[str, ...] = ()
    # How Celery's value and aioqueue's must relate, if they must.
    related: Callable[[Any, Any], bool] | None = None


def _same_repr(celery: Any, ours: Any) -> bool:
    """Display-only reprs: the same values, whether tuples or lists are shown."""

    def lists(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [lists(v) for v in value]
        if isinstance(value, dict):
            return {k: lists(v) for k, v in value.items()}
        return value

    return bool(lists(ast.literal_eval(celery)) == lists(ast.literal_eval(ours)))


DIFFERENCES: dict[str, Difference] = {
    "/properties/priority": Difference(
        "no priority property and priority 0 mean the same to RabbitMQ; aioqueue sends "
        "the property only for a priority that was asked for",
        related=lambda celery, ours: celery == 0 and ours is None,
    ),
    "/properties/expiration": Difference(
        "Celery also gives an expiring message an AMQP TTL, so RabbitMQ drops it unseen "
        "once expired; aioqueue lets the worker see it and report REVOKED to the caller "
        "and down its workflow (nothing is dropped silently)",
        ("apply_async_expires_datetime", "apply_async_expires_seconds"),
        related=lambda celery, ours: ours is None,
    ),
    "/exchange": Difference(
        "a message not due yet waits in RabbitMQ, in a delay bucket (TTL and dead-letter) "
        "that hands it to its queue when due; Celery's worker holds it unacked instead",
        ("apply_async_countdown", "apply_async_eta", "apply_async_eta_whole_second"),
        related=lambda celery, ours: celery == "" and ours.startswith("aioqueue.delay."),
    ),
    "/properties/reply_to": Difference(
        "a task told not to send a result names no reply queue: nobody waits for it",
        ("apply_async_ignore_result",),
        related=lambda celery, ours: ours is None,
    ),
    "/headers/ignore_result": Difference(
        "Celery's send_task leaves it null; aioqueue sends false; both read null as false",
        ("send_task", "send_task_kwargs", "apply_async_unicode_and_floats", "quorum"),
        related=lambda celery, ours: celery is None and ours is False,
    ),
    "/headers/argsrepr": Difference(
        "display only: Celery's send_task shows the list it was given, aioqueue a tuple",
        ("send_task", "apply_async_unicode_and_floats", "quorum"),
        related=_same_repr,
    ),
    "/headers/kwargsrepr": Difference(
        "display only: Celery shows the tuples it was given, aioqueue the lists the JSON "
        "body carries",
        ("chunks", "chunks_as_group", "map", "multiply_map", "starmap"),
        related=_same_repr,
    ),
}

# Calls not compared, and why.
NOT_COMPARED: dict[str, str] = {
    "protocol_v1": "aioqueue sends protocol v2 only (Celery's default since 4.0)",
    "timezone_europe_berlin": "aioqueue has no app timezone: every time it sends is UTC "
    "with its zone written out, so a naive time never goes on the wire",
    "apply_async_eta_naive": "aioqueue refuses a naive eta (ConfigurationError) rather than "
    "guess its zone",
}


@dataclass(frozen=True)
class Tasks:
    multiply: Task[[int, int], int]
    add: Task[[int, int], int]
    xsum: Task[[list[float]], float]
    fail: Task[[str], None]
    log_failed: Task[..., None]
    on_error: Task[..., None]


def _app(transport: Recording, **settings: Any) -> tuple[App, Tasks]:
    # Celery's chains name reply_to on every step: compared as Celery sends them (this
    # app's default sends none on a chain's earlier steps, tested in test_canvas_plan).
    app = App("vectors", broker=transport, **{"intermediate_results": True, **settings})

    @app.task(name="tasks.multiply")
    async def multiply(x: int, y: int) -> int:
        return x * y

    @app.task(name="tasks.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.xsum")
    async def xsum(values: list[float]) -> float:
        return sum(values)

    @app.task(name="tasks.fail")
    async def fail(msg: str) -> None:
        raise ValueError(msg)

    @app.task(name="tasks.log_failed")
    async def log_failed(*args: Any) -> None:
        return None

    @app.task(name="tasks.on_error")
    async def on_error(*args: Any) -> None:
        return None

    return app, Tasks(multiply, add, xsum, fail, log_failed, on_error)


Call = Callable[[App, Tasks], Awaitable[Any]]
_ETA = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


async def _exchange_routing_key(app: App, t: Tasks) -> Any:
    # Celery's client declares the default queue's exchange; so does aioqueue's, once it
    # has sent to the queue. Without it the publish fails, naming the missing exchange.
    await app.broker.declare_route(app.broker.route(Options()))
    return await t.multiply.apply_async((3, 4), exchange="celery", routing_key="celery")


async def _unicode_and_floats(app: App, t: Tasks) -> Any:
    await t.xsum.apply_async(([1.5, 2, -3, 10**12],), kwargs={})
    return await app.send_task("tasks.echo", args=["h\u00e9llo \u2603", None, True, {"k": [1, 2]}])


CALLS: dict[str, Call] = {
    "delay": lambda a, t: t.multiply.delay(3, 4),
    "send_task": lambda a, t: a.send_task("tasks.multiply", args=[3, 4]),
    "send_task_kwargs": lambda a, t: a.send_task("tasks.multiply", kwargs={"x": 3, "y": 4}),
    "apply_async_countdown": lambda a, t: t.multiply.apply_async((3, 4), countdown=10),
    "apply_async_custom_headers": lambda a, t: t.multiply.apply_async(
        (3, 4), headers={"x-tenant": "acme", "x-attempt": 7}
    ),
    "apply_async_eta": lambda a, t: t.multiply.apply_async((3, 4), eta=_ETA),
    "apply_async_eta_whole_second": lambda a, t: t.multiply.apply_async(
        (3, 4), eta=_ETA.replace(microsecond=0)
    ),
    "apply_async_exchange_routing_key": _exchange_routing_key,
    "apply_async_expires_datetime": lambda a, t: t.multiply.apply_async((3, 4), expires=_ETA),
    "apply_async_expires_seconds": lambda a, t: t.multiply.apply_async((3, 4), expires=60),
    "apply_async_ignore_result": lambda a, t: t.multiply.apply_async((3, 4), ignore_result=True),
    "apply_async_priority": lambda a, t: t.multiply.apply_async((3, 4), priority=5),
    "apply_async_queue_and_routing_key": lambda a, t: t.multiply.apply_async(
        (3, 4), queue="other", routing_key="other.key"
    ),
    "apply_async_queue_other": lambda a, t: t.multiply.apply_async((3, 4), queue="other"),
    "apply_async_shadow": lambda a, t: (
        t.multiply.s(3, 4).with_options(shadow="multiply-shadowed").delay()
    ),
    "apply_async_task_id": lambda a, t: t.multiply.apply_async(
        (3, 4), task_id="00000000-0000-4000-8000-000000000001"
    ),
    "apply_async_time_limits": lambda a, t: t.multiply.apply_async(
        (3, 4), time_limit=30, soft_time_limit=20
    ),
    "apply_async_unicode_and_floats": _unicode_and_floats,
    "chain_pipe": lambda a, t: (t.multiply.s(2, 3) | t.multiply.s(4) | t.multiply.s(5)).delay(),
    "chain_step_options": lambda a, t: (
        t.multiply.s(2, 3) | t.multiply.s(4).set(queue="other", countdown=5)
    ).delay(),
    "chain_then_group": lambda a, t: chain(
        t.multiply.s(1, 1), group(t.add.s(1), t.add.s(2))
    ).delay(),
    "chain_three": lambda a, t: chain(t.multiply.s(2, 3), t.multiply.s(4), t.multiply.s(5)).delay(),
    # Celery's link on a chain is the last step's.
    "chain_with_link": lambda a, t: (
        t.multiply.s(2, 3) | t.add.s(1).on_success(t.xsum.s())
    ).delay(),
    "chain_with_si": lambda a, t: (t.multiply.s(2, 3) | t.multiply.si(4, 5) | t.add.s(1)).delay(),
    "chunks": lambda a, t: t.multiply.chunks(zip(range(4), range(4), strict=True), 2).delay(),
    "chunks_as_group": lambda a, t: (
        t.multiply.chunks(zip(range(4), range(4), strict=True), 2).group().delay()
    ),
    "group_three": lambda a, t: group(t.multiply.s(i, i) for i in range(3)).delay(),
    "group_with_chain_member": lambda a, t: group(
        chain(t.multiply.s(1, 2), t.add.s(3)), t.multiply.s(4, 5)
    ).delay(),
    "link": lambda a, t: t.multiply.apply_async((3, 4), link=t.add.s(1)),
    "link_and_link_error": lambda a, t: t.multiply.apply_async(
        (3, 4), link=[t.add.s(1), t.add.si(0, 0)], link_error=t.log_failed.s()
    ),
    "link_error": lambda a, t: t.fail.apply_async(
        ("boom",), link_error=[t.log_failed.s(), t.on_error.s(), t.xsum.si([0])]
    ),
    "map": lambda a, t: t.xsum.map([[1, 2], [3, 4]]).delay(),
    "multiply_map": lambda a, t: t.multiply.map([1, 2]).delay(),
    "quorum_default_queue": lambda a, t: a.send_task("tasks.multiply", args=[3, 4]),
    "sig_s_delay": lambda a, t: t.multiply.s(2, 3).delay(),
    "sig_s_partial_delay": lambda a, t: t.multiply.s(2).delay(100),
    "sig_si_partial_delay": lambda a, t: t.multiply.si(2, 3).delay(100),
    "starmap": lambda a, t: t.multiply.starmap([(1, 2), (3, 4)]).delay(),
}
SETTINGS: dict[str, dict[str, Any]] = {
    "quorum_default_queue": {
        "default_queue": "celery-quorum",
        "queues": [Queue("celery-quorum", queue_type="quorum")],
    },
}


def _case_of(name: str) -> str:
    """``client/group_three-2`` → ``group_three``."""
    stem = name.split("/", 1)[1]
    base, _, n = stem.rpartition("-")
    return base if base and n.isdigit() else stem


def _flat(doc: Any, at: str = "") -> dict[str, Any]:
    """Every leaf of ``doc`` by its JSON Pointer (an empty list or object is a leaf)."""
    if isinstance(doc, dict) and doc:
        return {k: v for key, value in doc.items() for k, v in _flat(value, f"{at}/{key}").items()}
    if isinstance(doc, list) and doc:
        return {k: v for i, value in enumerate(doc) for k, v in _flat(value, f"{at}/{i}").items()}
    return {at: doc}


_ABSENT = "<absent>"


def compare(
    case: str,
    ours: dict[str, Any],
    vector: dict[str, Any],
    differences: dict[str, Difference] | None = None,
) -> None:
    """``ours`` is ``vector`` but for its volatile values and ``differences`` (by default
    :data:`DIFFERENCES`)."""
    if differences is None:
        differences = DIFFERENCES
    volatile = vector["volatile"]
    expected = {key: vector[key] for key in COMPARED}
    theirs = _flat(blank_volatile(expected, volatile))
    mine = _flat(blank_volatile(ours, volatile))
    unexplained = []
    explained_body = False
    for pointer in sorted(theirs.keys() | mine.keys()):
        celery, value = theirs.get(pointer, _ABSENT), mine.get(pointer, _ABSENT)
        if celery == value:
            continue
        if pointer == "/body_b64":
            continue  # judged below, once the decoded body is
        known = differences.get(pointer)
        if known is None:
            unexplained.append(f"{pointer}: Celery {celery!r:.80}, aioqueue {value!r:.80}")
            continue
        if known.cases:
            assert any(case.startswith(c) for c in known.cases), f"{case}: {pointer}"
        if known.related is not None:
            as_sent = (None if v == _ABSENT else v for v in (celery, value))
            assert known.related(*as_sent), f"{case}: {pointer}: {celery!r} / {value!r}"
        explained_body = explained_body or pointer.startswith("/body_json/")
    assert not unexplained, f"{case}: " + "; ".join(unexplained)
    # The same header order (Celery's), and Celery's JSON on the bytes when they differ.
    assert list(ours["headers"]) == list(vector["headers"])
    body = base64.b64decode(ours["body_b64"])
    assert body == json.dumps(ours["body_json"]).encode()
    if "/body_b64" not in volatile and not explained_body:
        assert ours["body_b64"] == vector["body_b64"], f"{case}: not the same bytes"


CLIENT = [n for n in folder_vectors("client") if _case_of(n) not in NOT_COMPARED]


def test_every_client_case_is_compared_or_said_not_to_be() -> None:
    cases = {_case_of(n) for n in folder_vectors("client")}
    assert cases == set(CALLS) | set(NOT_COMPARED)


@pytest.mark.parametrize("case", sorted(CALLS))
async def test_client_message_matches_celery(case: str) -> None:
    names = [n for n in CLIENT if _case_of(n) == case]
    transport = Recording()
    app, tasks = _app(transport, **SETTINGS.get(case, {}))
    async with app:
        await CALLS[case](app, tasks)
    sent = transport.tasks()
    vectors = [folder_vector(n) for n in names]
    assert len(sent) == len(vectors)
    # A group's messages are published concurrently: paired by their place in it.
    for ours, vector in zip(sorted(sent, key=_place), sorted(vectors, key=_place), strict=True):
        compare(case, ours, vector)
        headers = ours["headers"]
        assert headers["id"] == ours["properties"]["correlation_id"]


def _place(doc: dict[str, Any]) -> tuple[int, str]:
    return (doc["headers"].get("group_index") or 0, str(doc["body_json"][0]))


def test_differences_that_name_cases_name_real_ones() -> None:
    cases = set(CALLS)
    for pointer, known in DIFFERENCES.items():
        for case in known.cases:
            assert any(c.startswith(case) for c in cases), (pointer, case)


def test_an_unlisted_difference_fails() -> None:
    """The comparison can fail: a header aioqueue got wrong is caught."""
    vector = folder_vector("client/delay")
    ours = {key: vector[key] for key in COMPARED}
    ours["headers"] = {**ours["headers"], "retries": 1}
    with pytest.raises(AssertionError, match="/headers/retries"):
        compare("delay", ours, vector)
    assert PLACEHOLDER not in json.dumps(vector)


# -- worker: what an aioqueue worker publishes for the captured tasks ---------------------

_CLIENTS = ("celery client", "raw AMQP publisher (hand-made input)")

# What aioqueue's worker says otherwise than Celery's, and why.
WORKER_DIFFERENCES: dict[str, Difference] = {
    "/properties/priority": DIFFERENCES["/properties/priority"],
    "/exchange": Difference(
        DIFFERENCES["/exchange"].reason,
        ("retry_exhausted", "retry_then_success"),
        related=DIFFERENCES["/exchange"].related,
    ),
    "/headers/argsrepr": Difference(
        "display only: Celery's worker shows the list a signature's JSON holds, aioqueue a tuple",
        ("chain_with_si",),
        related=_same_repr,
    ),
    "/body_json/2/chain": Difference(
        "Celery's worker leaves an emptied chain as []; aioqueue sends none; both mean "
        "nothing follows",
        ("chain_then_group",),
        related=lambda celery, ours: celery == [] and ours is None,
    ),
    "/headers/group_index": Difference(
        "Celery's worker sends several errbacks as one group; aioqueue sends each on its "
        "own, as the errback it is",
        ("link_error",),
        related=lambda celery, ours: isinstance(celery, int) and ours is None,
    ),
    "/properties/reply_to": Difference(
        "a task the worker sends itself (a link, an errback) names no reply queue: "
        "nobody waits for its result. Celery's worker names its own, which it never reads",
        ("link", "link_error"),
        related=lambda celery, ours: ours is None,
    ),
    "/body_json/result/exc_module": Difference(
        "aioqueue's own errors come from aioqueue.exceptions (a Celery client rebuilds an "
        "exception of a module it cannot import by its name)",
        ("expired", "unregistered_task", "retry_exhausted", "malformed_wrong_arity"),
        related=lambda celery, ours: (
            celery in ("celery.exceptions", "builtins") and ours == "aioqueue.exceptions"
        ),
    ),
    "/body_json/result/exc_type": Difference(
        "aioqueue's name for a task this worker does not know",
        ("unregistered_task", "malformed_wrong_arity"),
        related=lambda celery, ours: (
            (celery, ours)
            in (("NotRegistered", "UnknownTaskError"), ("TypeError", "ArgumentsError"))
        ),
    ),
    "/body_json/result/exc_message/0": Difference(
        "aioqueue's message names the task and what does not fit",
        ("unregistered_task", "malformed_wrong_arity"),
        related=lambda celery, ours: "tasks." in ours and ("'y'" in ours or celery in ours),
    ),
    "/body_json/result/exc_message/1": Difference(
        "aioqueue adds when the task expired",
        ("expired",),
        related=lambda celery, ours: celery is None and bool(datetime.fromisoformat(ours)),
    ),
    "/body_json/traceback": Difference(
        "Celery sends no traceback for a task it does not know; aioqueue sends where "
        "the error was raised",
        ("unregistered_task",),
        related=lambda celery, ours: celery is None and ours.startswith("Traceback"),
    ),
}


# Tasks aioqueue's worker sends that Celery's did not, and why.
EXTRA: dict[str, dict[str, str]] = {
    "link_error": {
        "tasks.on_error": "Celery calls an errback whose function takes (request, exc, "
        "traceback) inside the worker; aioqueue sends every errback as a task message",
    },
}


def _worker_app(transport: Recording) -> App:
    app, _ = _app(transport)

    @app.task(name="tasks.fail_with_kwargs")
    async def fail_with_kwargs() -> None:
        raise KeyError("missing", 42)

    @app.task(name="tasks.tracked", track_started=True)
    async def tracked(x: int) -> int:
        return x

    @app.task(name="tasks.flaky", bind=True)
    async def flaky(self: Task[[int], int], x: int) -> int:
        if self.request.retries == 0:
            self.retry(countdown=1)
        return x

    @app.task(name="tasks.always_retry", bind=True, max_retries=1)
    async def always_retry(self: Task[[], None]) -> None:
        self.retry(countdown=1)

    return app


WORKER_CASES = (
    "chain_kwargs_step",
    "chain_then_group",
    "chain_three",
    "chain_with_si",
    "chunks",
    "countdown_eta",
    "expired",
    "failure",
    "failure_multiarg",
    "group_three",
    "ignore_result",
    "link",
    "link_error",
    "malformed_wrong_arity",
    "map",
    "retry_exhausted",
    "retry_then_success",
    "started_state",
    "starmap",
    "success",
    "success_kwargs",
    "task_sent_event",
    "unregistered_task",
)
# Scenarios of the worker/ folder not run here, and where they are covered instead.
WORKER_ELSEWHERE: dict[str, str] = {
    "control_broadcast_ping": "remote control: tests/unit/test_remote_control.py",
    "control_inspect_active": "remote control: tests/interop/test_remote_control.py",
    "control_inspect_active_queues": "remote control: tests/interop/test_remote_control.py",
    "control_inspect_registered": "remote control: tests/interop/test_remote_control.py",
    "control_inspect_revoked": "remote control: tests/unit/test_remote_control.py",
    "control_inspect_scheduled": "remote control: tests/interop/test_remote_control.py",
    "control_inspect_stats": "remote control: tests/interop/test_remote_control.py",
    "control_ping": "remote control: tests/unit/test_remote_control.py",
    "control_revoke_reply": "remote control: tests/unit/test_revocations.py",
    "control_revoke_unknown": "remote control: tests/unit/test_revocations.py",
    "revoke_eta_task": "revocation: tests/unit/test_revocations.py",
    "revoke_terminate": "revocation: tests/unit/test_revocations.py",
    "worker_startup": "a worker's hello: nothing a task causes",
    "malformed_bad_json": "dead-lettered, no result: tests/unit/test_vector_folders.py",
    "malformed_no_task_header": "dead-lettered, no result: tests/unit/test_vector_folders.py",
    "malformed_pickle_content_type": "dead-lettered, no result: tests/unit/test_vector_folders.py",
    "protocol_v1_to_worker": "protocol v1 is refused: tests/unit/test_vector_folders.py",
}


def _scenario_of(name: str) -> str:
    """``worker/chain_three-02-task`` → ``chain_three``."""
    found = re.fullmatch(r"worker/(.+)-\d\d-[a-z-]+", name)
    assert found is not None, name
    return found[1]


def _scenario(case: str) -> list[dict[str, Any]]:
    return [folder_vector(n) for n in folder_vectors("worker") if _scenario_of(n) == case]


def test_every_worker_scenario_is_run_or_said_where_it_is_covered() -> None:
    scenarios = {_scenario_of(n) for n in folder_vectors("worker")}
    assert scenarios == set(WORKER_CASES) | set(WORKER_ELSEWHERE)


def _out(vector: dict[str, Any]) -> bool:
    return vector["publisher"] not in _CLIENTS


def _reaches_client(vector: dict[str, Any], replies: set[str]) -> bool:
    return vector["kind"] == "task" or vector["routing_key"] in replies


@pytest.mark.parametrize("case", WORKER_CASES)
async def test_worker_messages_match_celery(case: str) -> None:
    vectors = _scenario(case)
    inputs = [v for v in vectors if not _out(v)]
    transport = Recording()
    app = _worker_app(transport)
    replies = {v["properties"]["reply_to"] for v in inputs if v["properties"].get("reply_to")}
    expected = [v for v in vectors if _out(v) and _reaches_client(v, replies)]
    # What Celery's worker sent the tasks it sent itself, to its own reply queue: nobody
    # reads those, and aioqueue's worker sends such tasks without one (see reply_to).
    own = {v["properties"].get("reply_to") for v in vectors if _out(v) and v["kind"] == "task"}
    assert all(v["routing_key"] in own for v in vectors if _out(v) and v not in expected)

    def answers() -> list[dict[str, Any]]:
        sent = [document(*p) for p in transport.published if p[0] != "celeryev"]
        out, seen = [], set()
        for d in sent:
            if d["routing_key"] in replies:
                out.append(d)
            elif "task" in d["headers"] and not d["routing_key"].endswith(".dlq"):
                # A message waiting for its time moves down the delay buckets, one
                # publish each (512 ms, then 256, ...): the first is the one sent.
                attempt = (d["headers"]["id"], d["headers"]["retries"])
                if attempt not in seen:
                    seen.add(attempt)
                    out.append(d)
        return out

    async with app:
        for reply in replies:
            await app.transport.declare_queue(QueueSpec(reply))
        async with app.worker(concurrency=4):
            start = len(transport.published)
            for vector in inputs:
                await app.transport.publish(
                    envelope_of(vector),
                    exchange=vector["exchange"],
                    routing_key=vector["routing_key"],
                )
            del transport.published[start : start + len(inputs)]
            await eventually(lambda: len(answers()) >= len(expected), 15)
            await anyio.sleep(0.2)  # anything more would have been sent by now
    ours = [d for d in answers() if d["headers"].get("task") not in EXTRA.get(case, {})]
    assert len(ours) == len(expected), [d["headers"].get("task") or d["body_json"] for d in ours]
    for vector in expected:
        mine = _pair(vector, ours)
        compare(case, mine, vector, WORKER_DIFFERENCES)
    if any(v["kind"] == "input" for v in inputs) or case == "unregistered_task":
        # Refused, as Celery rejects it: kept in the queue's .dlq, its caller told.
        assert [p[1] for p in transport.published if p[1].endswith(".dlq")] == ["celery.dlq"]


def _pair(vector: dict[str, Any], ours: list[dict[str, Any]]) -> dict[str, Any]:
    """Ours for ``vector`` (taken from ``ours``): the same task or status, and the same
    task id, else (ids Celery's worker chose itself) the same result, else the first."""
    if vector["kind"] == "task":
        kin = [d for d in ours if d["headers"].get("task") == vector["headers"]["task"]]
    else:
        status = vector["body_json"]["status"]
        kin = [
            d for d in ours if "task" not in d["headers"] and d["body_json"].get("status") == status
        ]
    task_id = vector["properties"].get("correlation_id")
    ranked = sorted(
        kin,
        key=lambda d: (
            d["properties"].get("correlation_id") != task_id,
            vector["kind"] == "task"
            or d["body_json"].get("result") != vector["body_json"]["result"],
        ),
    )
    assert ranked, f"nothing like {vector['case']} #{vector['sequence']} was sent"
    ours.remove(ranked[0])
    return ranked[0]


# -- beat: the message of a periodic entry ------------------------------------------------

BEAT_DIFFERENCES: dict[str, Difference] = {
    "/properties/priority": DIFFERENCES["/properties/priority"],
    "/headers/argsrepr": Difference(
        "display only: Celery's beat shows the list of its entry, aioqueue a tuple",
        related=_same_repr,
    ),
    "/headers/expires": Difference(
        "an aioqueue tick expires by default at its entry's next slot, so a backlog never "
        "runs one entry twice in a row late; the entry's expires=0 sends none, as Celery",
        related=lambda celery, ours: celery is None and bool(datetime.fromisoformat(ours)),
    ),
    "/properties/reply_to": Difference(
        "nobody waits for a tick's result: aioqueue's beat names no reply queue",
        related=lambda celery, ours: ours is None,
    ),
}


async def test_beat_message_matches_celery() -> None:
    """``beat_schedule {"multiply-every-10s": {"task": "tasks.multiply", "schedule": 10.0,
    "args": (3, 4)}}``, said with aioqueue."""
    transport = Recording()
    app, tasks = _app(transport)
    # The grid starts in a second: the first slot after beat's first look.
    start = datetime.now(UTC) + timedelta(seconds=1)
    app.beat.every(10, tasks.multiply.s(3, 4), name="multiply-every-10s", anchor=start)
    async with app:
        async with app.beat:
            await eventually(lambda: bool(transport.tasks()), 15)
    (ours,) = transport.tasks()
    for name in folder_vectors("beat"):  # every tick of the entry looks alike
        compare("beat_interval_10s", ours, folder_vector(name), BEAT_DIFFERENCES)


# -- chord: what an aioqueue worker does with a Celery client's chord --------------------

CHORD_TASKS = [n for n in folder_vectors("chord") if folder_vector(n)["kind"] == "task"]


@pytest.mark.parametrize("name", CHORD_TASKS)
async def test_worker_answers_celery_chord_messages(name: str) -> None:
    vector = folder_vector(name)
    transport = Recording()
    app = _worker_app(transport)

    @app.task(name="tasks.sleepy")
    async def sleepy(seconds: float) -> float:
        return seconds

    reply = vector["properties"]["reply_to"]
    body = vector["body_json"]
    chord_body = (body[2] or {}).get("chord")
    task_id = vector["headers"]["id"]

    def sent(key: str) -> list[dict[str, Any]]:
        return [document(*p) for p in transport.published if p[1] == key]

    async with app:
        await app.transport.declare_queue(QueueSpec(reply))
        async with app.worker(concurrency=1):
            await app.transport.publish(envelope_of(vector), routing_key=vector["routing_key"])
            await eventually(lambda: bool(sent("celery.dlq") or sent(reply)), 15)
            await anyio.sleep(0.2)  # the rest of what it sends
    states = {d["properties"]["correlation_id"]: d["body_json"] for d in sent(reply)}
    if chord_body is not None:
        # A header member: never run, as its chord could never be joined here. It waits
        # in the .dlq; its caller and the body's are told why.
        assert [d["headers"]["id"] for d in sent("celery.dlq")] == [task_id]
        assert set(states) == {task_id, chord_body["options"]["task_id"]}
        for state in states.values():
            assert state["status"] == "FAILURE"
            assert "result backend" in state["result"]["exc_message"][0]
    elif vector["headers"]["task"] == "celery.chord_unlock":
        # Celery's polling of a result database for the header's results: no such task
        # here (aioqueue joins chords in RabbitMQ), so it is refused like any unknown one.
        assert [d["headers"]["task"] for d in sent("celery.dlq")] == ["celery.chord_unlock"]
    else:
        # The body, sent by Celery's worker once the header was joined: a task like any.
        assert sent("celery.dlq") == []
        assert states[task_id]["status"] == "SUCCESS"
        assert states[task_id]["result"] == sum(body[0][0])
