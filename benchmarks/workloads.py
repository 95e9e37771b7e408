"""The workloads, written once against a :class:`Side`: aioqueue or the raw ceiling.

Each workload times its window with a :class:`cputime.Meter` (so the CPU of the client,
the worker and the broker is read over exactly the timed part) and returns its figures
and the number of task messages the window ran, which CPU per task is divided by.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import ceiling
from cputime import Meter

# W2's publisher sends this many tasks at once and awaits their confirms before the
# next window, as a producer that must not hold an unbounded backlog does.
WINDOW = 1_000
NAP_SECONDS = 0.1
CHAIN_STEPS = 10
GROUP_SIZE = 100

T = TypeVar("T")


class Side(Protocol):
    """What a workload does with a client; each call returns once the publish of its
    task is confirmed, with the awaitable of its result where there is one."""

    async def call(self, x: int, y: int) -> Awaitable[int]:
        """Send ``add(x, y)``."""
        ...

    async def send(self, x: int, y: int) -> None:
        """Send ``add(x, y)`` with no result."""
        ...

    async def nap(self, seconds: float) -> Awaitable[object]:
        """Send a task that sleeps ``seconds``."""
        ...

    async def chain(self, start: int, steps: int) -> Awaitable[int]:
        """Send ``add(start, 1) | add(1) | ...``, ``steps`` steps."""
        ...

    async def group(self, size: int) -> Awaitable[list[int]]:
        """Send ``add(i, i)`` for i in range(size) at once."""
        ...


async def gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """``asyncio.gather``, which also cancels the others when one fails: left running,
    they would publish into a queue the clean-up just deleted (and so declare it again)."""
    futures = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*futures)
    except BaseException:
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        raise


@dataclass(frozen=True, slots=True)
class Outcome:
    """A workload's figures (the first is the one compared) and the tasks it ran."""

    figures: dict[str, float]
    tasks: int


async def w1(side: Side, n: int, meter: Meter) -> Outcome:
    """n ``add`` sent at once, then every result awaited."""
    meter.start()
    results = await gather(side.call(i, i) for i in range(n))
    values = await gather(results)
    meter.stop()
    if values != [2 * i for i in range(n)]:
        raise RuntimeError("W1: wrong results")
    return Outcome({"tasks/s": n / meter.elapsed}, n)


async def w2(side: Side, n: int, meter: Meter) -> Outcome:
    """n fire-and-forget ``add`` sent in windows of :data:`WINDOW` confirms, until the
    worker processed them all: until the result of one more task sent after them
    arrives (one worker consumes the queue in order, and these tasks take no time)."""
    meter.start()
    for first in range(0, n, WINDOW):
        await gather(side.send(i, i) for i in range(first, min(n, first + WINDOW)))
    if await (await side.call(n, n)) != 2 * n:
        raise RuntimeError("W2: wrong result")
    meter.stop()
    return Outcome({"tasks/s": n / meter.elapsed}, n)


async def w3(side: Side, n: int, meter: Meter) -> Outcome:
    """n tasks sleeping :data:`NAP_SECONDS` sent at once, until the last result."""
    meter.start()
    results = await gather(side.nap(NAP_SECONDS) for _ in range(n))
    await gather(results)
    meter.stop()
    return Outcome({"tasks/s": n / meter.elapsed, "wall s": meter.elapsed}, n)


async def w4(side: Side, n: int, meter: Meter) -> Outcome:
    """n sequential round trips of ``add``."""
    samples: list[float] = []
    meter.start()
    for i in range(n):
        begin = time.perf_counter()
        await (await side.call(i, i))
        samples.append((time.perf_counter() - begin) * 1000)
    meter.stop()
    samples.sort()
    return Outcome(
        {"p50 ms": ceiling.percentile(samples, 50), "p99 ms": ceiling.percentile(samples, 99)}, n
    )


async def w6(side: Side, n: int, meter: Meter) -> Outcome:
    """n chains of :data:`CHAIN_STEPS` ``add``, each awaited end to end in turn."""
    samples: list[float] = []
    meter.start()
    for i in range(n):
        begin = time.perf_counter()
        if await (await side.chain(i, CHAIN_STEPS)) != i + CHAIN_STEPS:
            raise RuntimeError("W6: wrong result")
        samples.append((time.perf_counter() - begin) * 1000)
    meter.stop()
    samples.sort()
    return Outcome(
        {"chains/s": n / meter.elapsed, "p50 ms": ceiling.percentile(samples, 50)},
        n * CHAIN_STEPS,
    )


async def w7(side: Side, n: int, meter: Meter) -> Outcome:
    """n groups of :data:`GROUP_SIZE` ``add``, each gathered in turn."""
    expected = [2 * i for i in range(GROUP_SIZE)]
    meter.start()
    for _ in range(n):
        if await (await side.group(GROUP_SIZE)) != expected:
            raise RuntimeError("W7: wrong results")
    meter.stop()
    return Outcome({"groups/s": n / meter.elapsed}, n * GROUP_SIZE)
