"""Worker processes as users run them: ``python -m aioqueue.cli worker -A module:app``.

The app is ``tests/amqp/worker_app.py``, configured through environment variables; each
task run appends a line to a marker file in the test's ``tmp_path``, which tells the
test how often each task ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from aioqueue import App, AsyncResult
from tests.helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.amqp.worker_app:app"
# Generous, only there so that a broken test fails (inside pytest's 60 s) instead of hanging.
TIMEOUT = 20


@pytest.fixture
def anyio_backend() -> Any:
    # The workers under test are subprocesses; one event loop for the test side is enough.
    return ("asyncio", {"use_uvloop": False})


@dataclass
class WorkerProcess:
    process: anyio.abc.Process
    banner: str
    log: Path

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        with anyio.fail_after(TIMEOUT):
            return await self.process.wait()


@asynccontextmanager
async def worker_process(
    amqp_url: str, queue: str, marks: Path, *args: str
) -> AsyncIterator[WorkerProcess]:
    """A worker subprocess, started and past its banner; killed on exit if still running."""
    env = {
        **os.environ,
        "AIOQUEUE_TEST_BROKER": amqp_url,
        "AIOQUEUE_TEST_QUEUE": queue,
        "AIOQUEUE_TEST_MARKS": str(marks),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "aioqueue.cli", "worker", "-A", APP, *args]
    log = marks.parent / f"worker-{len(list(marks.parent.glob('worker-*.log')))}.log"
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
        )
    try:
        banner = await _read_banner(process, log)
        yield WorkerProcess(process, banner, log)
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.fail_after(TIMEOUT):
                await process.wait()
        await process.aclose()


async def _read_banner(process: anyio.abc.Process, log: Path) -> str:
    """The banner the worker prints once it consumes: a block between two rules."""
    assert process.stdout is not None
    text = ""
    with anyio.fail_after(TIMEOUT):
        while sum(1 for line in text.splitlines() if line and set(line) == {"-"}) < 2:
            try:
                text += (await process.stdout.receive()).decode()
            except anyio.EndOfStream:
                raise AssertionError(
                    f"the worker exited before its banner:\n{text}\n{_log_text(log)}"
                ) from None
    return text


def _runs(marks: Path) -> dict[str, int]:
    """How many times each task started, by marker name."""
    return {p.name: len(p.read_text().splitlines()) for p in marks.iterdir()}


def _log_text(log: Path) -> str:
    return log.read_text(errors="replace")


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


async def test_sigkill_mid_work_loses_no_task(amqp_url: str, amqp_queue: str, marks: Path) -> None:
    n = 20
    client = App("process-client", broker=amqp_url, default_queue=amqp_queue)
    async with client:
        async with worker_process(amqp_url, amqp_queue, marks, "-c", "5") as first:
            results: list[AsyncResult[Any]] = [
                await client.send_task("process.slow_multiply", [i, i + 1, 0.5 + (i % 5) / 10])
                for i in range(n)
            ]
            # The shortest of the first five is done: the other four are mid-work.
            assert await results[0].get(timeout=TIMEOUT) == 0
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        started_before_kill = _runs(marks)
        assert 1 < len(started_before_kill) < n

        async with worker_process(amqp_url, amqp_queue, marks, "-c", "5") as second:
            values = [await r.get(timeout=TIMEOUT) for r in results]
            assert await second.stop() == 0

    assert values == [i * (i + 1) for i in range(n)]
    runs = _runs(marks)
    assert sorted(runs) == sorted(f"{i}-{i + 1}" for i in range(n))
    # The tasks the killed worker was running were delivered again and run again.
    assert sum(runs.values()) > n
    assert any(runs[name] > 1 for name in started_before_kill)


async def test_sigterm_drains_running_tasks(amqp_url: str, amqp_queue: str, marks: Path) -> None:
    n = 5
    client = App("process-client", broker=amqp_url, default_queue=amqp_queue)
    async with client:
        async with worker_process(amqp_url, amqp_queue, marks, "-c", str(n)) as worker:
            results: list[AsyncResult[Any]] = [
                await client.send_task("process.slow_multiply", [i, i + 1, 1.0]) for i in range(n)
            ]
            await eventually(lambda: len(_runs(marks)) == n, TIMEOUT)  # all of them running
            assert await worker.stop(signal.SIGTERM) == 0, _log_text(worker.log)
        # No worker runs any more: these results come from the drained one.
        values = [await r.get(timeout=TIMEOUT) for r in results]
    assert values == [i * (i + 1) for i in range(n)]
    assert _runs(marks) == {f"{i}-{i + 1}": 1 for i in range(n)}


async def test_banner_masks_the_password_and_lists_queue_and_tasks(
    amqp_url: str, amqp_queue: str, marks: Path
) -> None:
    assert ":guest@" in amqp_url  # the password the banner must hide
    async with worker_process(amqp_url, amqp_queue, marks, "-c", "7") as worker:
        assert await worker.stop() == 0
    banner = worker.banner
    lines = {line.split()[0]: line for line in banner.splitlines() if line.strip()}

    assert ":guest@" not in banner
    assert "guest:****@" in lines["broker"]
    assert amqp_url.replace(":guest@", ":****@") in lines["broker"]
    assert amqp_queue in lines["queue"]
    assert "concurrency" in lines and " 7 " in lines["concurrency"]
    assert "process.slow_multiply" in banner
    assert "process.blocking_multiply" in banner
