"""aioqueue against the raw aio-pika ceiling (``ceiling.py``), side by side, in one run.

    python benchmarks/run.py [--url amqp://guest:guest@127.0.0.1:5672/] [--quick]

Each workload runs on aioqueue, then on the ceiling, against the same broker, so both
see the same machine and broker state; the final table gives the ratio aioqueue/ceiling
and whether aioqueue meets its target:

* W1: n ``add`` tasks submitted at once, then every result awaited (tasks/s, >= 0.7x);
* W2: n fire-and-forget tasks, until the worker has processed all (tasks/s, >= 0.7x);
* W3: n tasks that each sleep 0.1 s, worker concurrency 1,000 (wall time, < 1.0 s),
  against an ``aioqueue worker`` process as users run it (the median of three runs,
  under W5) and, beside the ceiling, with the worker in this process;
* W4: n sequential round trips (p50 latency <= 1.3x the ceiling's; p99 shown);
* W5: RSS of an ``aioqueue worker -c 1000`` process, idle (< 50 MB) and its peak
  while it serves W3 (whose wall time with a separate worker process is shown too);
* W6: a 10-step chain of ``add`` awaited end to end, n times in turn (chains/s,
  >= 0.7x; p50 shown); the ceiling's worker forwards each step itself (10 hops, one
  reply);
* W7: a group of 100 ``add`` awaited with gather, n times in turn (groups/s, >= 0.7x);
  the ceiling publishes 100 tasks at once and gathers their replies.

For W1-W4 the worker runs in this process with its own app (its own connection), as
the ceiling's worker does. Every run uses queues of its own and deletes them. The
exit status is 1 when a target is missed.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import ceiling

# No stubs ship with psutil; types-psutil may or may not be installed.
import psutil  # type: ignore[import-untyped,unused-ignore]
import uvloop
from bench_tasks import QUEUE_ENV, URL_ENV, Bench, make
from worker_process import delete_topology, drain_output, stop, wait_banner, worker_command

from aioqueue import Worker, chain, group

HERE = Path(__file__).resolve().parent
MB = 1024 * 1024
CONCURRENCY = 1_000
NAP_SECONDS = 0.1
# Generous: a workload that takes this long is broken, and a hung benchmark says less
# than a failed one.
WORKLOAD_TIMEOUT = 300.0
# W2 polls the worker's counter; 2 ms is under 0.1% of a full-size W2 run.
POLL_SECONDS = 0.002
# Lets the worker process finish start-up allocations before the idle reading.
IDLE_SETTLE_SECONDS = 1.0
RSS_SAMPLE_SECONDS = 0.01
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# The CLI's line format, so that ``info`` costs here what it costs a CLI worker.
LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"

T = TypeVar("T")

log = logging.getLogger("benchmarks.run")


@dataclass(frozen=True, slots=True)
class Sizes:
    w1: int
    w2: int
    w3: int
    w4: int
    w6: int
    w7: int


FULL = Sizes(w1=10_000, w2=20_000, w3=2_000, w4=500, w6=200, w7=50)
QUICK = Sizes(w1=1_000, w2=2_000, w3=500, w4=50, w6=20, w7=5)
CHAIN_STEPS = 10
GROUP_SIZE = 100


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    aioqueue: str
    ceiling: str = "-"
    ratio: str = "-"
    target: str = "-"
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else "PASS" if self.passed else "FAIL"


# -- aioqueue side ---------------------------------------------------------------------


def _queue_name() -> str:
    return f"bench.aioqueue.{uuid.uuid4().hex[:12]}"


# Whether the in-process worker (W1, W2) sends Celery-format events, as -E: --events.
EVENTS = False


async def _warm_up(bench: Bench) -> None:
    # The client declares the task queue and its reply queue on its first send; the
    # ceiling does the equivalent before its clock starts, so aioqueue does it here.
    await (await bench.add.delay(0, 0)).get(timeout=START_TIMEOUT)


@asynccontextmanager
async def _in_process(url: str, concurrency: int) -> AsyncIterator[tuple[Worker, Bench]]:
    """A worker and a client on separate apps (so separate connections), warmed up."""
    queue = _queue_name()
    server = make("bench-worker", url, queue)
    client = make("bench-client", url, queue)
    async with server.app, client.app:
        try:
            async with server.app.worker(concurrency=concurrency, events=EVENTS) as worker:
                await _warm_up(client)
                yield worker, client
        finally:
            await delete_topology(client.app, queue)


async def aioqueue_w1(url: str, n: int) -> float:
    async with _in_process(url, CONCURRENCY) as (_worker, bench):
        start = time.perf_counter()
        results = await asyncio.gather(*(bench.add.delay(i, i) for i in range(n)))
        values = await asyncio.gather(*(r.get() for r in results))
        elapsed = time.perf_counter() - start
    if values != [2 * i for i in range(n)]:
        raise RuntimeError("W1: wrong results")
    return n / elapsed


async def aioqueue_w2(url: str, n: int) -> float:
    async with _in_process(url, CONCURRENCY) as (worker, bench):
        fire = bench.add.with_options(ignore_result=True)
        target = worker.processed + n
        start = time.perf_counter()
        publishing = asyncio.gather(*(fire.delay(i, i) for i in range(n)))
        while worker.processed < target:
            if publishing.done():
                publishing.result()  # a failed publish would otherwise poll forever
            await asyncio.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - start
        # Confirms for already-consumed messages can trail the last ack (as in ceiling).
        await publishing
    return n / elapsed


async def _naps(bench: Bench, n: int) -> float:
    """Wall seconds for n sleeping tasks, from the first send to the last result."""
    start = time.perf_counter()
    results = await asyncio.gather(*(bench.nap.delay(NAP_SECONDS) for _ in range(n)))
    await asyncio.gather(*(r.get() for r in results))
    return time.perf_counter() - start


async def aioqueue_w3(url: str, n: int) -> float:
    async with _in_process(url, CONCURRENCY) as (_worker, bench):
        return await _naps(bench, n)


async def aioqueue_w4(url: str, n: int) -> tuple[float, float]:
    samples: list[float] = []
    async with _in_process(url, CONCURRENCY) as (_worker, bench):
        for i in range(n):
            start = time.perf_counter()
            await (await bench.add.delay(i, i)).get()
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return ceiling.percentile(samples, 50), ceiling.percentile(samples, 99)


async def aioqueue_w6(url: str, n: int) -> tuple[float, float]:
    samples: list[float] = []
    async with _in_process(url, CONCURRENCY) as (_worker, bench):
        start = time.perf_counter()
        for i in range(n):
            begin = time.perf_counter()
            steps = chain(bench.add.s(i, 1), *(bench.add.s(1) for _ in range(CHAIN_STEPS - 1)))
            value = await (await steps.delay()).get()
            samples.append((time.perf_counter() - begin) * 1000)
            if value != i + CHAIN_STEPS:
                raise RuntimeError("W6: wrong result")
        elapsed = time.perf_counter() - start
    samples.sort()
    return n / elapsed, ceiling.percentile(samples, 50)


async def aioqueue_w7(url: str, n: int) -> float:
    async with _in_process(url, CONCURRENCY) as (_worker, bench):
        start = time.perf_counter()
        for _ in range(n):
            members = group(bench.add.s(i, i) for i in range(GROUP_SIZE))
            if await (await members.delay()).get() != [2 * i for i in range(GROUP_SIZE)]:
                raise RuntimeError("W7: wrong results")
        elapsed = time.perf_counter() - start
    return n / elapsed


@dataclass(frozen=True, slots=True)
class Footprint:
    idle_rss: int
    peak_rss: int
    w3_wall: float


def _rss(process: psutil.Process) -> int:
    return int(process.memory_info().rss)


async def _peak_rss(process: psutil.Process, done: asyncio.Event) -> int:
    peak = 0
    while not done.is_set():
        peak = max(peak, _rss(process))
        await asyncio.sleep(RSS_SAMPLE_SECONDS)
    return max(peak, _rss(process))


async def aioqueue_w5(url: str, n: int, log_level: str) -> Footprint:
    queue = _queue_name()
    proc = await asyncio.create_subprocess_exec(
        *worker_command(),
        "worker",
        "-A",
        "bench_tasks:app",
        "-c",
        str(CONCURRENCY),
        "-l",
        log_level,
        cwd=HERE,
        env={**os.environ, URL_ENV: url, QUEUE_ENV: queue},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    client = make("bench-client", url, queue)
    try:
        async with client.app:
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    await wait_banner(proc, "W5: the worker")
                drain = asyncio.create_task(drain_output(proc.stdout))
                await asyncio.sleep(IDLE_SETTLE_SECONDS)
                process = psutil.Process(proc.pid)
                idle = _rss(process)
                await _warm_up(client)
                done = asyncio.Event()
                sampler = asyncio.create_task(_peak_rss(process, done))
                try:
                    # The median of three runs: the first one also pays for the
                    # worker's first burst of a thousand tasks.
                    wall = statistics.median([await _naps(client, n) for _ in range(3)])
                finally:
                    done.set()
                    peak = await sampler
            finally:
                await stop(proc, STOP_TIMEOUT, "W5: the worker")
                await delete_topology(client.app, queue)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            await drain
    return Footprint(idle_rss=idle, peak_rss=max(idle, peak), w3_wall=wall)


# -- the run ---------------------------------------------------------------------------


async def _timed(what: str, work: Awaitable[T]) -> T:
    async with asyncio.timeout(WORKLOAD_TIMEOUT):
        value = await work
    print(f"  {what:<40} {show(value)}", flush=True)
    return value


def show(value: object) -> str:
    """A workload's figure (or figures) as printed in the log of a run."""
    if isinstance(value, Footprint):
        return (
            f"idle {value.idle_rss / MB:.1f} MB, peak {value.peak_rss / MB:.1f} MB, "
            f"W3 wall {value.w3_wall:.3f} s"
        )
    if isinstance(value, tuple):
        return ", ".join(show(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _ratio_row(
    workload: str,
    ours: float,
    theirs: float,
    fmt: Callable[[float], str],
    target: str,
    meets: Callable[[float], bool] | None,
) -> Row:
    ratio = ours / theirs
    return Row(
        workload,
        fmt(ours),
        fmt(theirs),
        f"{ratio:.3f}x",
        target,
        None if meets is None else meets(ratio),
    )


def _rate(value: float) -> str:
    return f"{value:,.0f} /s"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


async def run(url: str, sizes: Sizes, log_level: str) -> list[Row]:
    """Run every workload on both sides; the rows of the final table."""
    print(f"W1: {sizes.w1:,} add tasks at once, then every result")
    a1 = await _timed("aioqueue tasks/s", aioqueue_w1(url, sizes.w1))
    c1 = await _timed("ceiling tasks/s", ceiling.w1(url, sizes.w1, CONCURRENCY))
    print(f"W2: {sizes.w2:,} fire-and-forget tasks, until all are processed")
    a2 = await _timed("aioqueue tasks/s", aioqueue_w2(url, sizes.w2))
    c2 = await _timed("ceiling tasks/s", ceiling.w2(url, sizes.w2, CONCURRENCY))
    print(f"W3: {sizes.w3:,} tasks sleeping {NAP_SECONDS} s, concurrency {CONCURRENCY:,}")
    a3 = await _timed("aioqueue wall s", aioqueue_w3(url, sizes.w3))
    c3 = await _timed("ceiling wall s", ceiling.w3(url, sizes.w3, CONCURRENCY, NAP_SECONDS))
    print(f"W4: {sizes.w4:,} sequential round trips")
    a4 = await _timed("aioqueue p50 ms, p99 ms", aioqueue_w4(url, sizes.w4))
    c4 = await _timed("ceiling p50 ms, p99 ms", ceiling.w4(url, sizes.w4))
    print(f"W5: aioqueue worker process (-c {CONCURRENCY:,}), idle and under W3")
    a5 = await _timed("aioqueue RSS", aioqueue_w5(url, sizes.w3, log_level))
    print(f"W6: a {CHAIN_STEPS}-step chain awaited end to end, {sizes.w6:,} times")
    a6 = await _timed("aioqueue chains/s, p50 ms", aioqueue_w6(url, sizes.w6))
    c6 = await _timed("ceiling chains/s, p50 ms", ceiling.w6(url, sizes.w6, CHAIN_STEPS))
    print(f"W7: a group of {GROUP_SIZE} add awaited with gather, {sizes.w7:,} times")
    a7 = await _timed("aioqueue groups/s", aioqueue_w7(url, sizes.w7))
    c7 = await _timed("ceiling groups/s", ceiling.w7(url, sizes.w7, GROUP_SIZE))
    return [
        _ratio_row(f"W1 results ({sizes.w1:,})", a1, c1, _rate, ">= 0.7x", lambda r: r >= 0.7),
        _ratio_row(f"W2 no results ({sizes.w2:,})", a2, c2, _rate, ">= 0.7x", lambda r: r >= 0.7),
        Row(
            f"W3 sleep {NAP_SECONDS} s, in-process ({sizes.w3:,})",
            _seconds(a3),
            _seconds(c3),
            f"{a3 / c3:.3f}x",
        ),
        Row(
            f"W3 sleep {NAP_SECONDS} s, worker process ({sizes.w3:,})",
            _seconds(a5.w3_wall),
            _seconds(c3),
            f"{a5.w3_wall / c3:.3f}x",
            "< 1.0 s",
            a5.w3_wall < 1.0,
        ),
        _ratio_row(
            f"W4 p50 ({sizes.w4:,} calls)", a4[0], c4[0], _ms, "<= 1.3x", lambda r: r <= 1.3
        ),
        _ratio_row(f"W4 p99 ({sizes.w4:,} calls)", a4[1], c4[1], _ms, "-", None),
        Row(
            "W5 idle RSS",
            f"{a5.idle_rss / MB:.1f} MB",
            target="< 50 MB",
            passed=a5.idle_rss < 50 * MB,
        ),
        Row("W5 peak RSS under W3", f"{a5.peak_rss / MB:.1f} MB"),
        _ratio_row(
            f"W6 chains ({sizes.w6:,} x {CHAIN_STEPS})",
            a6[0],
            c6[0],
            lambda v: f"{v:,.1f} /s",
            ">= 0.7x",
            lambda r: r >= 0.7,
        ),
        _ratio_row(f"W6 chain p50 ({sizes.w6:,})", a6[1], c6[1], _ms, "-", None),
        _ratio_row(
            f"W7 groups ({sizes.w7:,} x {GROUP_SIZE})",
            a7,
            c7,
            lambda v: f"{v:,.1f} /s",
            ">= 0.7x",
            lambda r: r >= 0.7,
        ),
    ]


def table(rows: list[Row]) -> str:
    header = ("workload", "aioqueue", "ceiling", "ratio", "target", "result")
    cells = [header] + [
        (r.workload, r.aioqueue, r.ceiling, r.ratio, r.target, r.verdict) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        first, *rest = row
        return "  ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    rule = "-" * len(line(header))
    return "\n".join([rule, line(header), rule, *(line(row) for row in cells[1:]), rule])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, ceiling.DEFAULT_URL),
        help=f"broker URL (default: ${URL_ENV}, else {ceiling.DEFAULT_URL})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--worker-log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="what the workers log (default: warning); with info, a worker in this "
        "process writes its lines, formatted as the CLI's, to the null device",
    )
    parser.add_argument(
        "--events",
        action="store_true",
        help="the in-process worker (W1, W2) sends Celery-format events, as worker -E",
    )
    args = parser.parse_args(argv)
    global EVENTS
    EVENTS = args.events
    logging.basicConfig(level=logging.WARNING)
    if args.worker_log_level != "warning":
        handler = logging.StreamHandler(open(os.devnull, "w"))
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        aioqueue_log = logging.getLogger("aioqueue")
        aioqueue_log.setLevel(args.worker_log_level.upper())
        aioqueue_log.addHandler(handler)
        aioqueue_log.propagate = False
    sizes = QUICK if args.quick else FULL
    rows = uvloop.run(run(args.url, sizes, args.worker_log_level))
    print(table(rows))
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
