"""The broker dropping the worker's connection, or killing the worker, mid-work.

A task that finishes after its channel died cannot be acked and is redelivered: a
worker that survived the drop publishes the outcome it has instead of running the task
again (``aioqueue.worker.finished``). A worker killed before its acks is another
matter: the broker gives its tasks to the next worker, which runs them again
(at least once).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections import Counter
from typing import Any

import anyio
import pytest

from aioqueue import AsyncResult
from aioqueue.results.rpc import RpcBackend
from aioqueue.transport.base import Envelope
from tests.faults.conftest import Cluster
from tests.helpers import close_connections, eventually
from tests.processes import ONE_LOOP

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.amqp,
    ONE_LOOP,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"),
]

# Generous: the machine is shared and 500 tasks go through a reconnection.
RESULTS_TIMEOUT = 180


async def send_many(cluster: Cluster, n: int, seconds: float) -> list[AsyncResult[Any]]:
    slow_add = cluster.task("slow_add")
    return [await slow_add.delay(i, 1_000, seconds) for i in range(n)]


async def gather_values(results: list[AsyncResult[Any]]) -> list[Any]:
    with anyio.fail_after(RESULTS_TIMEOUT):
        return list(await asyncio.gather(*(r.get(timeout=RESULTS_TIMEOUT) for r in results)))


def twice(runs: Counter[str]) -> list[str]:
    return sorted((x for x, count in runs.items() if count > 1), key=int)


@pytest.mark.timeout(400)
async def test_dropped_connection_mid_work_loses_nothing_and_runs_nothing_twice(
    cluster: Cluster,
) -> None:
    n = 500
    worker = await cluster.start("-c", "50")
    results = await send_many(cluster, n, 1.0)
    # Fifty are running (1 s each, 10 s in all) when the broker drops the connection:
    # those finish after their channel died.
    await eventually(lambda: len(cluster.counts("done")) >= 50, timeout=120)
    # Taken before the drop: rabbitmqctl can return after the running tasks have ended.
    running_at_drop = set(cluster.counts("start")) - set(cluster.counts("done"))
    await asyncio.to_thread(close_connections, cluster.amqp_url)

    values = await gather_values(results)
    assert values == [i + 1_000 for i in range(n)]
    await cluster.quiet()
    starts, dones = cluster.counts("start"), cluster.counts("done")
    # None lost: every task ran to its end.
    assert set(dones) == {str(i) for i in range(n)}
    # The drop reached the worker while tasks ran: their redeliveries were not run.
    assert running_at_drop, "no task was running when the connection was dropped"
    assert "finished here already" in worker.stderr(), "no redelivery of a task run here"
    assert twice(starts) == [], f"ran twice: {twice(starts)}"
    assert sum(starts.values()) == n
    assert worker.returncode is None  # it survived the drop
    print(
        f"\n{len(running_at_drop)} task(s) running at the drop, "
        f"{worker.stderr().count('finished here already')} redelivery(ies) not run again, "
        f"{sum(starts.values())} runs for {n} tasks"
    )
    assert await worker.stop() == 0, worker.stderr()


@pytest.mark.timeout(300)
async def test_sigkilled_worker_with_200_in_flight_second_worker_completes_all(
    cluster: Cluster,
) -> None:
    n = 200
    first = await cluster.start("-c", "200")
    results = await send_many(cluster, n, 1.0)
    # Every one of them is running (1 s each) in the first worker when it is killed.
    await eventually(lambda: len(cluster.counts("start")) == n, timeout=120)
    assert await first.kill() == -9
    done_before_kill = set(cluster.counts("done"))

    second = await cluster.start("-c", "200")
    values = await gather_values(results)
    assert values == [i + 1_000 for i in range(n)]
    await cluster.quiet()
    assert await second.stop() == 0, second.stderr()

    runs = cluster.counts("start")
    assert set(cluster.counts("done")) == {str(i) for i in range(n)}
    # At least once: what was in flight (not acked) when the worker died ran again in
    # the second worker; a task whose ack had reached the broker did not.
    ran_twice = set(twice(runs))
    acked_before_kill = {str(i) for i in range(n)} - ran_twice
    assert ran_twice, "the killed worker's tasks did not run again"
    assert all(runs[x] <= 2 for x in runs)
    assert acked_before_kill <= done_before_kill
    print(f"\n{len(ran_twice)} of {n} tasks ran twice (in flight at the SIGKILL)")


async def test_second_final_state_for_a_task_is_ignored_by_the_caller(cluster: Cluster) -> None:
    """A worker may publish a final state twice (its confirm lost with its connection):
    the caller's rpc backend hands out the first and ignores the second."""
    client = cluster.client
    results = client.results
    assert isinstance(results, RpcBackend)
    await results.start()  # as sending a task does: the reply queue exists
    reply_to = results.reply_to
    task_id, marker = str(uuid.uuid4()), str(uuid.uuid4())

    def state(tid: str, value: int) -> Envelope:
        body = {"status": "SUCCESS", "result": value, "traceback": None, "children": []}
        return Envelope(
            body=json.dumps({**body, "task_id": tid}).encode(),
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=tid,
            persistent=False,
        )

    await client.broker.send(state(task_id, 1), reply_to)
    assert await AsyncResult(task_id, results).get(timeout=30) == 1
    await client.broker.send(state(task_id, 2), reply_to)
    # Published after the duplicate on the same queue: once it is read, so was that.
    await client.broker.send(state(marker, 3), reply_to)
    assert await AsyncResult(marker, results).get(timeout=30) == 3
    assert results.state(task_id) is None
