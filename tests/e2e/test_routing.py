"""Routing on both brokers: task_routes to queues consumed by different workers, topic
and headers exchanges, broadcasts to every worker, unroutable messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from aioqueue import App, Binding, Broadcast, Exchange, Queue, UnroutableError
from aioqueue.transport.amqp import AmqpTransport
from aioqueue.transport.base import Transport
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

TIMEOUT = 20


@pytest.fixture
async def names(broker: str | Transport, queue_name: str) -> AsyncIterator[Callable[[str], str]]:
    """``names("qa")``: a queue or exchange name of this test; removed afterwards."""
    made: list[str] = []

    def name(suffix: str) -> str:
        made.append(f"{queue_name}.{suffix}")
        return made[-1]

    yield name
    if isinstance(broker, str):
        transport = AmqpTransport(broker)
        try:
            for made_name in made:
                await transport.delete_queue(made_name)
                await transport.delete_queue(f"{made_name}.dlq")
                await transport.delete_exchange(made_name)
        finally:
            await transport.aclose()


def _recorder(app: App, seen: list[tuple[str, Any]], label: str, name: str = "r.record") -> Any:
    @app.task(name=name)
    async def record(value: Any) -> str:
        seen.append((label, value))
        return label

    return record


async def test_task_routes_send_each_task_to_the_workers_of_its_queue(
    make_app: MakeApp, names: Callable[[str], str]
) -> None:
    qa, qb = names("qa"), names("qb")
    routes = {"r.a": qa, "r.b.*": {"queue": qb}}
    seen: list[tuple[str, Any]] = []
    client = make_app("client", task_routes=routes)
    worker_a = make_app("wa", task_routes=routes)
    worker_b = make_app("wb", task_routes=routes)
    for label, app in (("A", worker_a), ("B", worker_b)):
        _recorder(app, seen, label, "r.a")
        _recorder(app, seen, label, "r.b.x")
    async with client, worker_a, worker_b:
        async with worker_a.worker(queues=[qa]), worker_b.worker(queues=[qb]):
            sent = [await client.send_task("r.a", [i]) for i in range(5)]
            sent += [await client.send_task("r.b.x", [i]) for i in range(5)]
            labels = [await r.get(timeout=TIMEOUT) for r in sent]
    assert labels == ["A"] * 5 + ["B"] * 5
    assert sorted(seen) == sorted([("A", i) for i in range(5)] + [("B", i) for i in range(5)])


async def test_topic_exchange_reaches_every_matching_queue(
    make_app: MakeApp, names: Callable[[str], str]
) -> None:
    orders = Exchange(names("orders"), "topic")
    by_kind = Queue(names("by-kind"), exchange=orders, routing_key="orders.*")
    created = Queue(names("created"), bindings=[Binding(orders, "*.created")])
    seen: list[tuple[str, Any]] = []
    app = make_app("topic", queues=[by_kind, created])
    _recorder(app, seen, "any")
    async with app, app.worker(queues=[by_kind, created]):

        async def send(key: str) -> None:
            result = await app.send_task("r.record", [key], exchange=orders.name, routing_key=key)
            await result.get(timeout=TIMEOUT)

        await send("orders.created")  # both queues
        await send("invoices.created")  # *.created only
        await send("orders.paid")  # orders.* only
        with pytest.raises(UnroutableError) as caught:
            await app.send_task(
                "r.record", ["x"], exchange=orders.name, routing_key="invoices.paid"
            )
        assert caught.value.exchange == orders.name
        assert caught.value.routing_key == "invoices.paid"
        assert orders.name in str(caught.value) and "invoices.paid" in str(caught.value)
        await eventually(lambda: len(seen) == 4)
        await anyio.sleep(0.2)  # nothing more arrives
    assert sorted(v for _, v in seen) == sorted(
        ["orders.created", "orders.created", "invoices.created", "orders.paid"]
    )


async def test_headers_exchange_routes_by_header_match(
    make_app: MakeApp, names: Callable[[str], str]
) -> None:
    docs = Exchange(names("docs"), "headers")
    pdf = Queue(names("pdf"), bindings=[Binding(docs, headers={"format": "pdf", "lang": "en"})])
    either = Queue(
        names("either"),
        bindings=[Binding(docs, headers={"format": "csv", "lang": "fr"}, match="any")],
    )
    seen: list[tuple[str, Any]] = []
    app = make_app("headers", queues=[pdf, either])
    _recorder(app, seen, "any")
    async with app, app.worker(queues=[pdf, either]):

        async def send(value: str, **headers: str) -> None:
            result = await app.send_task("r.record", [value], exchange=docs.name, headers=headers)
            await result.get(timeout=TIMEOUT)

        await send("pdf-en", format="pdf", lang="en")  # pdf (all) only
        await send("pdf-fr", format="pdf", lang="fr")  # either (any: lang)
        with pytest.raises(UnroutableError):
            await app.send_task("r.record", ["no"], exchange=docs.name, headers={"format": "doc"})
        await eventually(lambda: len(seen) == 2)
    assert sorted(v for _, v in seen) == ["pdf-en", "pdf-fr"]


async def test_broadcast_runs_once_on_each_worker(make_app: MakeApp, queue_name: str) -> None:
    reload = Broadcast(f"{queue_name}.reload")
    seen: list[tuple[str, Any]] = []
    client = make_app("client", queues=[reload], task_routes={"r.record": reload.name})
    with pytest.raises(UnroutableError):  # nobody listens yet
        async with client:
            await client.send_task("r.record", ["early"])
    workers = [make_app(f"w{i}", queues=[reload]) for i in range(3)]
    for i, app in enumerate(workers):
        _recorder(app, seen, f"w{i}")
    async with client, workers[0], workers[1], workers[2]:
        running = [app.worker(queues=[reload.name]) for app in workers]
        for worker in running:
            await worker.start()
        try:
            # The worker's own queue is exclusive, named after the broadcast.
            assert all(w.describe()[-1][1].startswith(reload.name) for w in running)
            await client.send_task("r.record", ["hello"], ignore_result=True)
            await eventually(lambda: len(seen) == 3)
            await anyio.sleep(0.3)  # and no more
        finally:
            for worker in running:
                await worker.stop()
    assert sorted(seen) == [("w0", "hello"), ("w1", "hello"), ("w2", "hello")]


async def test_a_worker_consumes_every_queue_of_the_app_unless_excluded(
    make_app: MakeApp, names: Callable[[str], str], queue_name: str
) -> None:
    qa, qb = Queue(names("qa")), Queue(names("qb"))
    app = make_app("all", queues=[qa, qb])
    assert [q.name for q in app.worker().queues] == [queue_name, qa.name, qb.name]
    assert [q.name for q in app.worker(exclude=[queue_name]).queues] == [qa.name, qb.name]
    seen: list[tuple[str, Any]] = []
    _recorder(app, seen, "w")
    async with app, app.worker(exclude=[qb.name]):
        for queue in (queue_name, qa.name):
            assert await (await app.send_task("r.record", [queue], queue=queue)).get(
                timeout=TIMEOUT
            )
        # qb is not consumed: its message waits.
        await app.send_task("r.record", ["waits"], queue=qb.name)
        await anyio.sleep(0.3)
    assert sorted(v for _, v in seen) == sorted([queue_name, qa.name])
