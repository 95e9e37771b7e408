"""The bad-input battery: hostile and malformed messages against a real worker process.

Each kind of message is published raw (aio-pika, straight to the worker's queue, as
any producer on the broker could) to an ``aioqueue worker`` subprocess. Each must end
in ``<queue>.dlq`` with the reason, its caller (when it names a ``reply_to`` that
exists, and a task id) told with a FAILURE of the same error type, and the worker still
serving: a good task afterwards succeeds.

Argument *values* of the wrong type (``"a"`` for an ``int``) are not bad input: nothing
checks them against a task's annotations, so the task runs and fails as its own code
does. Arguments that cannot be arguments at all (``args`` not a list, ``kwargs`` not an
object) are.
"""

from __future__ import annotations

import gzip
import json
import pickle
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

from aioqueue import (
    App,
    ArgumentsError,
    AsyncResult,
    ConfigurationError,
    ContentTypeError,
    DecodeError,
    EncodeError,
    MalformedMessageError,
    MessageError,
    UnknownTaskError,
)
from aioqueue.serialization import DEFAULT_MAX_MESSAGE_SIZE, PICKLE, Codec
from aioqueue.topology import ERROR_HEADER, ERROR_TYPE_HEADER, ORIGIN_HEADER, dlq_name
from tests.faults.conftest import APP, Cluster
from tests.helpers import receive
from tests.processes import ONE_LOOP, WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

TIMEOUT = 30  # generous: only there so that a broken test fails instead of hanging
GOOD_BODY = json.dumps([[1, 2], {}, {"callbacks": None, "errbacks": None}]).encode()


@dataclass(frozen=True)
class Case:
    """One kind of bad message: what differs from a good ``faults.add`` message."""

    error: type[MessageError]
    says: str  # part of the reason, naming the problem
    body: bytes = GOOD_BODY
    headers: dict[str, Any] = field(default_factory=dict)  # merged over the good ones
    drop: tuple[str, ...] = ()  # good headers left out
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    reply_to_missing: bool = False  # reply_to names a queue that does not exist


def _v1_body() -> bytes:
    # Celery's protocol v1: everything in the body, no 'task' header.
    return json.dumps(
        {"task": "faults.add", "id": "v1", "args": [1, 2], "kwargs": {}, "retries": 0}
    ).encode()


_OVERSIZED = DEFAULT_MAX_MESSAGE_SIZE + 1
# Valid JSON, so only its size is wrong.
_BIG_BODY = b'[["' + b"x" * (_OVERSIZED - 14) + b'"], {}, {}]'
assert len(_BIG_BODY) == _OVERSIZED
_DEPTH = 100_000

CASES: dict[str, Case] = {
    "not-json": Case(DecodeError, "body is not valid JSON", body=b"\xff\xfe[[1, 2], {}"),
    "json-of-the-wrong-shape": Case(
        MalformedMessageError,
        "body must be [args, kwargs, embed], got dict",
        body=b'{"args": [1, 2], "kwargs": {}}',
    ),
    "protocol-v1": Case(
        MalformedMessageError, "no 'task' header", body=_v1_body(), drop=("task", "id")
    ),
    "no-task-header": Case(MalformedMessageError, "no 'task' header", drop=("task",)),
    "unknown-task": Case(
        UnknownTaskError,
        "task 'faults.no_such_task' is not registered",
        headers={"task": "faults.no_such_task"},
    ),
    "wrong-argument-count": Case(
        ArgumentsError, "missing a required argument: 'y'", body=b"[[1], {}, {}]"
    ),
    "args-not-a-list": Case(
        MalformedMessageError, "args: Input should be a valid list", body=b'[{"x": 1}, {}, {}]'
    ),
    "kwargs-not-an-object": Case(
        MalformedMessageError,
        "kwargs: Input should be a valid dictionary",
        body=b"[[1], [2], {}]",
    ),
    "no-content-type": Case(ContentTypeError, "no content type", content_type=None),
    "pickle": Case(
        ContentTypeError,
        f"content type '{PICKLE}' is not accepted",
        body=pickle.dumps([[1, 2], {}, {}]),
        content_type=PICKLE,
        content_encoding="binary",
    ),
    "unknown-content-encoding": Case(
        ContentTypeError,
        "content encoding 'x-rot13' is not accepted",
        content_encoding="x-rot13",
    ),
    "compressed-zip-bomb": Case(
        ContentTypeError,
        "compressed bodies are not accepted",
        # 100 MiB of JSON once inflated; it must not be.
        body=gzip.compress(b"[[" + b" " * (100 * 2**20) + b"1, 2], {}, {}]"),
        headers={"compression": "application/x-gzip"},
    ),
    "ten-megabyte-body": Case(
        DecodeError,
        f"message of {_OVERSIZED:,} bytes exceeds max_message_size {DEFAULT_MAX_MESSAGE_SIZE:,}",
        body=_BIG_BODY,
    ),
    "deeply-nested-json": Case(
        DecodeError,
        "nested too deeply",
        body=b'[[1, 2], {"x": ' + b"[" * _DEPTH + b"]" * _DEPTH + b"}, {}]",
    ),
    "typed-value-not-decodable": Case(
        DecodeError,
        "not a valid decimal value: 'abc'",
        body=b'[[{"__type__": "decimal", "__value__": "abc"}, 2], {}, {}]',
    ),
    "retries-a-string": Case(
        MalformedMessageError, "retries: Input should be a valid integer", headers={"retries": "x"}
    ),
    "eta-not-a-date": Case(
        MalformedMessageError,
        "eta: Input should be a valid datetime",
        headers={"eta": "next tuesday"},
    ),
    "id-a-number": Case(
        MalformedMessageError, "headers 'task' and 'id' must be strings", headers={"id": 12345}
    ),
    "reply-to-a-missing-queue": Case(
        UnknownTaskError,
        "task 'faults.no_such_task' is not registered",
        headers={"task": "faults.no_such_task"},
        reply_to_missing=True,
    ),
}


@dataclass
class Battery:
    cluster: Cluster
    channel: aio_pika.abc.AbstractChannel
    reply_to: str  # the client's reply queue

    async def send(self, case: Case) -> str:
        """Publish ``case`` raw to the worker's queue (mandatory, confirmed); its id."""
        task_id = str(uuid.uuid4())
        headers: dict[str, Any] = {
            "lang": "py",
            "task": "faults.add",
            "id": task_id,
            "root_id": task_id,
            "retries": 0,
        }
        for name in case.drop:
            del headers[name]
        headers.update(case.headers)
        reply_to = f"test.no-such-reply-queue.{uuid.uuid4().hex}" if case.reply_to_missing else None
        message = aio_pika.Message(
            case.body,
            headers=headers,
            content_type=case.content_type,
            content_encoding=case.content_encoding,
            correlation_id=task_id,
            reply_to=reply_to or self.reply_to,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.channel.default_exchange.publish(
            message, routing_key=self.cluster.queue, mandatory=True
        )
        return task_id

    async def told(self, task_id: str, case: Case) -> None:
        """The caller got a FAILURE with the case's error."""
        with pytest.raises(case.error) as caught:
            await AsyncResult(task_id, self.cluster.client.results).get(timeout=TIMEOUT)
        assert case.says in str(caught.value)

    async def serves(self, worker: WorkerProcess, *, tracebacks: bool = False) -> None:
        """A good task afterwards succeeds, and the worker hit nothing unexpected (bad
        input is one error line, no traceback)."""
        good = await self.cluster.task("add").delay(20, 22)
        assert await good.get(timeout=TIMEOUT) == 42
        assert worker.returncode is None
        log = worker.stderr()
        assert "unexpected error" not in log
        assert tracebacks or "Traceback" not in log


@pytest.fixture
async def battery(amqp_url: str, cluster: Cluster) -> AsyncIterator[Battery]:
    await cluster.client.results.start()  # the client's reply queue, for raw messages
    reply_to = cluster.client.results.reply_to
    assert reply_to is not None
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield Battery(cluster, channel, reply_to)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_bad_message_is_dead_lettered_and_reported(battery: Battery, case: Case) -> None:
    worker = await battery.cluster.start("-c", "2")
    task_id = await battery.send(case)

    if not case.reply_to_missing:
        await battery.told(task_id, case)

    (dead,) = await receive(
        battery.cluster.client.transport, dlq_name(battery.cluster.queue), 1, TIMEOUT
    )
    assert dead.correlation_id == task_id
    assert dead.body == case.body  # parked as it came, to be looked at or replayed
    assert case.says in dead.headers[ERROR_HEADER]
    assert dead.headers[ERROR_TYPE_HEADER] == case.error.__name__
    assert dead.headers[ORIGIN_HEADER] == battery.cluster.queue
    assert "dead-lettering a message" in worker.stderr()

    await battery.serves(worker)


async def test_worker_survives_the_whole_battery_at_once(battery: Battery) -> None:
    worker = await battery.cluster.start("-c", "4")
    sent = {await battery.send(case): case for case in CASES.values()}
    await battery.serves(worker)
    for task_id, case in sent.items():
        if not case.reply_to_missing:
            await battery.told(task_id, case)
    queue = dlq_name(battery.cluster.queue)
    dead = await receive(battery.cluster.client.transport, queue, len(CASES), TIMEOUT)
    reasons = {d.correlation_id: d.headers[ERROR_HEADER] for d in dead}
    assert reasons.keys() == sent.keys()
    for task_id, case in sent.items():
        assert case.says in reasons[task_id]


async def test_a_configured_bound_rejects_what_the_default_would_take(battery: Battery) -> None:
    bound = 2**20
    cluster = battery.cluster
    worker = await cluster.processes.start(
        APP,
        "-Q",
        cluster.queue,
        env={**cluster.env, "AIOQUEUE_TEST_MAX_MESSAGE_SIZE": str(bound)},
    )
    # Two of them: under the bound it runs, one byte over it is parked unread.
    fits = b"[[1, 2], {}, {}" + b" " * (bound - 16) + b"]"
    over = fits + b" "
    assert len(fits) == bound
    good = await battery.send(Case(DecodeError, "", body=fits))
    assert await AsyncResult(good, cluster.client.results).get(timeout=TIMEOUT) == 3
    case = Case(DecodeError, f"message of 1,048,577 bytes exceeds max_message_size {bound:,}")
    bad = await battery.send(Case(case.error, case.says, body=over))
    await battery.told(bad, case)
    (dead,) = await receive(cluster.client.transport, dlq_name(cluster.queue), 1, TIMEOUT)
    assert dead.correlation_id == bad
    await battery.serves(worker)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
async def test_max_message_size_must_be_a_positive_number_of_bytes(size: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_message_size must be a positive"):
        App("sized", broker="memory://", max_message_size=size)


async def test_argument_values_of_the_wrong_type_fail_the_task_not_the_message(
    battery: Battery,
) -> None:
    worker = await battery.cluster.start()
    result = await battery.cluster.task("add").delay("a", 1)
    with pytest.raises(TypeError, match="can only concatenate str"):
        await result.get(timeout=TIMEOUT)
    await battery.serves(worker, tracebacks=True)  # the task's own error, logged
    dlq = await battery.cluster.client.transport.inspect_queue(dlq_name(battery.cluster.queue))
    assert dlq is not None and dlq.messages == 0


@pytest.mark.parametrize(
    ("body", "encoding", "compression", "problem"),
    [
        (b"x" * 8, "utf-8", None, None),
        (b"x" * 8, "UTF-8", None, None),
        (b"x" * 8, "binary", None, None),
        (b"x" * 8, "", None, None),
        (b"x" * 9, "utf-8", None, "message of 9 bytes exceeds max_message_size 8"),
        (b"x" * 8, "gzip", None, "content encoding 'gzip' is not accepted"),
        (b"x" * 8, "utf-8", "application/x-gzip", "compressed bodies are not accepted"),
    ],
)
async def test_what_a_worker_admits_before_decoding(
    body: bytes, encoding: str, compression: str | None, problem: str | None
) -> None:
    codec = Codec(max_message_size=8)
    if problem is None:
        codec.admit(body, encoding, compression)
    else:
        with pytest.raises(MessageError, match=problem):
            codec.admit(body, encoding, compression)


async def test_a_value_nested_too_deeply_is_an_encode_error() -> None:
    deep: list[Any] = []
    for _ in range(_DEPTH):
        deep = [deep]
    with pytest.raises(EncodeError, match="nested too deeply"):
        Codec().encode(deep)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"__type__": "uuid", "__value__": 5}', "not a valid uuid value: 5"),
        (b'{"__type__": "bytes", "__value__": 5}', "not a valid bytes value: 5"),
        (b'{"__type__": "datetime", "__value__": 5}', "not a valid datetime value: 5"),
        (b'{"__type__": "date", "__value__": "soon"}', "not a valid date value: 'soon'"),
    ],
)
async def test_a_typed_value_that_does_not_decode_is_a_decode_error(
    body: bytes, problem: str
) -> None:
    with pytest.raises(DecodeError, match=problem):
        Codec().decode(body, "application/json")


async def test_a_type_tag_that_is_not_a_name_is_plain_data() -> None:
    body = b'{"__type__": [1], "__value__": 5}'
    assert Codec().decode(body, "application/json") == {"__type__": [1], "__value__": 5}
