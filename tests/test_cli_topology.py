"""``aioqueue topology`` and ``aioqueue purge``: the overview built from a topology
(pure, tables), and the commands run as users run them, against a real RabbitMQ.

The subprocesses load ``app`` below (``-A tests.test_cli_topology:app``), configured
from the environment: ``AIOQUEUE_TEST_BROKER`` (the broker URL) and
``AIOQUEUE_TEST_QUEUE`` (its default queue, also the prefix of its other queues).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from aioqueue import App, Binding, Broadcast, Exchange, Queue
from aioqueue.overview import (
    Live,
    QueueCounts,
    UnackedSource,
    build,
    render,
    unacked_counts,
    unacked_source,
)
from aioqueue.topology import Topology
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Delivery, Envelope, QueueSpec
from tests.processes import ONE_LOOP, TIMEOUT, error_line, run_cli

APP = "tests.test_cli_topology:app"


def create_app(broker: str, queue: str) -> App:
    """An app with the default ``queue``, a priority queue and a broadcast."""
    return App(
        "cli-topology",
        broker=broker,
        default_queue=queue,
        queues=[Queue(f"{queue}.prio", max_priority=5), Broadcast(f"{queue}.bc")],
    )


app = create_app(
    os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    os.environ.get("AIOQUEUE_TEST_QUEUE", "cli.default"),
)


# -- the overview (pure) ---------------------------------------------------------------

ORDERS = Exchange("orders", "topic")
DOCS = Exchange("docs", "headers")
SHOP = [
    Queue("by-kind", exchange=ORDERS, routing_key="orders.*", max_priority=10),
    Queue("created", bindings=[Binding(ORDERS, "*.created")]),
    Queue("pdf", bindings=[Binding(DOCS, headers={"format": "pdf"}, match="any")]),
    Broadcast("reload"),
]

RENDERED = [
    pytest.param(
        Topology([], "celery"),
        [],
        [],
        """\
celery (direct)
  key 'celery' -> celery

  queue     dlq
* celery  celery.dlq
* consumed by a worker started without -Q/-X""",
        id="the default queue alone",
    ),
    pytest.param(
        Topology(SHOP, "celery"),
        [],
        [],
        """\
orders (topic)
  key 'orders.*' -> by-kind  [x-max-priority=10]
  key '*.created' -> created
docs (headers)
  headers any(format='pdf') -> pdf
reload (fanout)  broadcast: a queue per worker
celery (direct)
  key 'celery' -> celery

  queue      dlq
* by-kind  by-kind.dlq
* created  created.dlq
* pdf      pdf.dlq
* celery   celery.dlq
* reload   reload.dlq  broadcast: a queue per worker
* consumed by a worker started without -Q/-X""",
        id="topic, headers, broadcast and the default queue",
    ),
    pytest.param(
        Topology(
            [Queue("q", queue_type="quorum"), Queue("fan", exchange=Exchange("f", "fanout"))], "q"
        ),
        ["fan", "extra"],
        [],
        "\n".join(
            [
                "q (direct)",
                "  key 'q' -> q  [x-queue-type='quorum', x-dead-letter-exchange='', "
                "x-dead-letter-routing-key='q.dlq']",
                "f (fanout)",
                "  -> fan",
                "extra (direct)",
                "  key 'extra' -> extra",
                "",
                "  queue  dlq",
                "  q      q.dlq",
                "* fan    fan.dlq",
                "* extra  extra.dlq",
                "* consumed by a worker started with these -Q/-X",
            ]
        ),
        id="quorum arguments, a fanout binding, -Q naming an undefined queue",
    ),
]


def _normalised(text: str) -> list[str]:
    # The expected tables above are written by hand: compare the indentation and the
    # cells, not the padding between cells.
    return [
        line[: len(line) - len(line.lstrip())] + " ".join(line.split())
        for line in text.splitlines()
    ]


@pytest.mark.parametrize(("topology", "include", "exclude", "expected"), RENDERED)
def test_render_draws_exchange_binding_queue(
    topology: Topology, include: list[str], exclude: list[str], expected: str
) -> None:
    assert _normalised(render(build(topology, include, exclude))) == _normalised(expected)


def test_render_aligns_the_table() -> None:
    lines = render(build(Topology(SHOP, "celery"))).splitlines()
    table = lines[lines.index("") + 1 : -1]
    assert table[0] == "  queue    dlq"
    assert table[1] == "* by-kind  by-kind.dlq"
    assert table[-1] == "* reload   reload.dlq   broadcast: a queue per worker"


def test_excluded_queues_are_shown_but_not_consumed() -> None:
    overview = build(Topology(SHOP, "celery"), exclude=["celery", "reload"])
    consumed = {q.name: q.consumed for q in overview.queues}
    assert consumed == {"by-kind": True, "created": True, "pdf": True, "celery": False}
    assert [b.consumed for b in overview.broadcasts] == [False]


LIVE = Live(
    queues={
        "by-kind": QueueCounts(3, 1, 1),
        "by-kind.dlq": QueueCounts(2, 0, 0),
        "created": QueueCounts(0, None, 0),
        "created.dlq": None,
        "pdf": None,
        "pdf.dlq": None,
        "celery": QueueCounts(7, 0, 2),
        "celery.dlq": QueueCounts(0, 0, 0),
        "reload.dlq": QueueCounts(0, 0, 0),
    },
    exchanges={"orders": True, "docs": False, "reload": True, "celery": True},
    unacked_unknown="AMQP gives no unacked count, and rabbitmqctl is not on PATH",
)


def test_render_live_counts_and_what_is_missing() -> None:
    text = render(build(Topology(SHOP, "celery"), live=LIVE))
    assert _normalised(text) == _normalised("""\
orders (topic)
  key 'orders.*' -> by-kind  [x-max-priority=10]
  key '*.created' -> created
docs (headers)  not declared
  headers any(format='pdf') -> pdf
reload (fanout)  broadcast: a queue per worker
celery (direct)
  key 'celery' -> celery

  queue    ready  unacked  consumers  dlq
* by-kind  3      1        1          by-kind.dlq: 2
* created  0      -        0          created.dlq: -  created.dlq not declared
* pdf      -      -        -          pdf.dlq: -      not declared
* celery   7      0        2          celery.dlq: 0
* reload   -      -        -          reload.dlq: 0   broadcast: a queue per worker
* consumed by a worker started without -Q/-X
unacked "-": AMQP gives no unacked count, and rabbitmqctl is not on PATH""")


def test_json_has_stable_keys() -> None:
    document = build(Topology(SHOP, "celery"), live=LIVE).to_json()
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {
        "default_queue",
        "exchanges",
        "queues",
        "broadcasts",
        "unacked_unknown",
    }
    orders, docs, reload, celery = document["exchanges"]
    assert orders == {
        "name": "orders",
        "type": "topic",
        "durable": True,
        "arguments": {},
        "bindings": [
            {"queue": "by-kind", "routing_key": "orders.*", "arguments": {}},
            {"queue": "created", "routing_key": "*.created", "arguments": {}},
        ],
        "live": {"declared": True},
    }
    assert docs["bindings"] == [
        {"queue": "pdf", "routing_key": "", "arguments": {"x-match": "any", "format": "pdf"}}
    ]
    assert docs["live"] == {"declared": False}
    assert (reload["type"], reload["bindings"]) == ("fanout", [])
    by_kind, created, pdf, _ = document["queues"]
    assert by_kind == {
        "name": "by-kind",
        "arguments": {"x-max-priority": 10},
        "dlq": "by-kind.dlq",
        "consumed_by_default": True,
        "live": {"declared": True, "messages": 3, "unacked": 1, "consumers": 1},
        "dlq_live": {"declared": True, "messages": 2, "unacked": 0, "consumers": 0},
    }
    assert created["live"]["unacked"] is None
    assert pdf["live"] == {"declared": False, "messages": None, "unacked": None, "consumers": None}
    assert document["broadcasts"] == [
        {
            "name": "reload",
            "exchange": "reload",
            "dlq": "reload.dlq",
            "consumed_by_default": True,
            "dlq_live": {"declared": True, "messages": 0, "unacked": 0, "consumers": 0},
        }
    ]
    assert celery["live"] == {"declared": True}
    assert document["unacked_unknown"] == LIVE.unacked_unknown


def test_json_without_live_has_null_live() -> None:
    document = build(Topology(SHOP, "celery")).to_json()
    assert all(e["live"] is None for e in document["exchanges"])
    assert all(q["live"] is None and q["dlq_live"] is None for q in document["queues"])
    assert document["unacked_unknown"] is None


def test_what_live_reads() -> None:
    overview = build(Topology(SHOP, "celery"))
    assert overview.queue_names() == [
        "by-kind",
        "by-kind.dlq",
        "created",
        "created.dlq",
        "pdf",
        "pdf.dlq",
        "celery",
        "celery.dlq",
        "reload.dlq",
    ]
    assert overview.exchange_names() == ["orders", "docs", "reload", "celery"]


COMMAND = ("name", "messages_ready", "messages_unacknowledged", "consumers", "--formatter", "json")


@pytest.mark.parametrize(
    ("url", "rabbitmqctl", "expected"),
    [
        (
            "amqp://guest:guest@localhost:5672//",
            "/bin/rabbitmqctl",
            UnackedSource(("/bin/rabbitmqctl", "list_queues", "-p", "/", *COMMAND)),
        ),
        (
            "amqp://u:p@127.0.0.1/a%2Fb",
            "rabbitmqctl",
            UnackedSource(("rabbitmqctl", "list_queues", "-p", "a/b", *COMMAND)),
        ),
        (
            "amqp://u:p@[::1]:5672/dev",
            "rabbitmqctl",
            UnackedSource(("rabbitmqctl", "list_queues", "-p", "dev", *COMMAND)),
        ),
        (
            "amqp://u:p@rabbit.example.com/x;amqp://u:p@127.0.0.1:5673/a%2Fb",
            "rabbitmqctl",
            UnackedSource(("rabbitmqctl", "list_queues", "-p", "a/b", *COMMAND)),
        ),
        (
            "amqp://u:p@rabbit.example.com,localhost:5673/dev",
            "rabbitmqctl",
            UnackedSource(("rabbitmqctl", "list_queues", "-p", "dev", *COMMAND)),
        ),
        (
            "amqp://localhost",
            "rabbitmqctl",
            UnackedSource(("rabbitmqctl", "list_queues", "-p", "/", *COMMAND)),
        ),
        (
            "amqp://u:p@rabbit.example.com/",
            "rabbitmqctl",
            UnackedSource(
                None,
                "AMQP gives no unacked count, and rabbitmqctl reads only this machine's broker",
            ),
        ),
        (
            "amqp://localhost//",
            None,
            UnackedSource(None, "AMQP gives no unacked count, and rabbitmqctl is not on PATH"),
        ),
        (
            None,
            "rabbitmqctl",
            UnackedSource(None, "the app was given a transport, not a broker URL"),
        ),
    ],
)
def test_unacked_source(url: str | None, rabbitmqctl: str | None, expected: UnackedSource) -> None:
    assert unacked_source(url, rabbitmqctl) == expected


LISTED = (
    '[\n{"name":"a","messages_ready":1,"messages_unacknowledged":2,"consumers":1}\n'
    ',{"name":"b","messages_ready":0,"messages_unacknowledged":0,"consumers":0}\n]\n'
)


@pytest.mark.parametrize(
    ("output", "expected", "counts_or_error"),
    [
        (LISTED, ["a", "b"], {"a": 2, "b": 0}),
        (LISTED, [], {"a": 2, "b": 0}),
        ("[\n]\n", [], {}),
        (LISTED, ["a", "c"], "speaks for another broker: it does not list queue 'c'"),
        ("Error: unable to perform an operation", ["a"], "answered something else"),
        ('[{"name": "a"}]', ["a"], "answered something else"),
    ],
)
def test_unacked_counts(output: str, expected: list[str], counts_or_error: Any) -> None:
    if isinstance(counts_or_error, dict):
        assert unacked_counts(output, expected) == counts_or_error
        return
    with pytest.raises(ValueError, match=counts_or_error):
        unacked_counts(output, expected)


# -- the commands ------------------------------------------------------------------------


def _cli(
    *args: str, broker: str, queue: str = "cli.default", stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOQUEUE_TEST_BROKER": broker, "AIOQUEUE_TEST_QUEUE": queue}
    return run_cli(*args, env=env, stdin=stdin)


async def _acli(
    *args: str, broker: str, queue: str = "cli.default", stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(
        lambda: _cli(*args, broker=broker, queue=queue, stdin=stdin)
    )


def _error_line(out: subprocess.CompletedProcess[str]) -> str:
    line = error_line(out)
    assert line.startswith("error: "), out.stderr
    return line


def test_topology_command_without_a_broker() -> None:
    out = _cli("topology", "-A", APP, broker="memory://", queue="t")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:4] == [
        "t.prio (direct)",
        "  key 't.prio' -> t.prio  [x-max-priority=5]",
        "t.bc (fanout)  broadcast: a queue per worker",
        "t (direct)",
    ]
    document = json.loads(
        _cli("topology", "-A", APP, "--json", "-X", "t", broker="memory://", queue="t").stdout
    )
    assert {q["name"]: q["consumed_by_default"] for q in document["queues"]} == {
        "t.prio": True,
        "t": False,
    }


def test_commands_that_read_the_broker_refuse_memory() -> None:
    for args in (("topology", "--live"), ("purge", "-Q", "q", "-f")):
        out = _cli(*args, "-A", APP, broker="memory://")
        assert out.returncode == 1
        assert "memory://" in _error_line(out)


def test_purge_refuses_without_queues() -> None:
    out = _cli("purge", "-A", APP, "-f", broker="memory://")
    assert out.returncode == 2
    assert "-Q" in _error_line(out)


@pytest.fixture
async def amqp(amqp_url: str) -> AsyncIterator[AmqpTransport]:
    transport = AmqpTransport(amqp_url)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.aclose()


async def _fill(transport: AmqpTransport, queue: str, count: int) -> None:
    await transport.declare_queue(QueueSpec(queue))
    for i in range(count):
        await transport.publish(Envelope(body=str(i).encode()), routing_key=queue)


def _row(output: str, queue: str) -> list[str]:
    for line in output.splitlines():
        if line[2:].split(" ", 1)[0] == queue:
            return line[2:].split()
    raise AssertionError(f"no row for {queue!r} in:\n{output}")


@pytest.mark.amqp
@pytest.mark.anyio
@ONE_LOOP
async def test_topology_live_shows_ready_unacked_and_consumers(
    amqp_url: str, amqp_queue: str, amqp: AmqpTransport
) -> None:
    client = create_app(amqp_url, amqp_queue)
    async with client:
        await client.broker.declare(client.broker.queue(amqp_queue))
    for i in range(3):
        await amqp.publish(Envelope(body=str(i).encode()), routing_key=amqp_queue)
    out = await _acli("topology", "-A", APP, "--live", broker=amqp_url, queue=amqp_queue)
    assert out.returncode == 0, out.stderr
    unacked = "0" if shutil.which("rabbitmqctl") else "-"
    assert _row(out.stdout, amqp_queue) == [
        amqp_queue,
        "3",
        unacked,
        "0",
        f"{amqp_queue}.dlq:",
        "0",
    ]
    # What the app defines and nobody declared yet.
    assert _row(out.stdout, f"{amqp_queue}.prio")[-2:] == ["not", "declared"]
    assert f"{amqp_queue}.prio (direct)  not declared" in out.stdout
    assert f"{amqp_queue}.bc (fanout)  broadcast: a queue per worker  not declared" in out.stdout

    # A consumer holds one message unacked.
    held, release = anyio.Event(), anyio.Event()

    async def hold(delivery: Delivery) -> None:
        held.set()
        await release.wait()
        await delivery.ack()

    consumer = await amqp.consume(amqp_queue, hold, prefetch=1)
    try:
        with anyio.fail_after(TIMEOUT):
            await held.wait()
        out = await _acli(
            "topology", "-A", APP, "--live", "--json", broker=amqp_url, queue=amqp_queue
        )
        assert out.returncode == 0, out.stderr
        document = json.loads(out.stdout)
        (queue,) = [q for q in document["queues"] if q["name"] == amqp_queue]
        if shutil.which("rabbitmqctl"):
            assert queue["live"] == {"declared": True, "messages": 2, "unacked": 1, "consumers": 1}
            assert document["unacked_unknown"] is None
        else:
            assert queue["live"]["unacked"] is None
            assert "rabbitmqctl is not on PATH" in document["unacked_unknown"]
    finally:
        release.set()
        await consumer.close()


@pytest.mark.amqp
@pytest.mark.anyio
@ONE_LOOP
async def test_purge_force_reports_each_count(
    amqp_url: str, amqp_queue: str, amqp: AmqpTransport
) -> None:
    first, second = f"{amqp_queue}.p1", f"{amqp_queue}.p2"
    try:
        await _fill(amqp, first, 3)
        await _fill(amqp, second, 1)
        out = await _acli("purge", "-A", APP, "-Q", f"{first},{second}", "-f", broker=amqp_url)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"{first}: 3 messages purged",
            f"{second}: 1 message purged",
        ]
        for name in (first, second):
            state = await amqp.inspect_queue(name)
            assert state is not None and state.messages == 0
    finally:
        for name in (first, second):
            await amqp.delete_queue(name)


@pytest.mark.amqp
@pytest.mark.anyio
@ONE_LOOP
async def test_purge_asks_first(amqp_url: str, amqp_queue: str, amqp: AmqpTransport) -> None:
    first, second = f"{amqp_queue}.p1", f"{amqp_queue}.p2"
    names = f"{first},{second}"
    try:
        await _fill(amqp, first, 10)
        await _fill(amqp, second, 2)
        out = await _acli("purge", "-A", APP, "-Q", names, broker=amqp_url, stdin="n\n")
        assert out.returncode == 1
        assert f"purge 12 messages from {first}, {second}? [y/N]" in out.stdout
        assert "purged" not in out.stdout and "nothing purged" in out.stderr
        states = [await amqp.inspect_queue(n) for n in (first, second)]
        assert [s.messages if s else None for s in states] == [10, 2]
        # No answer at all (stdin closed) is a no too.
        out = await _acli("purge", "-A", APP, "-Q", names, broker=amqp_url)
        assert out.returncode == 1
        out = await _acli("purge", "-A", APP, "-Q", names, broker=amqp_url, stdin="y\n")
        assert out.returncode == 0, out.stderr
        assert f"{first}: 10 messages purged" in out.stdout
        assert f"{second}: 2 messages purged" in out.stdout
    finally:
        for name in (first, second):
            await amqp.delete_queue(name)


@pytest.mark.amqp
@pytest.mark.anyio
@ONE_LOOP
async def test_purge_of_a_missing_queue_is_an_error_and_purges_nothing(
    amqp_url: str, amqp_queue: str, amqp: AmqpTransport
) -> None:
    present, missing = f"{amqp_queue}.here", f"{amqp_queue}.missing"
    try:
        await _fill(amqp, present, 2)
        out = await _acli("purge", "-A", APP, "-Q", f"{present},{missing}", "-f", broker=amqp_url)
        assert out.returncode == 1
        assert _error_line(out) == f"error: queue {missing!r} does not exist; nothing was purged"
        state = await amqp.inspect_queue(present)
        assert state is not None and state.messages == 2
    finally:
        await amqp.delete_queue(present)
