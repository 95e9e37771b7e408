"""The pool's decisions (pure): names, exits, restarts, recycling; and the overruns of
``ThreadSlots`` that make a pool child leave."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import anyio
import pytest

from aioqueue.exceptions import TimeLimitExceeded
from aioqueue.worker.limits import ThreadSlots
from aioqueue.worker.pool import (
    ChildExit,
    ChildLimits,
    Leave,
    Strikes,
    describe_exit,
    judge,
    leave_reason,
    node_name,
    resident_bytes,
    restart_delay,
    wait_leave,
)
from tests.helpers import eventually

MIB = 2**20


@pytest.mark.parametrize(
    ("template", "index", "name"),
    [
        ("w1@%h", None, "w1@box.example.org"),
        ("%n@%d", None, "box@example.org"),
        ("w%i@%n", None, "w0@box"),  # outside a pool
        ("w%i@%n", 3, "w3@box"),
        ("worker@%h", 2, "worker-2@box.example.org"),  # a pool's names differ
        ("worker", 2, "worker-2"),
        ("100%%@%n", None, "100%@box"),
        ("odd%x@%n%", None, "odd%x@box%"),  # not a field: kept as it is
    ],
)
def test_node_names(template: str, index: int | None, name: str) -> None:
    assert node_name(template, "box.example.org", index) == name


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (-9, "was killed by SIGKILL"),
        (-15, "was killed by SIGTERM"),
        (-99, "was killed by signal 99"),
        (0, "exited with status 0"),
        (3, "exited with status 3"),
        (80, "recycled: it processed its --max-tasks-per-child"),
        (81, "recycled: its memory passed --max-memory-per-child"),
        (82, "replaced: a sync task ran past its hard time limit"),
    ],
)
def test_describe_exit(returncode: int, said: str) -> None:
    assert describe_exit(returncode).startswith(said)


def test_leave_statuses_are_not_the_workers_own() -> None:
    # 0: stopped; 1: a lost queue or an error; 2: bad usage; signals are negative.
    assert {int(status) for status in Leave}.isdisjoint({0, 1, 2})
    assert all(0 < status < 126 for status in Leave)  # shells own 126 and above


def test_restart_delay_doubles_to_a_ceiling() -> None:
    assert [restart_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert restart_delay(0) == 0.5


def _exit(
    returncode: int, *, ready: bool = True, lived: float = 1.0, stopping: bool = False
) -> ChildExit:
    return ChildExit(returncode, ready, lived, stopping)


@pytest.mark.parametrize(
    ("ended", "strikes", "pool_ready", "restart_in", "level", "give_up", "after"),
    [
        # Stopping: nothing is started again; only an unclean stop is a warning.
        (_exit(0, stopping=True), Strikes(), True, None, logging.INFO, None, Strikes()),
        (_exit(-9, stopping=True), Strikes(), True, None, logging.WARNING, None, Strikes()),
        # Recycles and stuck threads: a replacement at once, and a clean record.
        (_exit(80), Strikes(2, 1), True, 0.0, logging.INFO, None, Strikes()),
        (_exit(81), Strikes(), True, 0.0, logging.INFO, None, Strikes()),
        (_exit(82), Strikes(), True, 0.0, logging.WARNING, None, Strikes()),
        # Crashes: backoff grows with each in a row; a long life starts a new run.
        (_exit(-9), Strikes(), True, 0.5, logging.ERROR, None, Strikes(1)),
        (_exit(-9), Strikes(2), True, 2.0, logging.ERROR, None, Strikes(3)),
        (_exit(1, lived=60), Strikes(4), True, 0.5, logging.ERROR, None, Strikes(1)),
        # Never ready, before the pool ever was: fail fast, with the child's status.
        (_exit(2, ready=False), Strikes(), False, None, logging.ERROR, 2, Strikes()),
        (_exit(-9, ready=False), Strikes(), False, None, logging.ERROR, 1, Strikes()),
        # Never ready, later: backoff, then give up after five in a row.
        (_exit(1, ready=False), Strikes(), True, 0.5, logging.ERROR, None, Strikes(0, 1)),
        (_exit(1, ready=False), Strikes(0, 3), True, 4.0, logging.ERROR, None, Strikes(0, 4)),
        (_exit(1, ready=False), Strikes(0, 4), True, None, logging.ERROR, 1, Strikes(0, 5)),
    ],
)
def test_judge(
    ended: ChildExit,
    strikes: Strikes,
    pool_ready: bool,
    restart_in: float | None,
    level: int,
    give_up: int | None,
    after: Strikes,
) -> None:
    verdict = judge(ended, strikes, pool_ready=pool_ready)
    assert (verdict.restart_in, verdict.level, verdict.give_up) == (restart_in, level, give_up)
    assert verdict.strikes == after


def test_judge_says_what_the_child_said_as_it_left() -> None:
    why = "recycled: it processed 5 tasks (--max-tasks-per-child 5)"
    verdict = judge(ChildExit(80, True, 1.0, False, why), Strikes(), pool_ready=True)
    assert verdict.what == f"{why}; starting another"
    verdict = judge(_exit(-9), Strikes(), pool_ready=True)
    assert verdict.what == "was killed by SIGKILL; starting another in 0.5 s"


@pytest.mark.parametrize(
    ("limits", "processed", "rss", "status"),
    [
        (ChildLimits(), 10**6, 10**12, None),
        (ChildLimits(max_tasks=5), 4, None, None),
        (ChildLimits(max_tasks=5), 5, None, Leave.MAX_TASKS),
        (ChildLimits(max_tasks=5), 9, None, Leave.MAX_TASKS),  # it held more
        (ChildLimits(max_memory=100 * MIB), 0, 100 * MIB, None),
        (ChildLimits(max_memory=100 * MIB), 0, 100 * MIB + 1, Leave.MAX_MEMORY),
        (ChildLimits(max_memory=100 * MIB), 0, None, None),  # not measured this time
        (ChildLimits(max_tasks=5, max_memory=MIB), 5, 2 * MIB, Leave.MAX_TASKS),
    ],
)
def test_leave_reason(
    limits: ChildLimits, processed: int, rss: int | None, status: Leave | None
) -> None:
    leaving = leave_reason(limits, processed, rss)
    assert (leaving and leaving.status) == status


def test_leave_reason_says_the_memory_in_mib() -> None:
    leaving = leave_reason(ChildLimits(max_memory=100 * MIB), 0, 150 * MIB)
    assert leaving is not None
    assert leaving.why == "recycled: its resident memory is 150 MiB (--max-memory-per-child 100)"


def test_resident_bytes_follow_what_the_process_holds() -> None:
    before = resident_bytes()
    held = b"\x01" * (64 * MIB)
    assert resident_bytes() > before + 32 * MIB
    del held


class _Counting:
    def __init__(self) -> None:
        self.processed = 0

    async def wait_overrun(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.anyio
async def test_wait_leave_counts_tasks_and_sees_overruns() -> None:
    worker = _Counting()
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with anyio.move_on_after(0.2) as waited:
        await wait_leave(worker, ChildLimits(max_tasks=3), never)
    assert waited.cancelled_caught  # 0 of 3 tasks: it stays
    worker.processed = 3
    with anyio.fail_after(5):
        assert (await wait_leave(worker, ChildLimits(max_tasks=3), never)).status == Leave.MAX_TASKS
    overrun: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    overrun.set_result(None)
    with anyio.fail_after(5):
        assert (await wait_leave(_Counting(), ChildLimits(), overrun)).status == Leave.TIME_LIMIT


@pytest.mark.anyio
async def test_thread_slots_tell_overruns() -> None:
    slots = ThreadSlots(2)
    release = threading.Event()
    try:
        # Within its limit: no overrun.
        assert await slots.run(lambda: 1, limit=5) == 1
        with anyio.move_on_after(0.1) as waited:
            await slots.wait_overrun()
        assert waited.cancelled_caught
        assert (slots.overruns, slots.overrunning) == (0, 0)

        with pytest.raises(TimeLimitExceeded):
            await slots.run(release.wait, 10, limit=0.05)
        assert (slots.overruns, slots.overrunning) == (1, 1)
        with anyio.fail_after(1):
            await slots.wait_overrun()

        release.set()  # the thread ends; that it overran stays known
        await eventually(lambda: slots.busy == 0, 5)
        assert (slots.overruns, slots.overrunning) == (1, 0)
        with anyio.fail_after(1):
            await slots.wait_overrun()
    finally:
        release.set()
        slots.close()


@pytest.mark.anyio
async def test_a_function_that_times_out_by_itself_is_no_overrun() -> None:
    slots = ThreadSlots(1)

    def own_timeout() -> None:
        time.sleep(0.01)
        raise TimeoutError("its own")

    try:
        with pytest.raises(TimeoutError, match="its own"):
            await slots.run(own_timeout, limit=5)
        assert slots.overruns == 0
    finally:
        slots.close()
