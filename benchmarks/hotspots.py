"""One side of one workload, repeated, with its CPU and garbage-collector cost per task.

    python benchmarks/hotspots.py w1 [--side aioqueue|ceiling] [--repeat 3] [--url URL]
    python benchmarks/hotspots.py w2 --cprofile w2.pstats

The worker and the client share this process, so the process's CPU time per task is
the cost to compare between aioqueue and the ceiling: throughput alone also moves with
whatever else the machine (and the broker) is doing. To see where the time goes, run it
under a sampling profiler, e.g.

    py-spy record -r 500 -f raw -o w1.txt -- python benchmarks/hotspots.py w1 --repeat 3

or give ``--cprofile`` (deterministic, so it inflates small functions).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import ceiling
import run
import uvloop
from bench_tasks import URL_ENV

SIZES = {"w1": 10_000, "w2": 20_000, "w3": 2_000, "w4": 500}


@dataclass
class GcClock:
    """Time spent in the cyclic garbage collector, per generation, via ``gc.callbacks``."""

    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    runs: list[int] = field(default_factory=lambda: [0, 0, 0])
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.seconds[generation] += time.perf_counter() - self._started
        self.runs[generation] += 1

    def reset(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]


def _workload(name: str, side: str, url: str, n: int) -> Callable[[], Awaitable[object]]:
    concurrency = run.CONCURRENCY
    if side == "ceiling":
        table: dict[str, Callable[[], Awaitable[object]]] = {
            "w1": lambda: ceiling.w1(url, n, concurrency),
            "w2": lambda: ceiling.w2(url, n, concurrency),
            "w3": lambda: ceiling.w3(url, n, concurrency, run.NAP_SECONDS),
            "w4": lambda: ceiling.w4(url, n),
        }
    else:
        table = {
            "w1": lambda: run.aioqueue_w1(url, n),
            "w2": lambda: run.aioqueue_w2(url, n),
            "w3": lambda: run.aioqueue_w3(url, n),
            "w4": lambda: run.aioqueue_w4(url, n),
        }
    return table[name]


async def _repeat(work: Callable[[], Awaitable[object]], n: int, repeat: int) -> None:
    clock = GcClock()
    gc.callbacks.append(clock)
    try:
        for _ in range(repeat):
            clock.reset()
            cpu = time.process_time()
            value = await work()
            cpu = time.process_time() - cpu
            gc_us = [1e6 * s / n for s in clock.seconds]
            print(
                f"{run.show(value):>24}  cpu {1e6 * cpu / n:6.1f} us/task  "
                f"gc {sum(gc_us):5.1f} us/task (gen2 {gc_us[2]:.1f} us, {clock.runs[2]} runs)",
                flush=True,
            )
    finally:
        gc.callbacks.remove(clock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=sorted(SIZES))
    parser.add_argument("--side", choices=["aioqueue", "ceiling"], default="aioqueue")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("-n", type=int, help="tasks per repetition (default: full size)")
    parser.add_argument("--url", default=os.environ.get(URL_ENV, ceiling.DEFAULT_URL))
    parser.add_argument("--cprofile", metavar="FILE", help="write cProfile stats here")
    args = parser.parse_args(argv)
    n = args.n or SIZES[args.workload]
    work = _workload(args.workload, args.side, args.url, n)
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler is not None:
        profiler.enable()
    try:
        uvloop.run(_repeat(work, n, args.repeat))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
