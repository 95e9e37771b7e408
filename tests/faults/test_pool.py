"""Worker pools as users run them: ``aioqueue worker --processes N``.

A supervisor and N worker children on the test's queue: a child killed with SIGKILL is
replaced and no task is lost; a sync task past its hard time limit fails on the caller
and its process is replaced; children recycle after ``--max-tasks-per-child`` tasks or
above ``--max-memory-per-child``; SIGTERM stops every child (a second one hurries
them) and leaves none behind. Child pids come from the pool's banner and from the
supervisor's process tree.
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from aioqueue import AsyncResult, TimeLimitExceeded
from tests.faults.conftest import Cluster
from tests.helpers import eventually
from tests.processes import ONE_LOOP, TIMEOUT, WorkerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]


def banner_pids(banner: str) -> dict[int, int]:
    """``{index: pid}`` of the children the banner lists (``process 1  pid 123, ...``)."""
    found = re.finditer(r"^\s*process (\d+)\s+pid (\d+)", banner, re.MULTILINE)
    return {int(match[1]): int(match[2]) for match in found}


def children(pool: WorkerProcess) -> set[int]:
    """The supervisor's running children now."""
    try:
        found = psutil.Process(pool.pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {c.pid for c in found if _running(c.pid)}


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def consumes(pool: WorkerProcess, pid: int) -> bool:
    """Whether the supervisor logged that child ``pid`` consumes."""
    return re.search(rf"process \d+ \(pid {pid}\) consumes", pool.stderr()) is not None


async def rest_of_stdout(pool: WorkerProcess) -> str:
    """What the pool printed after its banner, once it has exited."""
    stdout = pool.process.stdout
    assert stdout is not None
    text = b""
    with anyio.fail_after(TIMEOUT):
        while True:
            try:
                text += await stdout.receive()
            except anyio.EndOfStream:
                return text.decode()


async def test_one_banner_lists_the_processes(cluster: Cluster) -> None:
    pool = await cluster.start("--processes", "2", "-c", "3")
    pids = banner_pids(pool.banner)
    assert sorted(pids) == [1, 2]
    assert set(pids.values()) == children(pool)
    lines = {line.split()[0]: line for line in pool.banner.splitlines() if line.strip()}
    assert f"pid {pool.pid})" in lines["aioqueue"]  # the supervisor's own
    assert "3 (prefetch 3) in each process" in lines["concurrency"]
    assert cluster.queue in lines["queue"] and "faults.stuck" in pool.banner
    assert await pool.stop() == 0, pool.stderr()
    # The children printed no banner of their own.
    assert not [line for line in (await rest_of_stdout(pool)).splitlines() if set(line) == {"-"}]


async def test_a_child_killed_with_sigkill_is_replaced_and_no_task_is_lost(
    cluster: Cluster,
) -> None:
    n = 40
    pool = await cluster.start("--processes", "2", "-c", "2")
    first = banner_pids(pool.banner)
    results: list[AsyncResult[Any]] = [
        await cluster.client.send_task("faults.slow_multiply", [i, i + 1, 0.2]) for i in range(n)
    ]
    await eventually(lambda: len(cluster.counts("multiply")) >= 8, TIMEOUT)
    victim = first[1]
    os.kill(victim, signal.SIGKILL)  # mid-work: it holds two tasks

    values = [await r.get(timeout=TIMEOUT) for r in results]
    assert values == [i * (i + 1) for i in range(n)]
    assert sorted(cluster.counts("multiply")) == sorted(f"{i}-{i + 1}" for i in range(n))
    assert f"process 1 (pid {victim}) was killed by SIGKILL; starting another" in pool.stderr()
    await eventually(lambda: len(children(pool) - set(first.values())) == 1, TIMEOUT)
    (replacement,) = children(pool) - set(first.values())
    await eventually(lambda: consumes(pool, replacement), TIMEOUT)
    assert await pool.stop() == 0, pool.stderr()


async def test_a_sync_task_past_its_hard_limit_ends_its_process(cluster: Cluster) -> None:
    pool = await cluster.start("--processes", "2", "-c", "2")
    first = banner_pids(pool.banner)
    result = await cluster.task("stuck").delay(60)  # time_limit=0.5, blocks its thread
    with pytest.raises(TimeLimitExceeded):
        await result.get(timeout=TIMEOUT)
    (stuck,) = cluster.pids("stuck")
    assert stuck in first.values()
    # Its process ends (the thread with it), long before the thread's 60 s sleep would.
    await eventually(lambda: not _running(stuck), TIMEOUT)
    assert "a sync task ran past its hard time limit" in pool.stderr()
    await eventually(lambda: len(children(pool) - set(first.values())) == 1, TIMEOUT)
    (replacement,) = children(pool) - set(first.values())
    await eventually(lambda: consumes(pool, replacement), TIMEOUT)

    # The pool serves on; the failed task was acked, not run again.
    sums = [await (await cluster.task("add").delay(i, 1)).get(timeout=TIMEOUT) for i in range(10)]
    assert sums == [i + 1 for i in range(10)]
    assert len(cluster.runs("stuck")) == 1
    assert await pool.stop() == 0, pool.stderr()


async def test_max_tasks_per_child_recycles_processes(cluster: Cluster) -> None:
    n = 20
    pool = await cluster.start("--processes", "2", "-c", "1", "--max-tasks-per-child", "5")
    first = set(banner_pids(pool.banner).values())
    results: list[AsyncResult[Any]] = [
        await cluster.client.send_task("faults.slow_add", [i, 1, 0.05]) for i in range(n)
    ]
    assert [await r.get(timeout=TIMEOUT) for r in results] == [i + 1 for i in range(n)]

    # A recycle is graceful: every task ran exactly once, none was redelivered.
    assert cluster.counts("done") == {str(i): 1 for i in range(n)}
    per_process = list(Counter(pid for pid, _ in cluster.runs("done")).values())
    assert len(per_process) >= 3, per_process  # 5 each, and the one it held then
    assert max(per_process) < n // 2, per_process
    assert cluster.pids("done") - first  # replacements ran some
    assert "recycled: it processed 5 tasks (--max-tasks-per-child 5)" in pool.stderr()
    assert await pool.stop() == 0, pool.stderr()


async def test_max_memory_per_child_recycles_a_process(cluster: Cluster) -> None:
    pool = await cluster.start("--processes", "1", "-c", "1", "--max-memory-per-child", "150")
    (first,) = banner_pids(pool.banner).values()
    assert await (await cluster.task("hog").delay(160)).get(timeout=TIMEOUT) == 160
    await eventually(lambda: not _running(first), TIMEOUT)
    assert "recycled: its resident memory is" in pool.stderr()
    await eventually(lambda: len(children(pool)) == 1, TIMEOUT)
    (replacement,) = children(pool)
    await eventually(lambda: consumes(pool, replacement), TIMEOUT)
    assert await (await cluster.task("add").delay(2, 3)).get(timeout=TIMEOUT) == 5
    assert await pool.stop() == 0, pool.stderr()


async def test_sigterm_drains_every_child_and_leaves_none(cluster: Cluster) -> None:
    n = 4
    pool = await cluster.start("--processes", "2", "-c", "2")
    pids = set(banner_pids(pool.banner).values())
    results: list[AsyncResult[Any]] = [
        await cluster.client.send_task("faults.slow_multiply", [i, i + 1, 1.0]) for i in range(n)
    ]
    await eventually(lambda: len(cluster.counts("multiply")) == n, TIMEOUT)  # all running
    assert await pool.stop(signal.SIGTERM) == 0, pool.stderr()
    # No worker runs any more: these results come from the drained children.
    assert [await r.get(timeout=TIMEOUT) for r in results] == [i * (i + 1) for i in range(n)]
    assert cluster.counts("multiply") == {f"{i}-{i + 1}": 1 for i in range(n)}
    assert not any(_running(pid) for pid in pids)
    assert "Traceback" not in pool.stderr()


async def test_a_second_sigterm_hurries_the_children(cluster: Cluster) -> None:
    pool = await cluster.start("--processes", "2", "-c", "1", "--shutdown-timeout", "60")
    pids = set(banner_pids(pool.banner).values())
    await cluster.client.send_task("faults.slow_multiply", [1, 2, 60])
    await eventually(lambda: bool(cluster.runs("multiply")), TIMEOUT)
    pool.send_signal(signal.SIGTERM)
    await eventually(lambda: pool.stderr().count("stopping: no new tasks") == 2, TIMEOUT)
    assert pool.returncode is None
    with anyio.fail_after(10):  # well before the task or the shutdown timeout ends
        assert await pool.stop(signal.SIGTERM) == 0, pool.stderr()
    assert not any(_running(pid) for pid in pids)
    assert "Traceback" not in pool.stderr()


async def test_children_stop_when_their_supervisor_is_killed(cluster: Cluster) -> None:
    pool = await cluster.start("--processes", "2", "-c", "2")
    pids = set(banner_pids(pool.banner).values())
    result = await cluster.task("slow_multiply").delay(3, 4, 0.5)
    await eventually(lambda: bool(cluster.runs("multiply")), TIMEOUT)
    assert await pool.kill() == -signal.SIGKILL
    # Each child reads the end of its socket, stops as on SIGTERM (its running task
    # finishes) and exits: none is left behind.
    assert await result.get(timeout=TIMEOUT) == 12
    await eventually(lambda: not any(_running(pid) for pid in pids), TIMEOUT)
    assert "the pool's supervisor is gone; stopping" in pool.stderr()
