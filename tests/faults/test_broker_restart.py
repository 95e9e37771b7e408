"""A broker restart under load: a client publishing, an ``aioqueue worker`` consuming.

On a RabbitMQ node of the test's own, restarted while the client is halfway through
its tasks. Every publish the broker confirmed must run (task messages are persistent
in a durable queue), and both sides must come back by themselves. A task may run twice:
one that finished while its ack was on the way when the connection dropped is delivered
again (at-least-once); the test counts those and prints them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioqueue import AioQueueError
from tests.faults.rabbit_node import Node, node_or_skip
from tests.faults.worker_app import create_app
from tests.helpers import eventually
from tests.processes import ONE_LOOP, WorkerProcesses

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

TASKS = 300


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with node_or_skip("restart", tcp_port=5716, dist_port=25716) as node:
        yield node


def _ran(log: Path) -> Counter[int]:
    """How many times each ``faults.add(i, 0)`` ran, from the workers' run log."""
    if not log.exists():
        return Counter()
    return Counter(
        int(line.split(" ", 2)[2].split(",")[0])
        for line in log.read_text().splitlines()
        if line.startswith("add ")
    )


@pytest.mark.timeout(400)
async def test_no_confirmed_task_is_lost_across_a_restart(
    node: Node, tmp_path: Path, worker_processes: WorkerProcesses
) -> None:
    queue = f"restart.{uuid.uuid4().hex[:8]}"
    log = tmp_path / "runs.log"
    env = {
        "AIOQUEUE_TEST_BROKER": node.url,
        "AIOQUEUE_TEST_QUEUE": queue,
        "AIOQUEUE_TEST_LOG": str(log),
    }
    worker = await worker_processes.start(
        "tests.faults.worker_app:app", "-Q", queue, "-c", "20", env=env
    )
    client = create_app(node.url, queue)
    add = client.tasks["faults.add"]
    confirmed: list[int] = []
    refused: list[str] = []
    async with client:
        first = client.transport.generation
        restart: asyncio.Task[None] | None = None
        i = 0
        # Publishing goes on until the restart is over, then up to TASKS at least.
        while i < TASKS or (restart is not None and not restart.done()):
            if i == TASKS // 6:
                restart = asyncio.create_task(asyncio.to_thread(node.restart_app))
            try:
                await add.delay(i, 0)
            except AioQueueError as exc:
                # Not confirmed: the caller knows it was not sent, nothing is promised.
                refused.append(f"{i}: {exc}")
            else:
                confirmed.append(i)
            i += 1
        assert restart is not None
        await restart
        assert client.transport.generation > first  # the client did lose its connection
        await eventually(lambda: set(confirmed) <= set(_ran(log)), timeout=180)
        # Both sides are back: a task sent now runs and its result comes back.
        assert await (await add.delay(10_000, 1)).get(timeout=120) == 10_001
    assert worker.returncode is None, worker.stderr()
    ran = _ran(log)
    twice = {i: n for i, n in ran.items() if n > 1}
    print(
        f"\n{len(confirmed)} of {i} publishes confirmed, {len(refused)} refused; "
        f"{len(twice)} ran more than once (redelivered: their ack was lost in the "
        f"restart): {sorted(twice)}"
    )
    assert set(confirmed) <= set(ran)
    assert "reconnected" in worker.stderr()
