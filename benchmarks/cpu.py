"""CPU-bound sync tasks: one worker process and its threads against a pool of processes.

    python benchmarks/cpu.py [--url amqp://guest:guest@127.0.0.1:5672/] [--tasks 200] [--ms 20]

``--tasks`` sync tasks, each ``--ms`` milliseconds of pure-Python CPU work (a loop
calibrated in this process before the runs), are sent at once and every result is
awaited, against a separate ``aioqueue worker -A cpu:app`` process started from this
directory as users start it, in turn:

* ``-c 1``: one thread in one process (the baseline);
* ``-c 2``: two threads in one process, which the GIL runs one at a time;
* ``--processes 2 -c 1``: a pool of two processes, one thread each.

Each worker is started on a queue of its own, given a few tasks to warm up, and
stopped with SIGTERM afterwards; its queues are deleted. Printed: wall time and tasks/s
of each, side by side, with the ratio of tasks/s to the baseline. On a 2-core machine
the pool can at best double the baseline (less, as the broker and this client use the
same cores).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import uvloop
from worker_process import delete_topology, running, worker_command

from aioqueue import App

HERE = Path(__file__).resolve().parent
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
URL_ENV = "AIOQUEUE_BENCH_URL"
QUEUE_ENV = "AIOQUEUE_BENCH_QUEUE"
BURN = "bench.burn"
WARM_UP = 4
# Generous: a run that takes this long is broken, and a hung benchmark says less.
TIMEOUT = 60.0  # for the worker to start, and to stop
RUN_TIMEOUT = 300.0

log = logging.getLogger("benchmarks.cpu")


def burn(n: int) -> int:
    """Pure-Python CPU work: holds the GIL throughout."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def make(url: str, queue: str) -> App:
    """An app on ``url`` whose default queue is ``queue``, with the ``burn`` task."""
    app = App("bench-cpu", broker=url, default_queue=queue)
    app.task(name=BURN)(burn)
    return app


# What ``aioqueue worker -A cpu:app`` serves.
app = make(os.environ.get(URL_ENV, DEFAULT_URL), os.environ.get(QUEUE_ENV, "bench.cpu"))


def calibrate(ms: float) -> int:
    """The ``n`` for which ``burn(n)`` takes about ``ms`` milliseconds here."""
    n = 10_000
    while True:
        started = time.perf_counter()
        burn(n)
        took = time.perf_counter() - started
        if took > 0.05:
            break
        n *= 2
    per_call = statistics.median(_timed_burn(n) for _ in range(5)) / n
    return max(1, round(ms / 1000 / per_call))


def _timed_burn(n: int) -> float:
    started = time.perf_counter()
    burn(n)
    return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Figure:
    """One worker setup's run."""

    setup: str
    wall: float  # seconds from the first send to the last result
    tasks: int

    @property
    def rate(self) -> float:
        return self.tasks / self.wall


async def measure(url: str, setup: str, worker_args: list[str], tasks: int, n: int) -> Figure:
    """Start a worker with ``worker_args``, run ``tasks`` burns through it, stop it."""
    queue = f"bench.cpu.{uuid.uuid4().hex[:12]}"
    argv = [*worker_command(), "worker", "-A", "cpu:app", "-l", "warning", *worker_args]
    env = {URL_ENV: url, QUEUE_ENV: queue}
    client = make(url, queue)
    async with running(argv, HERE, env, timeout=TIMEOUT), client:
        try:
            task = client.tasks[BURN]
            warm = [await task.delay(n) for _ in range(WARM_UP)]
            for result in warm:
                await result.get(timeout=RUN_TIMEOUT)
            async with asyncio.timeout(RUN_TIMEOUT):
                started = time.perf_counter()
                results = await asyncio.gather(*(task.delay(n) for _ in range(tasks)))
                for result in results:
                    await result.get(timeout=RUN_TIMEOUT)
                wall = time.perf_counter() - started
        finally:
            await delete_topology(client, queue)
    return Figure(setup, wall, tasks)


SETUPS = [
    ("worker -c 1 (1 thread)", ["-c", "1"]),
    ("worker -c 2 (2 threads, one GIL)", ["-c", "2"]),
    ("worker --processes 2 -c 1", ["--processes", "2", "-c", "1"]),
]


async def run(url: str, tasks: int, n: int) -> list[Figure]:
    figures = []
    for setup, worker_args in SETUPS:
        figure = await measure(url, setup, worker_args, tasks, n)
        print(f"  {setup:<34} {figure.wall:.3f} s", flush=True)
        figures.append(figure)
    return figures


def table(figures: list[Figure]) -> str:
    baseline = figures[0].rate
    header = ("setup", "wall", "tasks/s", "vs -c 1")
    rows = [header] + [
        (f.setup, f"{f.wall:.3f} s", f"{f.rate:,.1f}", f"{f.rate / baseline:.2f}x") for f in figures
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        first, *rest = row
        cells = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join([first.ljust(widths[0]), *cells])

    rule = "-" * len(line(header))
    return "\n".join([rule, line(header), rule, *(line(row) for row in rows[1:]), rule])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"broker URL (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per setup (default 200)")
    parser.add_argument("--ms", type=float, default=20.0, help="CPU ms per task (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = calibrate(args.ms)
    print(f"{args.tasks} sync tasks of ~{args.ms:g} ms of CPU each (burn({n:,}))", flush=True)
    figures = uvloop.run(run(args.url, args.tasks, n))
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
