"""Fault tests: worker processes killed, stopped, cut off; the broker dropping connections.

``cluster`` runs ``tests/faults/worker_app.py`` in worker subprocesses on the test's
queue of the session's RabbitMQ vhost, with a client app built by the same
``create_app``. Every task run appends a line with the worker's pid to a run log, which
tells a test which workers took part and how many times something ran.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioqueue import App
from aioqueue.topology import CHORD_PREFIX
from tests.faults.worker_app import create_app
from tests.helpers import delete_topology
from tests.processes import CLI, TIMEOUT, WorkerProcess, WorkerProcesses

APP = "tests.faults.worker_app:app"


@dataclass
class Cluster:
    """Worker processes on one queue, the client app, and the run log."""

    amqp_url: str
    queue: str
    log: Path
    client: App
    processes: WorkerProcesses
    chords: list[str] = field(default_factory=list)  # group ids, to remove their queues

    @property
    def env(self) -> dict[str, str]:
        return {
            "AIOQUEUE_TEST_BROKER": self.amqp_url,
            "AIOQUEUE_TEST_QUEUE": self.queue,
            "AIOQUEUE_TEST_LOG": str(self.log),
        }

    def task(self, name: str) -> Any:
        """The client's task ``faults.<name>``."""
        return self.client.tasks[f"faults.{name}"]

    async def start(self, *args: str, launcher: tuple[str, ...] = CLI) -> WorkerProcess:
        """A worker process on the queue, returned once it consumes (past its banner)."""
        return await self.processes.start(
            APP, "-Q", self.queue, *args, env=self.env, launcher=launcher
        )

    async def start_many(self, n: int, *args: str) -> list[WorkerProcess]:
        return await self.processes.start_many(n, APP, "-Q", self.queue, *args, env=self.env)

    def runs(self, what: str) -> list[tuple[int, str]]:
        """``(pid, detail)`` of every logged run of ``what``."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            kind, pid, detail = (line.split(" ", 2) + [""])[:3]
            if kind == what:
                out.append((int(pid), detail))
        return out

    def counts(self, what: str) -> Counter[str]:
        """How many times ``what`` ran, by detail."""
        return Counter(detail for _, detail in self.runs(what))

    def pids(self, what: str) -> set[int]:
        return {pid for pid, _ in self.runs(what)}

    async def quiet(self, for_checks: int = 4) -> None:
        """Wait until the run log stops growing (a few checks 0.2 s apart), so that work
        still in flight after a result arrived (a redelivered member) shows up."""
        with anyio.fail_after(TIMEOUT):
            seen, still = -1, 0
            while still < for_checks:
                size = self.log.stat().st_size if self.log.exists() else 0
                still = still + 1 if size == seen else 0
                seen = size
                await anyio.sleep(0.2)

    async def leftover_tasks(self) -> list[str]:
        """Names of the task messages still in the queue (taken out of it)."""
        batch = await self.client.transport.take_all(self.queue, min_count=0)
        assert batch is not None
        names = [str(e.headers.get("task")) for e in batch.envelopes]
        await batch.commit([])
        return names


@pytest.fixture
async def cluster(
    amqp_url: str, queue_name: str, tmp_path: Path, worker_processes: WorkerProcesses
) -> AsyncIterator[Cluster]:
    """Worker processes started on demand, a client, and the queues removed at the end."""
    client = create_app(amqp_url, queue_name)
    state = Cluster(amqp_url, queue_name, tmp_path / "runs.log", client, worker_processes)
    try:
        async with client:
            try:
                yield state
            finally:
                await worker_processes.aclose()
                for group_id in state.chords:
                    await client.transport.delete_queue(f"{CHORD_PREFIX}{group_id}")
    finally:
        await delete_topology(amqp_url, queue_name)
