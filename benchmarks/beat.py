"""Beat: tick lateness against the schedule, and failover time over leader kills.

    python benchmarks/beat.py [--url amqp://guest:guest@127.0.0.1:5672/] [--quick]

Both parts run ``beat_tasks:app`` (an every-1-s entry whose task appends ``time.time()``
to a file) in processes as users run them, from this directory:

* **Lateness**: one ``aioqueue worker --beat`` process for 60 slots (``--quick``: 10).
  A tick's slot is on the entry's grid (whole seconds since the epoch); a tick expires
  one interval after its slot, so a tick that runs does so less than 1 s after its slot
  and its slot is the whole second at or before its run. Lateness = run time - slot;
  p50, p99 and max are shown, with the slots expected from the first one seen on, and
  how many were seen, run twice and missed.
* **Failover**: one ``aioqueue worker`` (no beat) runs the ticks; three standalone
  ``aioqueue beat`` processes compete for leadership. Five times (``--quick``: 2) the
  leader (the process whose last leadership line is ``beat: leading``) is killed with
  SIGKILL half-way between two slots, once the ticks came on time for a few slots, and
  a replacement is started. For each kill: the time to a standby's ``beat: leading``
  line, to the next tick's run, and how much later than the next slot that run came
  (its delay over schedule: 0 when the takeover beat the next slot); then the median
  and max of each, and slots seen, run twice and missed over the whole run.

Every slot sent is also counted from the beats' ``beat: sent <task>[<id>]`` lines:
tick ids derive from the entry and the slot, so each maps back to its slot, and a slot
sent twice shows. Each run uses an app name (leader, stored state) and a queue of its
own and deletes its queues. The exit status is 1 when a slot ran or was sent twice, or
a failover took 5 s or more (the issue's target).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from beat_tasks import APP_ENV, ENTRY, RUNS_ENV
from bench_tasks import DEFAULT_URL, QUEUE_ENV, URL_ENV

from aioqueue import AioQueueError
from aioqueue.beat.entry import tick_id
from aioqueue.topology import beat_names, dlq_name
from aioqueue.transport.amqp import AmqpTransport, state_queue_name

HERE = Path(__file__).resolve().parent
APP_SPEC = "beat_tasks:app"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# A tick that does not come within this is a failure, not a slow figure.
TICK_TIMEOUT = 20.0
# The target for a standby taking over.
FAILOVER_TARGET = 5.0
# Slots on time between kills, so each kill starts from a steady state.
STEADY_SLOTS = 3
# Where in the interval the leader is killed: away from the slot, so the tick after
# the kill is the new leader's, never one the old leader sent just before.
KILL_PHASE = 0.5
# After the last slot of a window: time for its tick to run and be written.
SETTLE = 1.5
POLL = 0.01

SENT = re.compile(r"beat: sent \S+\[([0-9a-f-]+)\] for (\S+)")

log = logging.getLogger("benchmarks.beat")


@dataclass(frozen=True, slots=True)
class Sizes:
    lateness_slots: int
    kills: int


FULL = Sizes(lateness_slots=60, kills=5)
QUICK = Sizes(lateness_slots=10, kills=2)


# -- processes -------------------------------------------------------------------------


def _command() -> list[str]:
    # The console script next to this interpreter, as run.py runs its worker.
    script = shutil.which("aioqueue", path=str(Path(sys.executable).parent))
    return [script] if script is not None else [sys.executable, "-m", "aioqueue.cli"]


@dataclass(slots=True)
class Line:
    at: float  # time.time() when this process read it
    stream: str
    text: str


@dataclass(slots=True)
class Proc:
    """A child process whose output is read line by line, stamped as it arrives."""

    label: str
    proc: asyncio.subprocess.Process
    lines: list[Line] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    rules: int = 0
    banner_role: str | None = None
    leading: bool = False
    leading_at: list[float] = field(default_factory=list)
    sent_ids: list[str] = field(default_factory=list)
    killed_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and self.killed_at is None

    @property
    def banner_done(self) -> bool:
        return self.rules >= 2

    def _see(self, stream: str, text: str) -> None:
        self.lines.append(Line(time.time(), stream, text))
        if text and set(text) == {"-"}:
            self.rules += 1
        elif self.rules == 1 and text.split()[:1] == ["beat"]:
            self.banner_role = text.split()[1]
        if text.endswith("beat: leading"):
            self.leading = True
            self.leading_at.append(self.lines[-1].at)
        elif text.endswith("beat: no longer leading"):
            self.leading = False
        elif (match := SENT.search(text)) is not None and match.group(2) == ENTRY:
            self.sent_ids.append(match.group(1))

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        while line := await stream.readline():
            self._see(name, line.decode(errors="replace").rstrip())

    def tail(self, n: int = 15) -> str:
        return "\n".join(f"    {line.stream}: {line.text}" for line in self.lines[-n:])


async def spawn(label: str, args: list[str], env: dict[str, str]) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *_command(),
        *args,
        "-A",
        APP_SPEC,
        "-l",
        "info",
        cwd=HERE,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    child = Proc(label, proc)
    assert proc.stdout is not None and proc.stderr is not None
    child.readers = [
        asyncio.create_task(child._read(proc.stdout, "out")),
        asyncio.create_task(child._read(proc.stderr, "err")),
    ]
    return child


async def wait_for(
    what: str, ready: Callable[[], object], timeout: float, procs: Iterable[Proc] = ()
) -> None:
    """Poll ``ready()`` until true; fail after ``timeout`` s or when a process dies."""
    watched = list(procs)
    deadline = time.monotonic() + timeout
    while not ready():
        for child in watched:
            if child.proc.returncode is not None and child.killed_at is None:
                raise RuntimeError(
                    f"{what}: {child.label} exited with status {child.proc.returncode}:\n"
                    f"{child.tail()}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"  {c.label}:\n{c.tail()}" for c in watched)
            raise TimeoutError(f"{what}: not within {timeout:g} s\n{tails}")
        await asyncio.sleep(POLL)


async def start(label: str, args: list[str], env: dict[str, str], procs: list[Proc]) -> Proc:
    child = await spawn(label, args, env)
    procs.append(child)
    await wait_for(f"{label}'s banner", lambda: child.banner_done, START_TIMEOUT, [child])
    return child


async def stop(child: Proc) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; then read what is left of its output."""
    if child.proc.returncode is None:
        child.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await child.proc.wait()
        except TimeoutError:
            log.warning("%s ignored SIGTERM for %g s; killing it", child.label, STOP_TIMEOUT)
            child.proc.kill()
            await child.proc.wait()
    await _finish_reading(child)


async def kill(child: Proc) -> float:
    """SIGKILL; the time it was sent."""
    child.killed_at = time.time()
    child.proc.send_signal(signal.SIGKILL)
    async with asyncio.timeout(STOP_TIMEOUT):
        await child.proc.wait()
    await _finish_reading(child)
    return child.killed_at


async def _finish_reading(child: Proc) -> None:
    try:
        async with asyncio.timeout(5.0):
            await asyncio.gather(*child.readers, return_exceptions=True)
    except TimeoutError:
        for reader in child.readers:
            reader.cancel()


async def kill_all(procs: list[Proc]) -> None:
    for child in procs:
        if child.proc.returncode is None:
            child.proc.kill()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await child.proc.wait()
            except TimeoutError:
                log.warning("%s (pid %d) survived SIGKILL", child.label, child.proc.pid)
        for reader in child.readers:
            reader.cancel()


# -- the runs the task recorded --------------------------------------------------------


class Runs:
    """The run times the task appended to ``path``, read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: list[float] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[float]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return self.times
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        self.times += [float(line) for line in complete if line]
        return self.times

    def after(self, moment: float) -> list[float]:
        return [t for t in self.poll() if t > moment]


def slot_of(run: float) -> int:
    # Ticks expire one interval after their slot, so a run is less than 1 s late.
    return math.floor(run)


@dataclass(frozen=True, slots=True)
class Tally:
    expected: int
    seen: int
    duplicated: int
    missed: list[int]
    lateness: list[float]  # seconds, the first run of each slot seen

    def counts(self) -> str:
        return f"{self.expected} / {self.seen} / {self.duplicated} / {len(self.missed)}"


def tally(runs: list[float], first: int, last: int) -> Tally:
    window = [t for t in runs if first <= slot_of(t) <= last]
    per_slot = Counter(slot_of(t) for t in window)
    firsts: dict[int, float] = {}
    for t in sorted(window):
        firsts.setdefault(slot_of(t), t)
    return Tally(
        expected=last - first + 1,
        seen=len(per_slot),
        duplicated=sum(1 for n in per_slot.values() if n > 1),
        missed=[s for s in range(first, last + 1) if s not in per_slot],
        lateness=[t - s for s, t in sorted(firsts.items())],
    )


def sent_slots(procs: Iterable[Proc], first: int, last: int) -> tuple[Counter[int], int]:
    """Slots sent (per the beats' logs) in [first, last], and ids matching no slot near."""
    ids = {tick_id(ENTRY, datetime.fromtimestamp(s, UTC)): s for s in range(first - 30, last + 30)}
    sent: Counter[int] = Counter()
    unknown = 0
    for child in procs:
        for tid in child.sent_ids:
            slot = ids.get(tid)
            if slot is None:
                unknown += 1
            elif first <= slot <= last:
                sent[slot] += 1
    return sent, unknown


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


# -- the two parts ---------------------------------------------------------------------


@dataclass(slots=True)
class Report:
    lines: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)


def _env(url: str, app: str, queue: str, runs: Path) -> dict[str, str]:
    return {URL_ENV: url, APP_ENV: app, QUEUE_ENV: queue, RUNS_ENV: str(runs)}


def _sent_line(procs: list[Proc], first: int, last: int) -> tuple[str, int]:
    sent, unknown = sent_slots(procs, first, last)
    twice = sum(1 for n in sent.values() if n > 1)
    text = (
        f"  ticks sent (beat logs)             {sum(sent.values())} for {len(sent)} slots; "
        f"sent twice {twice}; ids of no slot near {unknown}"
    )
    expired = sum(
        1 for child in procs for line in child.lines if line.text.endswith("expired, not run")
    )
    text += f"; expired in the worker {expired}"
    return text, twice


async def lateness(url: str, slots: int, tmp: Path, report: Report, names: list[str]) -> None:
    tag = uuid.uuid4().hex[:12]
    app, queue, runs_path = f"beatbench-{tag}", f"bench.beat.{tag}", tmp / f"late-{tag}"
    names += [app, queue]
    runs = Runs(runs_path)
    procs: list[Proc] = []
    try:
        worker = await start(
            "worker --beat", ["worker", "--beat"], _env(url, app, queue, runs_path), procs
        )
        if worker.banner_role != "leader":
            report.failed.append(f"lateness: the only beat's banner says {worker.banner_role}")
        await wait_for("the first tick", runs.poll, TICK_TIMEOUT, procs)
        first = slot_of(runs.times[0])
        last = first + slots - 1
        await sleep_until(last + SETTLE)
        await wait_for(
            "the last slot's tick",
            lambda: any(slot_of(t) >= last for t in runs.poll()),
            TICK_TIMEOUT,
            procs,
        )
        await stop(worker)
        result = tally(runs.poll(), first, last)
        late = result.lateness
        report.say(f"tick lateness: 1-s entry, {slots} slots, one aioqueue worker --beat")
        report.say(
            f"  lateness p50 / p99 / max           {_ms(percentile(late, 50))} / "
            f"{_ms(percentile(late, 99))} / {_ms(max(late))}"
        )
        report.say(f"  slots expected / seen / dup / miss {result.counts()}")
        text, twice = _sent_line(procs, first, last)
        report.say(text)
        if result.duplicated or twice:
            report.failed.append("lateness: a slot ran or was sent twice")
    finally:
        await kill_all(procs)


@dataclass(frozen=True, slots=True)
class Failover:
    killed: str
    killed_at: float
    to_leading: float | None
    to_tick: float
    over_schedule: float
    lost: int


@dataclass(slots=True)
class Cluster:
    """The failover part's processes: one worker, and the beats (killed ones too)."""

    env: dict[str, str]
    runs: Runs
    procs: list[Proc] = field(default_factory=list)
    beats: list[Proc] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)

    async def add_beat(self) -> Proc:
        beat = await start(f"beat {len(self.beats) + 1}", ["beat"], self.env, self.procs)
        self.beats.append(beat)
        return beat

    def leaders(self) -> list[Proc]:
        return [b for b in self.beats if b.alive and b.leading]

    async def steady(self, what: str, since: float) -> None:
        """Wait for STEADY_SLOTS ticks after ``since``."""
        await wait_for(
            f"{what}: {STEADY_SLOTS} ticks after the last takeover",
            lambda: len(self.runs.after(since)) >= STEADY_SLOTS,
            TICK_TIMEOUT,
            self.procs,
        )

    async def kill_leader(self, k: int) -> Failover:
        """Kill the one leader KILL_PHASE s after a slot; measure the takeover."""
        what = f"kill {k}"
        await wait_for(
            f"{what}: exactly one leader",
            lambda: len(self.leaders()) == 1,
            TICK_TIMEOUT,
            self.procs,
        )
        leader = self.leaders()[0]
        moment = math.floor(time.time()) + KILL_PHASE
        if moment < time.time() + 0.05:
            moment += 1
        await sleep_until(moment)
        if self.leaders() != [leader]:
            self.odd.append(f"{what}: the leadership changed just before the kill")
        killed_at = await kill(leader)
        others = [b for b in self.beats if b.alive]
        await wait_for(
            f"{what}: the next tick",
            lambda: bool(self.runs.after(killed_at)),
            TICK_TIMEOUT,
            self.procs,
        )
        next_run = min(self.runs.after(killed_at))

        def took_over() -> list[float]:
            return [t for b in others for t in b.leading_at if t > killed_at]

        try:
            await wait_for(f"{what}: a standby leading", took_over, TICK_TIMEOUT, self.procs)
            to_leading: float | None = min(took_over()) - killed_at
        except TimeoutError:
            to_leading = None
            self.odd.append(f"{what}: no standby logged 'beat: leading'")
        next_slot = math.floor(killed_at) + 1
        return Failover(
            killed=leader.label,
            killed_at=killed_at,
            to_leading=to_leading,
            to_tick=next_run - killed_at,
            over_schedule=max(0.0, next_run - next_slot),
            lost=max(0, slot_of(next_run) - next_slot),
        )


async def failover(url: str, kills: int, tmp: Path, report: Report, names: list[str]) -> None:
    tag = uuid.uuid4().hex[:12]
    app, queue, runs_path = f"beatbench-{tag}", f"bench.beat.{tag}", tmp / f"fail-{tag}"
    names += [app, queue]
    cluster = Cluster(_env(url, app, queue, runs_path), Runs(runs_path))
    runs = cluster.runs
    results: list[Failover] = []
    try:
        await start("worker", ["worker"], cluster.env, cluster.procs)
        for _ in range(3):
            await cluster.add_beat()
        roles = Counter(b.banner_role for b in cluster.beats)
        if roles != Counter({"leader": 1, "standby": 2}):
            cluster.odd.append(f"banners at start: {dict(roles)}")
        await wait_for("the first tick", runs.poll, TICK_TIMEOUT, cluster.procs)
        first = slot_of(runs.times[0])
        since = runs.times[0]
        for k in range(1, kills + 1):
            await cluster.steady(f"kill {k}", since)
            results.append(await cluster.kill_leader(k))
            since = results[-1].killed_at + results[-1].to_tick
            replacement = await cluster.add_beat()
            if replacement.banner_role != "standby":
                cluster.odd.append(
                    f"kill {k}: the replacement's banner says {replacement.banner_role}"
                )
        await cluster.steady("the end", since)
        last = slot_of(runs.poll()[-1])
        for child in reversed(cluster.procs):  # the beats first, then the worker
            await stop(child)
        _report_failover(report, cluster, results, kills, first, last)
    finally:
        await kill_all(cluster.procs)


def _report_failover(
    report: Report, cluster: Cluster, results: list[Failover], kills: int, first: int, last: int
) -> None:
    result = tally(cluster.runs.poll(), first, last)
    report.say(
        f"failover: 3 x aioqueue beat + 1 aioqueue worker, 1-s entry, {kills} leader "
        f"kills (SIGKILL {KILL_PHASE:g} s after a slot)"
    )
    report.say("  kill  killed  -> 'beat: leading'  -> next tick run  over schedule  lost")
    for k, r in enumerate(results, 1):
        leading = _ms(r.to_leading) if r.to_leading is not None else "-"
        report.say(
            f"  {k:>4}  {r.killed:<6}  {leading:>17}  {_ms(r.to_tick):>15}  "
            f"{_ms(r.over_schedule):>13}  {r.lost:>4}"
        )
    to_leading = [r.to_leading for r in results if r.to_leading is not None]
    for what, values in (
        ("kill -> 'beat: leading'", to_leading),
        ("kill -> next tick run", [r.to_tick for r in results]),
        ("next tick over schedule", [r.over_schedule for r in results]),
    ):
        if values:
            report.say(
                f"  {what:<34} median {_ms(statistics.median(values))}, max {_ms(max(values))}"
            )
    report.say(
        f"  slots expected / seen / dup / miss {result.counts()} "
        f"(slots {first}..{last}; missed: {result.missed or 'none'})"
    )
    text, twice = _sent_line(cluster.procs, first, last)
    report.say(text)
    late = result.lateness
    report.say(
        f"  lateness over the run p50 / p99    {_ms(percentile(late, 50))} / "
        f"{_ms(percentile(late, 99))}"
    )
    for note in cluster.odd:
        report.say(f"  odd: {note}")
    if result.duplicated or twice:
        report.failed.append("failover: a slot ran or was sent twice")
    if any(r.to_tick >= FAILOVER_TARGET for r in results):
        report.failed.append(
            f"failover: a next tick came {FAILOVER_TARGET:g} s or more after a kill"
        )


async def delete_queues(url: str, names: list[str]) -> None:
    """Delete each run's task queue (+ dlq and exchange) and its beat's state queues."""
    transport = AmqpTransport(url)
    try:
        await transport.connect()
        it = iter(names)
        for app, queue in zip(it, it, strict=True):
            _lease, state, stored = beat_names(app)
            for kind, name, delete in (
                ("queue", queue, transport.delete_queue),
                ("queue", dlq_name(queue), transport.delete_queue),
                ("exchange", queue, transport.delete_exchange),
                ("queue", state_queue_name(state), transport.delete_queue),
                ("queue", state_queue_name(stored), transport.delete_queue),
            ):
                try:
                    await delete(name)
                except AioQueueError as exc:
                    log.warning("could not delete %s %r: %s", kind, name, exc)
    finally:
        await transport.aclose()


async def run(url: str, sizes: Sizes) -> Report:
    report = Report()
    names: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="aioqueue-beat-") as tmp:
            await lateness(url, sizes.lateness_slots, Path(tmp), report, names)
            await failover(url, sizes.kills, Path(tmp), report, names)
    finally:
        await delete_queues(url, names)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"broker URL (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    parser.add_argument("--quick", action="store_true", help="10 slots and 2 kills")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = uvloop.run(run(args.url, QUICK if args.quick else FULL))
    for failure in report.failed:
        print(f"FAILED: {failure}", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
