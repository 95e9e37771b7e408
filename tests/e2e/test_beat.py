"""Beat end to end on ``memory://`` and RabbitMQ: ticks once per slot, one leader among
several instances, failover, entries added and removed at runtime from another app.

The tasks record when they ran; a tick sent twice would show as two runs of one slot.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import anyio
import pytest

from aioqueue import App, Signature, Task
from aioqueue.beat import every
from aioqueue.transport.base import Transport
from aioqueue.transport.memory import MemoryTransport
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

INTERVAL = 0.5
TIMEOUT = 20


@pytest.fixture
def beat_name() -> Iterator[str]:
    # Beats of one app name share their leader and their stored state.
    yield f"beat-{uuid.uuid4().hex[:8]}"


class Run(NamedTuple):
    at: float
    #: Derived from the entry and the slot: a slot sent twice runs twice under one id.
    task_id: str


def _ticking(app: App, runs: list[Run]) -> Any:
    @app.task(name="beat.tick", bind=True)
    async def tick(self: Task[[], None]) -> None:
        runs.append(Run(time.monotonic(), self.request.id))

    return tick


def _second(broker: str | Transport, make_app: MakeApp, name: str) -> App:
    """Another instance of app ``name``, on its own connection to the same broker."""
    if isinstance(broker, MemoryTransport):
        return make_app(name, broker=broker.new_connection())
    return make_app(name)


def _assert_once_per_slot(runs: list[Run]) -> None:
    ids = [run.task_id for run in runs]
    assert len(set(ids)) == len(ids), f"a slot ran twice: {runs}"
    # A tick sent late (after a failover) may run close to the next one: count runs
    # against the slots they span rather than bounding each gap.
    slots = round((runs[-1].at - runs[0].at) / INTERVAL) + 1
    assert len(runs) <= slots, f"{len(runs)} runs in {slots} slots: {runs}"


async def test_an_entry_ticks_once_per_slot(make_app: MakeApp, beat_name: str) -> None:
    app = make_app(beat_name)
    runs: list[Run] = []
    tick = _ticking(app, runs)
    app.beat.every(INTERVAL, tick.s(), name="tick")
    async with app, app.worker(concurrency=4), app.beat:
        assert app.beat.role == "leader"
        await eventually(lambda: len(runs) >= 5, TIMEOUT)
    assert app.beat.role == "stopped"
    _assert_once_per_slot(runs)


async def test_one_leader_among_instances_and_a_standby_takes_over(
    make_app: MakeApp, broker: str | Transport, beat_name: str
) -> None:
    first, second = make_app(beat_name), _second(broker, make_app, beat_name)
    runs: list[Run] = []
    for app in (first, second):
        tick = _ticking(app, runs)
        app.beat.every(INTERVAL, tick.s(), name="tick")
    async with first, second, first.worker(concurrency=4):
        await first.beat.start()
        await second.beat.start()
        try:
            assert {first.beat.role, second.beat.role} == {"leader", "standby"}
            await eventually(lambda: len(runs) >= 3, TIMEOUT)
            leader, standby = (first, second) if first.beat.role == "leader" else (second, first)
            await leader.beat.stop()
            stopped = time.monotonic()
            await eventually(lambda: standby.beat.role == "leader", TIMEOUT)
            # The standby asks every poll (1 s): it leads within about that.
            assert time.monotonic() - stopped < 3
            count = len(runs)
            await eventually(lambda: len(runs) >= count + 3, TIMEOUT)
        finally:
            await first.beat.stop()
            await second.beat.stop()
    _assert_once_per_slot(runs)


async def test_entries_added_and_removed_from_another_process(
    make_app: MakeApp, broker: str | Transport, beat_name: str
) -> None:
    app, other = make_app(beat_name), _second(broker, make_app, beat_name)
    runs: list[Run] = []
    _ticking(app, runs)
    async with app, other, app.worker(concurrency=4), app.beat:
        entry = await other.beat.add("added", every(INTERVAL), Signature("beat.tick"))
        assert "added" in await app.beat.entries() and entry.task == "beat.tick"
        with anyio.fail_after(TIMEOUT):
            await eventually(lambda: len(runs) >= 2, TIMEOUT)
        await other.beat.remove("added")
        await anyio.sleep(2.5)  # the leader reads the entries every second
        count = len(runs)
        await anyio.sleep(1.5)
        assert len(runs) == count, "a removed entry kept firing"
        assert "added" not in await app.beat.entries()
    _assert_once_per_slot(runs)
