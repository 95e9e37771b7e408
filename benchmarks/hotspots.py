"""Where one side's CPU goes per task, on the client and on the worker process.

    python benchmarks/hotspots.py w2 [--side aioqueue|ceiling] [-c 100] [-n 20000]
        [--repeat 3] [--profile DIR] [--top 25]

Runs one workload of ``run.py`` as it does (a worker process of its own, the client in
this process) and prints, for each repetition, the CPU microseconds per task of the
worker, the client and the broker (``cputime.py``) and the client's time in the cyclic
garbage collector. With ``--profile DIR`` both run under cProfile over the timed window
only (``DIR/client-N.pstats``, and ``DIR/worker-N.pstats`` by ``profiled.py``), and each
profile's own time is printed per task, by area (aioqueue's modules, aio-pika, aiormq,
pamqp, pydantic, ...) and for the top functions. cProfile's own cost inflates small
functions, and it counts each resumption of a coroutine as a call: compare areas and
sides, not absolute figures. A sampling profiler works too, e.g.

    py-spy record -r 500 -f raw -o client.txt -- python benchmarks/hotspots.py w2
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ceiling
import cputime
import sides
import uvloop
from bench_tasks import URL_ENV
from run import FULL, WORKLOADS
from workloads import Outcome

SIZES = {name.lower(): size(FULL) for name, (_, size) in WORKLOADS.items()}


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


async def once(
    name: str, side: str, url: str, concurrency: int, n: int, profile: Path | None, run_no: int
) -> int:
    """Run the workload once; the number of tasks it ran."""
    workload, _ = WORKLOADS[name.upper()]
    task: sides.TaskKind = "nap" if name == "w3" else "add"
    worker_stats = profile / f"worker-{run_no}.pstats" if profile else None
    if side == "ceiling":
        factory = sides.raw(url, concurrency, task, profile_to=worker_stats)
    else:
        factory = sides.aioqueue(url, concurrency, task, profile_to=worker_stats)
    broker = await cputime.broker_pid(url)
    # CPU time, as profiled.py's: wall time would charge waits for a core to functions.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    clock = GcClock()
    async with factory as running:
        meter = cputime.Meter(
            {"worker": running.worker_pid, "client": os.getpid(), "broker": broker}
        )
        gc.callbacks.append(clock)
        if profiler is not None:
            os.kill(running.worker_pid, signal.SIGUSR1)
            profiler.enable()
        try:
            outcome: Outcome = await workload(running.side, n, meter)
        finally:
            if profiler is not None:
                profiler.disable()
                os.kill(running.worker_pid, signal.SIGUSR2)
            gc.callbacks.remove(clock)
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile / f"client-{run_no}.pstats")
    cpu = meter.per_task_us(outcome.tasks)
    figures = ", ".join(f"{k} {v:,.2f}" for k, v in outcome.figures.items())
    roles = ", ".join(f"{r} {'-' if v is None else f'{v:.0f}'}" for r, v in cpu.items())
    gc_us = 1e6 * sum(clock.seconds) / outcome.tasks
    print(
        f"{figures}; CPU us/task {roles}; client gc {gc_us:.1f} us/task "
        f"(runs per generation {clock.runs}, us/task "
        f"{[round(1e6 * s / outcome.tasks, 1) for s in clock.seconds]})",
        flush=True,
    )
    return outcome.tasks


# -- reading a profile -----------------------------------------------------------------

_AREAS = (
    ("/aioqueue/", "aioqueue."),
    ("/aio_pika/", "aio_pika"),
    ("/aiormq/", "aiormq"),
    ("/pamqp/", "pamqp"),
    ("/pydantic", "pydantic"),
    ("/json/", "json"),
    ("/asyncio/", "asyncio"),
    ("/uvloop/", "uvloop"),
    ("/anyio/", "anyio"),
    ("/benchmarks/", "benchmarks"),
)


def area(filename: str, function: str) -> str:
    """The package (for aioqueue, the module) a profiled function belongs to."""
    for marker, name in _AREAS:
        if marker in filename:
            if name == "aioqueue.":
                module = filename.split("/aioqueue/", 1)[1].removesuffix(".py")
                return name + module.replace("/", ".")
            return name
    if filename == "~":
        # Built-ins: name the C functions that weigh (json, uuid, socket calls).
        return f"builtin {function.strip('<>').split(' of ')[0]}"
    return "other python"


def summary(path: Path, tasks: int, top: int) -> str:
    """A profile's own time per task: by area, then its ``top`` functions."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in stats.items():
        by_area[area(filename, function)] += own
        short = filename.rsplit("site-packages/", 1)[-1].rsplit("/work/", 1)[-1]
        rows.append((own, cumulative, calls, f"{short}:{line}({function})"))
    total = sum(by_area.values())
    lines = [f"{path.name}: {1e6 * total / tasks:.0f} us/task of own time in all"]
    lines += ["  by area (us/task, share):"]
    for name, own in sorted(by_area.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {1e6 * own / tasks:7.1f}  {own / total:5.1%}  {name}")
    lines += ["  top functions (own us/task, cumulative us/task, calls/task):"]
    for own, cumulative, calls, name in sorted(rows, reverse=True)[:top]:
        lines.append(
            f"    {1e6 * own / tasks:7.1f}  {1e6 * cumulative / tasks:8.1f}  "
            f"{calls / tasks:6.2f}  {name}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("workload", choices=sorted(SIZES))
    parser.add_argument("--side", choices=["aioqueue", "ceiling"], default="aioqueue")
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("-n", type=int, help="tasks per repetition (default: run.py's full size)")
    parser.add_argument("--url", default=os.environ.get(URL_ENV, ceiling.DEFAULT_URL))
    parser.add_argument("--profile", metavar="DIR", type=Path, help="write cProfile stats here")
    parser.add_argument("--top", type=int, default=25, help="rows of each profile summary")
    args = parser.parse_args(argv)
    n = args.n or SIZES[args.workload]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    tasks = 0
    for run_no in range(args.repeat):
        tasks = uvloop.run(
            once(args.workload, args.side, args.url, args.concurrency, n, args.profile, run_no)
        )
    if args.profile:
        for run_no in range(args.repeat):
            for role in ("client", "worker"):
                print(summary(args.profile / f"{role}-{run_no}.pstats", tasks, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
