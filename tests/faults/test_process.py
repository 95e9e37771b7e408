"""Worker processes as users run them: ``python -m aioqueue.cli worker -A module:app``.

Killed mid-work, stopped with one signal or two, started without uvloop, cut off from
their queue: a worker loses no task, exits with a status that says what happened, and
prints no traceback of its own.
"""

from __future__ import annotations

import importlib.util
import signal
from typing import Any

import anyio
import pytest

from aioqueue import AsyncResult
from tests.faults.conftest import Cluster
from tests.helpers import eventually
from tests.processes import ONE_LOOP, TIMEOUT

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

# The CLI with uvloop made unimportable: ``import uvloop`` raises ModuleNotFoundError.
WITHOUT_UVLOOP = (
    "-c",
    "import importlib.util, sys; sys.modules['uvloop'] = None; "
    "assert importlib.util.find_spec('uvloop') is None; "
    "from aioqueue.cli import main; raise SystemExit(main())",
)


async def test_sigkill_mid_work_loses_no_task(cluster: Cluster) -> None:
    n = 20
    first = await cluster.start("-c", "5")
    results: list[AsyncResult[Any]] = [
        await cluster.client.send_task("faults.slow_multiply", [i, i + 1, 0.5 + (i % 5) / 10])
        for i in range(n)
    ]
    # The shortest of the first five is done: the other four are mid-work.
    assert await results[0].get(timeout=TIMEOUT) == 0
    assert await first.kill() == -signal.SIGKILL
    started_before_kill = cluster.counts("multiply")
    assert 1 < len(started_before_kill) < n

    second = await cluster.start("-c", "5")
    values = [await r.get(timeout=TIMEOUT) for r in results]
    assert await second.stop() == 0, second.stderr()

    assert values == [i * (i + 1) for i in range(n)]
    runs = cluster.counts("multiply")
    assert sorted(runs) == sorted(f"{i}-{i + 1}" for i in range(n))
    # The tasks the killed worker was running were delivered again and run again.
    assert sum(runs.values()) > n
    assert any(runs[name] > 1 for name in started_before_kill)


async def test_sigterm_drains_running_tasks(cluster: Cluster) -> None:
    n = 5
    worker = await cluster.start("-c", str(n))
    results: list[AsyncResult[Any]] = [
        await cluster.client.send_task("faults.slow_multiply", [i, i + 1, 1.0]) for i in range(n)
    ]
    await eventually(lambda: len(cluster.counts("multiply")) == n, TIMEOUT)  # all running
    assert await worker.stop(signal.SIGTERM) == 0, worker.stderr()
    # No worker runs any more: these results come from the drained one.
    values = [await r.get(timeout=TIMEOUT) for r in results]
    assert values == [i * (i + 1) for i in range(n)]
    assert cluster.counts("multiply") == {f"{i}-{i + 1}": 1 for i in range(n)}
    assert "Traceback" not in worker.stderr()


async def test_a_second_sigterm_stops_waiting_for_running_tasks(cluster: Cluster) -> None:
    worker = await cluster.start("-c", "2", "--shutdown-timeout", "60")
    await cluster.client.send_task("faults.slow_multiply", [1, 2, 60])
    await eventually(lambda: bool(cluster.runs("multiply")), TIMEOUT)
    worker.send_signal(signal.SIGTERM)
    # The first signal is handled (the worker says it stops) while the task still runs.
    await eventually(lambda: "stopping" in worker.stderr(), TIMEOUT)
    assert worker.returncode is None
    with anyio.fail_after(10):  # well before the task or the shutdown timeout ends
        assert await worker.stop(signal.SIGTERM) == 0, worker.stderr()
    assert "Traceback" not in worker.stderr()
    assert "CancelledError" not in worker.stderr()


async def test_banner_masks_the_password_and_lists_queue_and_tasks(cluster: Cluster) -> None:
    assert ":guest@" in cluster.amqp_url  # the password the banner must hide
    worker = await cluster.start("-c", "7")
    assert await worker.stop() == 0
    banner = worker.banner
    lines = {line.split()[0]: line for line in banner.splitlines() if line.strip()}

    assert ":guest@" not in banner
    assert "guest:****@" in lines["broker"]
    assert cluster.amqp_url.replace(":guest@", ":****@") in lines["broker"]
    assert cluster.queue in lines["queue"]
    assert "concurrency" in lines and " 7 " in lines["concurrency"]
    assert "faults.slow_multiply" in banner
    assert "faults.blocking_multiply" in banner
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    assert f"{loop} event loop" in lines["python"]


async def test_without_uvloop_remote_tracebacks_are_the_tasks_own(cluster: Cluster) -> None:
    worker = await cluster.start("-c", "2", launcher=WITHOUT_UVLOOP)
    assert "asyncio event loop" in worker.banner

    result = await cluster.task("boom").delay(3)
    with pytest.raises(ValueError, match="boom 3") as caught:
        await result.get(timeout=TIMEOUT)
    (note,) = caught.value.__notes__
    assert "ValueError: boom 3" in note
    # Nothing of how the worker's event loop was chosen leaks into a task's traceback.
    assert "uvloop" not in note
    assert "ModuleNotFoundError" not in note
    assert "During handling" not in note
    assert await (await cluster.task("add").delay(1, 2)).get(timeout=TIMEOUT) == 3
    assert await worker.stop() == 0, worker.stderr()
    # The one traceback the worker prints is the task's own, in its ERROR line.
    text = worker.stderr()
    assert text.count("Traceback") == 1, text
    assert "raised ValueError: boom 3\nTraceback" in text
    assert "uvloop" not in text.split("raised ValueError")[1]


async def test_a_worker_whose_queue_is_deleted_exits_with_status_1(cluster: Cluster) -> None:
    worker = await cluster.start("-c", "2")
    await cluster.client.transport.delete_queue(cluster.queue)
    assert await worker.wait() == 1
    assert cluster.queue in worker.stderr()
