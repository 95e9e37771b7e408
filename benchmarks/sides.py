"""The two sides of the comparison, each a client in this process and a worker process.

* aioqueue: ``aioqueue worker -A bench_tasks:app -c N`` started from this directory, as
  users run it, and a client app of its own;
* the ceiling: ``ceiling_worker.py`` (raw aio-pika, prefetch N) and ``ceiling.Client``.

Each run gets queues of its own, warms up with one round trip unless told not to (the
client declares its reply queue on its first send; the ceiling's does so at start) and
deletes its queues.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ceiling
from bench_tasks import QUEUE_ENV, URL_ENV, Bench, make
from worker_process import delete_topology, running, worker_command
from workloads import gather

from aioqueue import chain, group

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 30.0

TaskKind = Literal["add", "nap"]


@dataclass(frozen=True, slots=True)
class Running:
    """A side ready to take a workload: its client, and its worker process's pid."""

    side: AioqueueSide | CeilingSide
    worker_pid: int


class AioqueueSide:
    def __init__(self, bench: Bench) -> None:
        self._bench = bench
        self._fire = bench.add.with_options(ignore_result=True)

    async def call(self, x: int, y: int) -> Awaitable[int]:
        return await self._bench.add.delay(x, y)

    async def send(self, x: int, y: int) -> None:
        await self._fire.delay(x, y)

    async def nap(self, seconds: float) -> Awaitable[object]:
        return await self._bench.nap.delay(seconds)

    async def chain(self, start: int, steps: int) -> Awaitable[int]:
        add = self._bench.add
        return await chain(add.s(start, 1), *(add.s(1) for _ in range(steps - 1))).delay()

    async def group(self, size: int) -> Awaitable[list[int]]:
        return (await group(self._bench.add.s(i, i) for i in range(size)).delay()).get()


class CeilingSide:
    def __init__(self, client: ceiling.Client) -> None:
        self._client = client

    async def call(self, x: int, y: int) -> Awaitable[int]:
        return await self._client.call([x, y])

    async def send(self, x: int, y: int) -> None:
        await self._client.send([x, y])

    async def nap(self, seconds: float) -> Awaitable[object]:
        return await self._client.call([seconds])

    async def chain(self, start: int, steps: int) -> Awaitable[int]:
        return await self._client.call([start, 1], hops=steps)

    async def group(self, size: int) -> Awaitable[list[int]]:
        futures = await gather(self._client.call([i, i]) for i in range(size))
        return gather(futures)


async def _warm_up(side: AioqueueSide | CeilingSide, task: TaskKind) -> None:
    async with asyncio.timeout(START_TIMEOUT):
        await (await (side.nap(0) if task == "nap" else side.call(0, 0)))


def _profiled(profile_to: Path | None) -> list[str]:
    """The interpreter, under ``profiled.py`` writing to ``profile_to`` if given: SIGUSR1
    and SIGUSR2 to the worker start and stop its profile."""
    return [sys.executable, *([str(HERE / "profiled.py"), str(profile_to)] if profile_to else [])]


@asynccontextmanager
async def aioqueue(
    url: str,
    concurrency: int,
    task: TaskKind,
    *,
    events: bool = False,
    log_level: str = "warning",
    profile_to: Path | None = None,
    warm_up: bool = True,
) -> AsyncIterator[Running]:
    """An ``aioqueue worker -c concurrency`` process and a client app, warmed up; with
    ``profile_to``, the worker (``python -m aioqueue.cli``) can be profiled."""
    queue = f"bench.aioqueue.{uuid.uuid4().hex[:12]}"
    command = [*_profiled(profile_to), "-m", "aioqueue.cli"] if profile_to else worker_command()
    argv = [*command, "worker", "-A", "bench_tasks:app", "-c", str(concurrency)]
    argv += ["-l", log_level, *(["-E"] if events else [])]
    if log_level in ("debug", "info"):
        # A line per task to the terminal would measure the terminal.
        argv += ["--logfile", os.devnull]
    bench = make("bench-client", url, queue)
    async with bench.app:
        try:
            env = {URL_ENV: url, QUEUE_ENV: queue}
            async with running(argv, HERE, env, "the aioqueue worker") as proc:
                side = AioqueueSide(bench)
                if warm_up:
                    await _warm_up(side, task)
                yield Running(side, proc.pid)
        finally:
            await delete_topology(bench.app, queue)


@asynccontextmanager
async def raw(
    url: str,
    concurrency: int,
    task: TaskKind,
    *,
    profile_to: Path | None = None,
    warm_up: bool = True,
) -> AsyncIterator[Running]:
    """A ``ceiling_worker.py`` process (prefetch ``concurrency``) and a client, warmed up;
    with ``profile_to``, the worker can be profiled."""
    queue = f"bench.ceiling.{uuid.uuid4().hex[:12]}"
    argv = [*_profiled(profile_to), str(HERE / "ceiling_worker.py"), queue, "--url", url]
    argv += ["--task", task, "-c", str(concurrency)]
    client = await ceiling.Client.start(url, queue)
    try:
        async with running(argv, HERE, what="the ceiling worker") as proc:
            side = CeilingSide(client)
            if warm_up:
                await _warm_up(side, task)
            yield Running(side, proc.pid)
    finally:
        try:
            # The worker deletes its queue on its way out; not if it died.
            await client.delete_task_queue()
        finally:
            await client.close()
