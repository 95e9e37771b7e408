"""Results that wait for a caller through a broker restart: ``App(result_persistent=True)``.

On a RabbitMQ node of the test's own: the caller sends tasks, then its network goes (a
proxy between it and the node refuses it), a worker process runs every task while the caller
cannot read, the node restarts, the caller's network comes back, and the caller gets
every result. Without ``result_persistent`` the same restart loses them, which shows the
test can fail.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioqueue import App
from aioqueue.transport.amqp import AmqpTransport
from tests.faults.rabbit_node import Node, node_or_skip
from tests.helpers import eventually
from tests.processes import ONE_LOOP, WorkerProcesses
from tests.transport._support import Proxy

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

TASKS = 40


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with node_or_skip("results", tcp_port=5714, dist_port=25714) as node:
        yield node


async def _results_wait_through_a_restart(
    node: Node, workers: WorkerProcesses, tmp_path: Path, persistent: bool
) -> list[int] | int:
    """The caller's results after the restart, or (not persistent) how many messages
    its reply queue still held after it."""
    proxy = Proxy(node.url)
    await proxy.start()
    queue = f"results.{uuid.uuid4().hex[:8]}"
    # The caller reconnects quickly once its network is back.
    transport = AmqpTransport(proxy.url, reconnect_interval=0.2, reconnect_max=1.0)
    caller = App("results", broker=transport, default_queue=queue, result_persistent=persistent)
    env = {
        "AIOQUEUE_TEST_BROKER": node.url,
        "AIOQUEUE_TEST_QUEUE": queue,
        "AIOQUEUE_TEST_LOG": str(tmp_path / "runs.log"),
    }
    try:
        async with caller:
            sent = [await caller.send_task("faults.add", args=[i, i]) for i in range(TASKS)]
            reply_queue = caller.results.reply_to
            assert reply_queue is not None
            await proxy.refuse()  # the caller cannot read from here on
            # The worker publishes its results as workers do, transient.
            worker = await workers.start("tests.faults.worker_app:app", "-Q", queue, env=env)
            await eventually(
                lambda: asyncio.to_thread(lambda: node.messages(reply_queue) >= TASKS),
                timeout=90,
            )
            await worker.stop()
            await asyncio.to_thread(node.restart_app)
            if not persistent:
                return await asyncio.to_thread(node.messages, reply_queue)
            await proxy.start()
            return [await r.get(timeout=120) for r in sent]
    finally:
        await proxy.aclose()
        await caller.transport.aclose()


@pytest.mark.timeout(300)
async def test_results_survive_a_restart_when_persistent(
    node: Node, worker_processes: WorkerProcesses, tmp_path: Path
) -> None:
    values = await _results_wait_through_a_restart(
        node, worker_processes, tmp_path, persistent=True
    )
    assert values == [2 * i for i in range(TASKS)]


@pytest.mark.timeout(300)
async def test_without_persistence_a_restart_loses_waiting_results(
    node: Node, worker_processes: WorkerProcesses, tmp_path: Path
) -> None:
    left = await _results_wait_through_a_restart(node, worker_processes, tmp_path, persistent=False)
    assert left == 0
