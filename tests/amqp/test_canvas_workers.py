"""Canvas across worker processes on a real RabbitMQ.

Two (sometimes three) ``python -m aioqueue.cli worker`` processes consume the same
queue; the app is ``tests/amqp/canvas_app.py``. Every task run appends a line with the
worker's pid to a log file, which tells the test which workers took part and how many
times something ran: above all, that a chord's body runs exactly once, also when a
worker is SIGKILLed in the middle of the chord.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from aioqueue import App, GroupResult, chain, chord, group
from aioqueue.canvas import freeze, plan
from aioqueue.routing import CHORD_PREFIX, dlq_name
from aioqueue.transport.amqp import AmqpTransport
from tests.amqp.canvas_app import create_app

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.amqp.canvas_app:app"
TIMEOUT = 60  # generous: only there so that a broken test fails instead of hanging


@pytest.fixture
def anyio_backend() -> Any:
    # The workers under test are subprocesses; one event loop for the test side is enough.
    return ("asyncio", {"use_uvloop": False})


@dataclass
class WorkerProcess:
    process: anyio.abc.Process
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Cluster:
    """Worker processes on one queue, the client app, and the run log."""

    amqp_url: str
    queue: str
    tmp: Path
    client: App
    workers: list[WorkerProcess] = field(default_factory=list)
    chords: list[str] = field(default_factory=list)  # group ids, to remove their queues
    started: int = 0

    @property
    def log(self) -> Path:
        return self.tmp / "runs.log"

    async def start(self, concurrency: int = 10) -> WorkerProcess:
        """A worker process, returned once it consumes (it has printed its banner)."""
        env = {
            **os.environ,
            "AIOQUEUE_CANVAS_BROKER": self.amqp_url,
            "AIOQUEUE_CANVAS_QUEUE": self.queue,
            "AIOQUEUE_CANVAS_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [sys.executable, "-m", "aioqueue.cli", "worker", "-A", APP]
        command += ["-Q", self.queue, "-c", str(concurrency), "--shutdown-timeout", "10"]
        self.started += 1
        stderr = self.tmp / f"worker-{self.started}.log"
        with stderr.open("wb") as err:
            process = await anyio.open_process(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err
            )
        worker = WorkerProcess(process, stderr)
        self.workers.append(worker)
        await _read_banner(worker)
        return worker

    async def start_many(self, n: int, concurrency: int = 10) -> list[WorkerProcess]:
        started: list[WorkerProcess] = []

        async def one() -> None:
            started.append(await self.start(concurrency))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        return started

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

    def pids(self, what: str) -> set[int]:
        return {pid for pid, _ in self.runs(what)}

    async def stop(self, worker: WorkerProcess) -> None:
        """SIGTERM: running tasks finish, then the process exits."""
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(TIMEOUT):
            await worker.process.wait()

    async def kill(self, worker: WorkerProcess) -> None:
        worker.process.kill()
        with anyio.fail_after(TIMEOUT):
            await worker.process.wait()


async def _read_banner(worker: WorkerProcess) -> None:
    """The banner the worker prints once it consumes: a block between two rules."""
    stdout = worker.process.stdout
    assert stdout is not None
    text = ""
    with anyio.fail_after(TIMEOUT):
        while sum(1 for line in text.splitlines() if line and set(line) == {"-"}) < 2:
            try:
                text += (await stdout.receive()).decode()
            except anyio.EndOfStream:
                raise AssertionError(
                    f"the worker exited before its banner:\n{text}\n{worker.stderr.read_text()}"
                ) from None


async def _remove_queues(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    transport = AmqpTransport(amqp_url)
    await transport.connect()
    try:
        for name in queues:
            await transport.delete_queue(name)
        for name in exchanges:
            await transport.delete_exchange(name)
    finally:
        await transport.aclose()


@pytest.fixture
async def cluster(amqp_url: str, queue_name: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    client = create_app(amqp_url, queue_name)
    state = Cluster(amqp_url, queue_name, tmp_path, client)
    try:
        async with client:
            yield state
    finally:
        try:
            for worker in state.workers:
                if worker.process.returncode is None:
                    worker.process.kill()
                with anyio.fail_after(TIMEOUT):
                    await worker.process.wait()
                await worker.process.aclose()
        finally:
            chord_queues = [f"{CHORD_PREFIX}{group_id}" for group_id in state.chords]
            await _remove_queues(
                amqp_url, [queue_name, dlq_name(queue_name), *chord_queues], [queue_name]
            )


def _task(cluster: Cluster, name: str) -> Any:
    return cluster.client.tasks[name]


async def _eventually(check: Callable[[], bool]) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:
            if check():
                return
            await anyio.sleep(0.01)


async def _quiet(cluster: Cluster, for_checks: int = 4) -> None:
    """Wait until the run log stops growing (a few checks 0.2 s apart), so that work
    still in flight after the result arrived (a redelivered member) shows up."""
    with anyio.fail_after(TIMEOUT):
        seen, still = -1, 0
        while still < for_checks:
            size = cluster.log.stat().st_size if cluster.log.exists() else 0
            still = still + 1 if size == seen else 0
            seen = size
            await anyio.sleep(0.2)


async def _leftover_tasks(cluster: Cluster) -> list[str]:
    """Names of the task messages still in the queue (taken out of it)."""
    transport = cluster.client.transport
    batch = await transport.take_all(cluster.queue, min_count=0)
    assert batch is not None
    names = [str(e.headers.get("task")) for e in batch.envelopes]
    await batch.commit([])
    return names


# -- tests ------------------------------------------------------------------------------


async def test_twenty_step_chain_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2)
    add = _task(cluster, "canvas.add")
    canvas = add.si(0, 0)
    for i in range(1, 20):
        canvas = canvas | add.s(i)

    result = await canvas.delay()

    assert await result.get(timeout=TIMEOUT) == sum(range(20))
    runs = cluster.runs("add")
    assert len(runs) == 20
    assert {pid for pid, _ in runs} == {first.pid, second.pid}
    # Each step ran once, in order, wherever it landed.
    assert [detail for _, detail in runs] == ["0,0"] + [
        f"{sum(range(i))},{i}" for i in range(1, 20)
    ]


async def test_group_of_fifty_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2)
    slow_add = _task(cluster, "canvas.slow_add")

    result = await group(slow_add.s(i, i, 0.01) for i in range(50)).delay()

    assert isinstance(result, GroupResult)
    assert await result.get(timeout=TIMEOUT) == [2 * i for i in range(50)]
    done = cluster.runs("done")
    assert sorted(int(x) for _, x in done) == list(range(50))
    assert {pid for pid, _ in done} == {first.pid, second.pid}


async def test_chord_of_a_hundred_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2)
    add, xsum = _task(cluster, "canvas.add"), _task(cluster, "canvas.xsum")

    result = await chord((add.s(i, i) for i in range(100)), xsum.s()).delay()
    cluster.chords.append(result.parent.id)

    assert await result.get(timeout=TIMEOUT) == sum(2 * i for i in range(100))
    assert len(cluster.runs("add")) == 100
    assert cluster.pids("add") == {first.pid, second.pid}
    await _quiet(cluster)
    assert [detail for _, detail in cluster.runs("xsum")] == ["100"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_after", [30, 85], ids=["early", "late"])
async def test_chord_fires_once_when_a_worker_is_killed_mid_chord(
    cluster: Cluster, kill_after: int
) -> None:
    doomed, survivor = await cluster.start_many(2, concurrency=10)
    slow_add, xsum = _task(cluster, "canvas.slow_add"), _task(cluster, "canvas.xsum")
    n = 100

    result = await chord((slow_add.s(i, i, 0.1) for i in range(n)), xsum.s()).delay()
    cluster.chords.append(result.parent.id)

    # Kill one worker once a good part of the header is done, while it runs members.
    await _eventually(lambda: len(cluster.runs("done")) >= kill_after)
    await cluster.kill(doomed)
    replacement = await cluster.start(concurrency=10)

    assert await result.get(timeout=TIMEOUT) == sum(2 * i for i in range(n))
    await _quiet(cluster)
    # Drain the workers: whatever they hold finishes; then look for stray bodies.
    await cluster.stop(survivor)
    await cluster.stop(replacement)
    assert "canvas.xsum" not in await _leftover_tasks(cluster)

    assert [detail for _, detail in cluster.runs("xsum")] == [str(n)]
    survivors = {survivor.pid, replacement.pid}
    assert cluster.pids("start") <= {doomed.pid, *survivors}
    started = {(pid, int(x)) for pid, x in cluster.runs("start")}
    finished = {(pid, int(x)) for pid, x in cluster.runs("done")}
    on_doomed = {x for pid, x in started if pid == doomed.pid}
    # What the killed worker held unacked came back and ran again on the others.
    redelivered = on_doomed & {x for pid, x in started if pid in survivors}
    assert redelivered, "the killed worker held no member: the kill tested nothing"
    interrupted = on_doomed - {x for pid, x in finished if pid == doomed.pid}
    assert interrupted <= {x for pid, x in finished if pid in survivors}
    assert {x for _, x in finished} == set(range(n))


async def test_members_delivered_again_after_the_chord_fired_do_not_fire_it_again(
    cluster: Cluster,
) -> None:
    """What RabbitMQ does to members whose worker died after the chord fired but before
    it acked them: deliver them again. The same member messages are published again."""
    await cluster.start_many(2)
    slow_add, xsum = _task(cluster, "canvas.slow_add"), _task(cluster, "canvas.xsum")
    node = freeze(chord([slow_add.s(1, 1, 0), slow_add.s(2, 2, 0)], xsum.s()).to_dict(), None)
    members = plan(node)
    cluster.chords.extend(members.chords)

    await cluster.client.publish_plan(members)
    await _eventually(lambda: len(cluster.runs("xsum")) == 1)
    for outgoing in members.messages:
        await cluster.client.publish(outgoing.message, outgoing.options)
    await _eventually(lambda: len(cluster.runs("done")) == 4)
    await _quiet(cluster)
    for worker in cluster.workers:
        await cluster.stop(worker)

    assert "canvas.xsum" not in await _leftover_tasks(cluster)
    assert [detail for _, detail in cluster.runs("xsum")] == ["2"]


async def test_failing_step_stops_a_chain_across_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2)
    add, boom = _task(cluster, "canvas.add"), _task(cluster, "canvas.boom")

    result = await chain(add.s(1, 1), add.s(1), boom.s(), add.s(100), add.s(1000)).delay()

    with pytest.raises(ValueError, match="boom 3") as caught:
        await result.get(timeout=TIMEOUT)
    assert caught.value.args == ("boom 3",)
    failed = result.parent.parent
    with pytest.raises(ValueError, match="boom 3"):
        await failed.get(timeout=TIMEOUT)
    assert await failed.parent.get(timeout=TIMEOUT) == 3
    with pytest.raises(ValueError, match="boom 3"):
        await result.parent.get(timeout=TIMEOUT)
    await _quiet(cluster, for_checks=2)
    assert [d for _, d in cluster.runs("add")] == ["1,1", "2,1"]
    assert [d for _, d in cluster.runs("boom")] == ["3"]
    assert cluster.pids("add") | cluster.pids("boom") == {first.pid, second.pid}


async def test_nested_canvas_across_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2)
    add, xsum = _task(cluster, "canvas.add"), _task(cluster, "canvas.xsum")

    in_chain = await chain(
        add.s(1, 1), chord([add.s(i) for i in range(10)], xsum.s()), add.s(100)
    ).delay()
    cluster.chords.append(in_chain.parent.parent.id)
    of_chains = await group(chain(add.s(i, i), add.s(1)) for i in range(10)).delay()
    chord_of_chains = await chord(
        [chain(add.s(i, 0), add.s(i)) for i in range(10)], xsum.s()
    ).delay()
    cluster.chords.append(chord_of_chains.parent.id)

    assert await in_chain.get(timeout=TIMEOUT) == 2 * 10 + sum(range(10)) + 100
    assert await of_chains.get(timeout=TIMEOUT) == [2 * i + 1 for i in range(10)]
    assert await chord_of_chains.get(timeout=TIMEOUT) == sum(2 * i for i in range(10))
    await _quiet(cluster, for_checks=2)
    assert len(cluster.runs("xsum")) == 2
    assert cluster.pids("add") == {first.pid, second.pid}
