"""Routing with worker processes as users run them: ``-Q`` and ``-X``, the banner's
bindings, a broadcast reaching each of three workers, a topic route."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from aioqueue import App, UnroutableError
from aioqueue.transport.amqp import AmqpTransport
from tests.faults.routing_app import create_app
from tests.helpers import eventually
from tests.processes import ONE_LOOP, WorkerProcesses

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

APP = "tests.faults.routing_app:app"
TIMEOUT = 20


class Runs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def of(self, task: str) -> list[tuple[int, str]]:
        """``(pid, value)`` of each run of ``task``."""
        if not self.path.exists():
            return []
        lines = (line.split(" ", 2) for line in self.path.read_text().splitlines())
        return [(int(pid), value) for name, pid, value in lines if name == task]


@pytest.fixture
async def client(amqp_url: str, queue_name: str) -> AsyncIterator[App]:
    app = create_app(amqp_url, queue_name)
    async with app:
        yield app
    transport = AmqpTransport(amqp_url)
    try:
        for suffix in ("", ".qa", ".qb", ".orders", ".reload"):
            for name in (f"{queue_name}{suffix}", f"{queue_name}{suffix}.dlq"):
                await transport.delete_queue(name)
            await transport.delete_exchange(f"{queue_name}{suffix}")
    finally:
        await transport.aclose()


def _env(amqp_url: str, queue_name: str, log: Path) -> dict[str, str]:
    return {
        "AIOQUEUE_TEST_BROKER": amqp_url,
        "AIOQUEUE_TEST_QUEUE": queue_name,
        "AIOQUEUE_TEST_LOG": str(log),
    }


async def test_workers_consume_only_their_queues(
    amqp_url: str, queue_name: str, client: App, tmp_path: Path, worker_processes: WorkerProcesses
) -> None:
    env = _env(amqp_url, queue_name, tmp_path / "runs.log")
    runs = Runs(tmp_path / "runs.log")
    only_a = await worker_processes.start(APP, "-Q", f"{queue_name}.qa", env=env)
    only_b = await worker_processes.start(APP, "-Q", f"{queue_name}.qb", env=env)
    rest = await worker_processes.start(
        APP, "-X", f"{queue_name}.qa,{queue_name}.qb,{queue_name}.reload", env=env
    )
    results = []
    for i in range(10):
        for task in ("routing.a", "routing.b", "routing.order"):
            results.append(await client.tasks[task].delay(i))
    with anyio.fail_after(TIMEOUT):
        assert [await r.get() for r in results] == [i for i in range(10) for _ in range(3)]
    assert {pid for pid, _ in runs.of("routing.a")} == {only_a.pid}
    assert {pid for pid, _ in runs.of("routing.b")} == {only_b.pid}
    assert {pid for pid, _ in runs.of("routing.order")} == {rest.pid}

    # The banner lists each queue with its exchange, type and bindings.
    queues = [
        line.split(None, 1)[1]
        for line in rest.banner.splitlines()
        if line.strip().startswith("queue ")
    ]
    assert queues == [
        f"{queue_name} <- {queue_name} (direct) key {queue_name!r}",
        f"{queue_name}.orders <- {queue_name}.orders (topic) key 'orders.*'",
    ]
    (line_a,) = [line for line in only_a.banner.splitlines() if line.strip().startswith("queue ")]
    assert "x-max-priority=5" in line_a


async def test_a_broadcast_runs_once_on_each_of_three_workers(
    amqp_url: str, queue_name: str, client: App, tmp_path: Path, worker_processes: WorkerProcesses
) -> None:
    env = _env(amqp_url, queue_name, tmp_path / "runs.log")
    runs = Runs(tmp_path / "runs.log")
    workers = await worker_processes.start_many(3, APP, "-Q", f"{queue_name}.reload", env=env)
    for i in range(5):
        await client.tasks["routing.reload"].apply_async((i,), ignore_result=True)
    await eventually(lambda: len(runs.of("routing.reload")) == 15)
    await anyio.sleep(0.5)  # and no more
    counts = Counter(runs.of("routing.reload"))
    assert counts == Counter({(w.pid, str(i)): 1 for w in workers for i in range(5)})
    # Each worker's queue is its own and goes with it.
    for worker in workers:
        assert await worker.stop() == 0
    with pytest.raises(UnroutableError):
        await client.tasks["routing.reload"].apply_async((99,), ignore_result=True)
