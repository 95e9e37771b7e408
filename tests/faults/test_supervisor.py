"""The pool's supervisor with stand-in children (no broker): small Python programs
that speak the child's side of the socket, and exit, crash, leave or refuse to stop as
each test needs. What the supervisor decides comes from ``judge``; these check that it
acts on it: gives up, replaces, backs off, kills, and leaves no process behind.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from aioqueue.worker.pool import ChildReady, Supervisor
from tests.helpers import eventually
from tests.processes import ONE_LOOP, TIMEOUT

pytestmark = [pytest.mark.anyio, ONE_LOOP]

# argv: FD BEHAVIOUR. Says it is ready (unless it fails at once), then behaves.
CHILD = r"""
import json, os, signal, socket, sys, time
sock = socket.socket(fileno=int(sys.argv[1]))
behaviour = sys.argv[2]
def send(message):
    sock.sendall(json.dumps(message).encode() + b"\n")
if behaviour == "fail":
    sys.exit(3)
if behaviour == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
send({"ready": {"pid": os.getpid()}})
if behaviour == "crash":
    time.sleep(0.2)
    os._exit(5)
if behaviour == "leave":
    send({"leaving": {"status": 80, "why": "recycled: it is done"}})
    sys.exit(80)
while sock.recv(1):  # until the supervisor is gone
    pass
"""


def stand_ins(*behaviours: str) -> Callable[[int, int], Sequence[str]]:
    """Child ``i`` behaves as ``behaviours[i - 1]`` the first time, then as the last
    of them."""
    started: dict[int, int] = {}

    def command(index: int, fd: int) -> list[str]:
        started[index] = started.get(index, 0) + 1
        behaviour = behaviours[index - 1] if started[index] == 1 else behaviours[-1]
        return [sys.executable, "-c", CHILD, str(fd), behaviour]

    return command


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != "zombie"}


async def run_until(
    pool: Supervisor, done: Callable[[], bool], ready: list[list[ChildReady]]
) -> int:
    """Run ``pool``; once ``done()``, stop it with SIGTERM; its status."""
    status: list[int] = []

    async def serve() -> None:
        status.append(await pool.run(ready.append))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await eventually(lambda: bool(status) or done(), TIMEOUT)
            if not status:
                pool.signal(signal.SIGTERM)
    return status[0]


async def test_a_child_that_cannot_start_stops_the_pool_with_its_status() -> None:
    before = descendants()
    pool = Supervisor(stand_ins("serve", "fail"), 2, stop_timeout=5)
    ready: list[list[ChildReady]] = []
    assert await run_until(pool, lambda: False, ready) == 3
    assert ready == []  # no banner for a pool that never served
    assert descendants() == before


async def test_a_child_that_leaves_is_replaced_at_once() -> None:
    pool = Supervisor(stand_ins("leave", "serve"), 2, stop_timeout=5)
    ready: list[list[ChildReady]] = []
    seen: set[int] = set()

    def replaced() -> bool:
        seen.update(pool.pids.values())
        return len(seen) == 3 and len(pool.pids) == 2 and bool(ready)

    started = time.monotonic()
    assert await run_until(pool, replaced, ready) == 0
    assert time.monotonic() - started < 5  # no backoff for a recycle
    assert pool.pids == {}


async def test_a_crashed_child_is_started_again_after_a_backoff() -> None:
    pool = Supervisor(stand_ins("crash", "serve"), 1, stop_timeout=5)
    ready: list[list[ChildReady]] = []
    seen: set[int] = set()

    def restarted() -> bool:
        seen.update(pool.pids.values())
        return len(seen) == 2

    started = time.monotonic()
    assert await run_until(pool, restarted, ready) == 0
    assert time.monotonic() - started >= 0.5  # the first backoff
    assert [[c.index for c in r] for r in ready] == [[1]]  # announced once


async def test_a_child_that_ignores_sigterm_is_killed(caplog: Any) -> None:
    before = descendants()
    pool = Supervisor(stand_ins("stubborn"), 1, stop_timeout=0.2, kill_grace=0.2)
    ready: list[list[ChildReady]] = []
    assert await run_until(pool, lambda: bool(ready), ready) == 0
    assert "killing it" in caplog.text
    assert "was killed by SIGKILL" in caplog.text
    assert descendants() == before
