"""aioqueue against the raw aio-pika ceiling (``ceiling.py``), side by side, in one run.

    python benchmarks/run.py [--url amqp://guest:guest@127.0.0.1:5672/] [--quick]
        [-w W1,W2] [-c 100,1000] [--repeat 3] [--json FILE] [--no-targets]

Every workload runs on both sides against the same broker, each time with a worker
process of its own started for it (``sides.py``): ``aioqueue worker -A bench_tasks:app
-c N`` as users run it, and ``ceiling_worker.py``, the least work with the same
guarantees (persistent tasks, publisher confirms on both sides, prefetch N, ack after
the outcome is confirmed). The client runs in this process. The workloads
(``workloads.py``):

* W1: n ``add`` sent at once, then every result awaited (tasks/s);
* W2: n fire-and-forget ``add`` sent in windows of 1,000 confirms, until processed
  (tasks/s);
* W3: n tasks that each sleep 0.1 s, sent at once (tasks/s; wall time shown);
* W4: n sequential round trips (p50 ms; p99 shown);
* W5: the worker process's RSS, idle before its first task (MiB);
* W6: a 10-step chain awaited end to end, n times in turn (chains/s; p50 shown); the
  ceiling's worker forwards each step itself (10 hops, one reply);
* W7: a group of 100 ``add`` gathered, n times in turn (groups/s).

W1, W2, W3 and W7 run at ``-c 100`` and ``-c 1000``; W4 and W6 at ``-c 100``; W5 at
``-c 1000``. For each, the CPU microseconds per task of the client (this process), the
worker process and the broker (the local RabbitMQ's ``beam.smp``) are read from
``/proc`` over the timed window (``cputime.py``). With ``--repeat``, each figure is the
median of the runs. The table gives aioqueue/ceiling ratios, then the targets
(``targets.py``) that were missed; the exit status is 1 when one was (unless
``--no-targets``). ``--json`` writes every figure, ratio and verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import ceiling
import cputime

# No stubs ship with psutil; types-psutil may or may not be installed.
import psutil  # type: ignore[import-untyped,unused-ignore]
import sides
import uvloop
import workloads
from bench_tasks import URL_ENV
from targets import MIB, Verdict, check
from workloads import Outcome, Side

# Generous: a workload that takes this long is broken, and a hung benchmark says less
# than a failed one.
WORKLOAD_TIMEOUT = 300.0
# Lets the worker process finish start-up allocations before the idle reading.
IDLE_SETTLE_SECONDS = 1.0
SIDES = ("aioqueue", "ceiling")
ROLES = ("worker", "client", "broker")

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

Workload = Callable[[Side, int, cputime.Meter], Awaitable[Outcome]]
WORKLOADS: dict[str, tuple[Workload, Callable[[Sizes], int]]] = {
    "W1": (workloads.w1, lambda s: s.w1),
    "W2": (workloads.w2, lambda s: s.w2),
    "W3": (workloads.w3, lambda s: s.w3),
    "W4": (workloads.w4, lambda s: s.w4),
    "W6": (workloads.w6, lambda s: s.w6),
    "W7": (workloads.w7, lambda s: s.w7),
}


@dataclass(frozen=True, slots=True)
class Case:
    workload: str
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.workload} -c {self.concurrency}"


CASES = [
    Case("W1", 100),
    Case("W1", 1000),
    Case("W2", 100),
    Case("W2", 1000),
    Case("W3", 100),
    Case("W3", 1000),
    Case("W4", 100),
    Case("W5", 1000),
    Case("W6", 100),
    Case("W7", 100),
    Case("W7", 1000),
]


@dataclass(frozen=True, slots=True)
class Measured:
    """One side's figures for a case, and its CPU microseconds per task by role."""

    figures: dict[str, float]
    cpu_us: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    sizes: Sizes
    events: bool
    log_level: str
    broker_pid: int | None


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    tasks: int
    sides: dict[str, Measured]

    @property
    def ratios(self) -> dict[str, float]:
        """aioqueue's figure over the ceiling's, for each figure both have."""
        ours, theirs = self.sides["aioqueue"].figures, self.sides["ceiling"].figures
        return {k: ours[k] / theirs[k] for k in ours if theirs.get(k)}


# -- measuring -------------------------------------------------------------------------


def _side(name: str, case: Case, options: Options) -> AbstractAsyncContextManager[sides.Running]:
    task: sides.TaskKind = "nap" if case.workload == "W3" else "add"
    # W5 reads the worker as it is once it consumes, before any task.
    warm_up = case.workload != "W5"
    if name == "ceiling":
        return sides.raw(options.url, case.concurrency, task, warm_up=warm_up)
    return sides.aioqueue(
        options.url,
        case.concurrency,
        task,
        events=options.events,
        log_level=options.log_level,
        warm_up=warm_up,
    )


async def measure(name: str, case: Case, options: Options) -> Measured:
    """Start ``name``'s worker process for ``case``, run the workload once, stop it."""
    async with _side(name, case, options) as running:
        if case.workload == "W5":
            await asyncio.sleep(IDLE_SETTLE_SECONDS)
            rss = psutil.Process(running.worker_pid).memory_info().rss
            return Measured({"idle RSS MiB": rss / MIB}, {})
        workload, size = WORKLOADS[case.workload]
        pids = {"worker": running.worker_pid, "client": os.getpid(), "broker": options.broker_pid}
        meter = cputime.Meter(pids)
        async with asyncio.timeout(WORKLOAD_TIMEOUT):
            outcome = await workload(running.side, size(options.sizes), meter)
        return Measured(outcome.figures, meter.per_task_us(outcome.tasks))


def median(runs: list[Measured]) -> Measured:
    """Each figure's and each role's median over ``runs``."""
    figures = {k: statistics.median(r.figures[k] for r in runs) for k in runs[0].figures}
    cpu: dict[str, float | None] = {}
    for role in runs[0].cpu_us:
        values = [v for r in runs if (v := r.cpu_us.get(role)) is not None]
        cpu[role] = statistics.median(values) if len(values) == len(runs) else None
    return Measured(figures, cpu)


def tasks_of(case: Case, sizes: Sizes) -> int:
    if case.workload not in WORKLOADS:
        return 0
    n = WORKLOADS[case.workload][1](sizes)
    return n * {"W6": workloads.CHAIN_STEPS, "W7": workloads.GROUP_SIZE}.get(case.workload, 1)


async def run(cases: list[Case], options: Options, repeat: int, out: TextIO) -> list[Result]:
    results = []
    for case in cases:
        runs: dict[str, list[Measured]] = {name: [] for name in SIDES}
        for _ in range(repeat):
            for name in SIDES:
                measured = await measure(name, case, options)
                print(f"  {case.key:<10} {name:<9} {show(measured)}", file=out, flush=True)
                runs[name].append(measured)
        results.append(
            Result(case, tasks_of(case, options.sizes), {n: median(r) for n, r in runs.items()})
        )
    return results


# -- reporting -------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _cpu(cpu_us: dict[str, float | None]) -> str:
    if not cpu_us:
        return "-"
    return " / ".join("-" if (v := cpu_us.get(r)) is None else f"{v:.0f}" for r in ROLES)


def show(measured: Measured) -> str:
    """One run's figures, as printed while the benchmark runs."""
    figures = ", ".join(f"{k} {_number(v)}" for k, v in measured.figures.items())
    if not measured.cpu_us:
        return figures
    return f"{figures}; CPU us/task worker/client/broker {_cpu(measured.cpu_us)}"


def table(results: list[Result]) -> str:
    header = (
        "case",
        "figure",
        "aioqueue",
        "ceiling",
        "ratio",
        "aioqueue CPU us/task w/c/b",
        "ceiling CPU",
    )
    cells: list[tuple[str, ...]] = [header]
    for result in results:
        ours, theirs = result.sides["aioqueue"], result.sides["ceiling"]
        ratios = result.ratios
        for i, (figure, value) in enumerate(ours.figures.items()):
            first = i == 0
            cells.append(
                (
                    result.case.key if first else "",
                    figure,
                    _number(value),
                    _number(theirs.figures[figure]) if figure in theirs.figures else "-",
                    f"{ratios[figure]:.2f}x" if figure in ratios else "-",
                    _cpu(ours.cpu_us) if first else "",
                    _cpu(theirs.cpu_us) if first else "",
                )
            )
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        first, second, *rest = row
        rest_cells = [c.rjust(w) for c, w in zip(rest, widths[2:], strict=True)]
        return "  ".join([first.ljust(widths[0]), second.ljust(widths[1]), *rest_cells])

    rule = "-" * len(line(header))
    return "\n".join([rule, line(header), rule, *(line(row) for row in cells[1:]), rule])


def verdicts_of(results: list[Result]) -> list[Verdict]:
    # A target's ratio is the one of the case's first (compared) figure.
    ratios = {}
    for r in results:
        first = next(iter(r.sides["aioqueue"].figures))
        if first in r.ratios:
            ratios[r.case.key] = r.ratios[first]
    return check(ratios, {r.case.key: r.sides["aioqueue"].figures for r in results})


def report(verdicts: list[Verdict]) -> str:
    missed = [v for v in verdicts if not v.met]
    lines = [f"targets: {len(verdicts) - len(missed)} of {len(verdicts)} met"]
    lines += [f"  MISSED {v.target.text}: {v.value:.3f}" for v in missed]
    return "\n".join(lines)


def document(
    results: list[Result], verdicts: list[Verdict], sizes: Sizes, repeat: int, load: list[float]
) -> dict[str, Any]:
    """Everything the run measured, for ``--json``."""
    return {
        "load_average_before": load,
        "load_average_after": list(os.getloadavg()),
        "sizes": asdict(sizes),
        "repeat": repeat,
        "cases": [
            {
                "case": r.case.key,
                "workload": r.case.workload,
                "concurrency": r.case.concurrency,
                "tasks": r.tasks,
                **{
                    name: {"figures": m.figures, "cpu_us_per_task": m.cpu_us}
                    for name, m in r.sides.items()
                },
                "ratios": r.ratios,
            }
            for r in results
        ],
        "targets": [{"target": v.target.text, "value": v.value, "met": v.met} for v in verdicts],
    }


# -- the command -----------------------------------------------------------------------


def _selected(workloads_arg: str | None, concurrency_arg: str | None) -> list[Case]:
    names = {w.strip().upper() for w in workloads_arg.split(",")} if workloads_arg else None
    levels = {int(c) for c in concurrency_arg.split(",")} if concurrency_arg else None
    known = {c.workload for c in CASES}
    if names is not None and not names <= known:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(names - known))}")
    return [
        c
        for c in CASES
        if (names is None or c.workload in names) and (levels is None or c.concurrency in levels)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, ceiling.DEFAULT_URL),
        help=f"broker URL (default: ${URL_ENV}, else {ceiling.DEFAULT_URL})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "-w", "--workloads", help="comma-separated workloads to run, e.g. W1,W2 (default: all)"
    )
    parser.add_argument(
        "-c", "--concurrency", help="only the cases at these concurrencies, e.g. 100"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; medians shown")
    parser.add_argument(
        "--worker-log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="the aioqueue worker's -l (default: warning); below warning its lines go "
        "to the null device (formatted, so they cost what they cost)",
    )
    parser.add_argument(
        "--events", action="store_true", help="the aioqueue worker sends task events (-E)"
    )
    parser.add_argument("--json", metavar="FILE", help="write all figures as JSON here (-: stdout)")
    parser.add_argument(
        "--no-targets",
        action="store_true",
        help="report missed targets without the exit status 1",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    cases = _selected(args.workloads, args.concurrency)
    # With the JSON on stdout, the human-readable output goes to stderr.
    out = sys.stderr if args.json == "-" else sys.stdout
    logging.basicConfig(level=logging.WARNING)
    sizes = QUICK if args.quick else FULL
    load = list(os.getloadavg())

    async def whole() -> list[Result]:
        options = Options(
            args.url, sizes, args.events, args.worker_log_level, await cputime.broker_pid(args.url)
        )
        return await run(cases, options, args.repeat, out)

    results = uvloop.run(whole())
    verdicts = verdicts_of(results)
    print(table(results), file=out)
    print(f"load average before {load}, after {list(os.getloadavg())}", file=out)
    print(report(verdicts), file=out)
    if args.json:
        text = json.dumps(document(results, verdicts, sizes, args.repeat, load), indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    if args.no_targets:
        return 0
    return 0 if all(v.met for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
