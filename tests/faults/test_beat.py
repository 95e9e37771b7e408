"""Beat in processes as users run it: ``aioqueue worker --beat``, ``aioqueue beat``,
``aioqueue beat add|remove|list``, against a real RabbitMQ.

Several beat processes (each also a worker) run ``tests/faults/beat_app.py`` on the
test's queue; every run of its task appends its wall-clock time to a run log. The ticks
of an entry sit on a fixed grid (multiples of the interval in Unix time), are sent at or
after their slot and expire one interval after it, so a run at time ``t`` belongs to the
slot ``floor(t / interval)``: two runs in one slot are a tick sent twice, a slot without
a run is a tick lost. Entries whose missed slots are all caught up (``catch_up="all"``,
no expiry) are checked by counting instead: exactly one run per slot from the first run
to the last.

Leaders are found by the banner (``beat  leader`` or ``standby``); processes are killed
(SIGKILL), stopped (SIGTERM), cut off (``rabbitmqctl close_all_connections``), and the
broker itself is restarted (a RabbitMQ node of the test's own).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from aioqueue import App, Signature
from aioqueue.beat import every
from tests.faults.beat_app import create_app
from tests.helpers import close_connections, delete_topology, eventually
from tests.processes import CLI, ONE_LOOP, ROOT, TIMEOUT, WorkerProcess, WorkerProcesses

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

APP = "tests.faults.beat_app:app"
needs_rabbitmqctl = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"
)


@dataclass
class Beats:
    """Beat processes of one app (one name: one leader, one stored state) on one queue."""

    amqp_url: str
    name: str
    queue: str
    log: Path
    processes: WorkerProcesses
    every: float | None = None  # the interval of the entry in code, ``tick``

    @property
    def env(self) -> dict[str, str]:
        env = {
            "AIOQUEUE_TEST_BROKER": self.amqp_url,
            "AIOQUEUE_TEST_APP": self.name,
            "AIOQUEUE_TEST_QUEUE": self.queue,
            "AIOQUEUE_TEST_LOG": str(self.log),
        }
        if self.every is not None:
            env["AIOQUEUE_TEST_EVERY"] = str(self.every)
        return env

    def client(self) -> App:
        """An app of the same name, for ``app.beat.add`` and the like."""
        return create_app(self.amqp_url, self.name, self.queue)

    async def start(self, command: str = "worker") -> WorkerProcess:
        """A ``worker --beat`` (or a standalone ``beat``), returned past its banner."""
        args = ("-Q", self.queue, "-c", "4", "--beat") if command == "worker" else ()
        return await self.processes.start(APP, *args, env=self.env, command=command)

    async def start_many(self, n: int) -> list[WorkerProcess]:
        args = ("-Q", self.queue, "-c", "4", "--beat")
        return await self.processes.start_many(n, APP, *args, env=self.env)

    async def cli(self, *args: str) -> str:
        """``aioqueue beat <args>`` (add, remove, list) run to completion; its stdout."""
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **self.env,
        }
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(
                [sys.executable, *CLI, "beat", *args],
                cwd=ROOT,
                env=environment,
                check=False,
            )
        output = done.stdout.decode()
        assert done.returncode == 0, f"beat {args}: {output}\n{done.stderr.decode()}"
        return output

    def runs(self, label: str = "code") -> list[float]:
        """The times of the messages of the entry sending ``beatfaults.tick(label)``,
        each at its first run: what beat sent. A message run again (a redelivery after
        a lost connection that reached the other worker: at least once) counts once."""
        first: dict[str, float] = {}
        for what, when, task_id in self._lines():
            if what == label:
                first[task_id] = min(when, first.get(task_id, when))
        return sorted(first.values())

    def reruns(self, label: str = "code") -> int:
        """How many runs of ``label``'s messages were of a message that had run before."""
        lines = [task_id for what, _, task_id in self._lines() if what == label]
        return len(lines) - len(set(lines))

    def _lines(self) -> list[tuple[str, float, str]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            _, _, what, when, task_id = line.split(" ")
            out.append((what, float(when), task_id))
        return out


@pytest.fixture
async def beats(
    amqp_url: str, queue_name: str, tmp_path: Path, worker_processes: WorkerProcesses
) -> AsyncIterator[Beats]:
    state = Beats(
        amqp_url,
        f"beat-{uuid.uuid4().hex[:8]}",
        queue_name,
        tmp_path / "runs.log",
        worker_processes,
    )
    try:
        yield state
    finally:
        await worker_processes.aclose()
        await delete_topology(amqp_url, queue_name)


def role(process: WorkerProcess) -> str:
    """``leader`` or ``standby``, as its banner says."""
    found = re.search(r"^\s*beat\s+(leader|standby)\b", process.banner, re.MULTILINE)
    assert found, process.banner
    return found.group(1)


def slots(runs: Sequence[float], interval: float) -> list[int]:
    """The slot (a multiple of ``interval`` in Unix time, by its index) of every run."""
    return [math.floor(t / interval) for t in runs]


def duplicates(runs: Sequence[float], interval: float) -> dict[int, int]:
    """Slots run more than once, with their counts."""
    return {s: n for s, n in Counter(slots(runs, interval)).items() if n > 1}


def missing(runs: Sequence[float], interval: float) -> list[int]:
    """Slots between the first run and the last that have no run."""
    seen = set(slots(runs, interval))
    return [s for s in range(min(seen), max(seen) + 1) if s not in seen] if seen else []


def first_after(runs: Sequence[float], when: float) -> float | None:
    return next((t for t in runs if t > when), None)


def delay_after(times: Sequence[float], when: float) -> float:
    """Seconds from ``when`` to the first of ``times`` after it."""
    following = first_after(times, when)
    assert following is not None, f"nothing after {when}: {times}"
    return round(following - when, 2)


def gaps(runs: Sequence[float]) -> list[float]:
    return [round(b - a, 2) for a, b in zip(runs, runs[1:], strict=False)]


async def wait_runs(beats: Beats, label: str, count: int, timeout: float = 20) -> None:
    await eventually(lambda: len(beats.runs(label)) >= count, timeout)


# -- one leader among three ------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_three_beats_send_each_slot_once(beats: Beats) -> None:
    interval, duration = 2.0, 30.0
    beats.every = interval
    processes = await beats.start_many(3)
    assert sorted(role(p) for p in processes) == ["leader", "standby", "standby"]
    start = time.time()
    await anyio.sleep(duration)
    end = time.time()
    await anyio.sleep(0.5)  # the tick of the last slot runs

    every_run = beats.runs()
    assert not duplicates(every_run, interval), f"slots sent twice: gaps {gaps(every_run)}"
    runs = [t for t in every_run if start <= t <= end]
    assert not missing(runs, interval), f"slots lost: gaps {gaps(runs)}"
    assert abs(len(runs) - duration / interval) <= 2, gaps(runs)
    # The leader alone sent ticks (by what each process logged).
    for process in processes:
        assert process.returncode is None, process.stderr()
        sent = process.stderr().count("beat: sent")
        assert (sent > 0) == (role(process) == "leader"), (role(process), sent)


# -- failover ------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_killing_the_leader_a_standby_takes_over_within_5_s(beats: Beats) -> None:
    interval = 2.0
    beats.every = interval
    processes = await beats.start_many(3)
    await wait_runs(beats, "code", 3)
    killed: list[float] = []
    for _ in range(2):  # two leaders in turn
        leaders = [p for p in processes if p.returncode is None and _leads(p)]
        assert len(leaders) == 1, [p.stderr()[-2000:] for p in processes]
        await anyio.sleep(0.5)  # between two slots: the kill does not race a tick
        assert await leaders[0].kill() == -signal.SIGKILL
        killed.append(time.time())
        await eventually(lambda: first_after(beats.runs(), killed[-1]) is not None, 10)
        await anyio.sleep(2 * interval)

    runs = beats.runs()
    assert not duplicates(runs, interval), f"slots sent twice: gaps {gaps(runs)}"
    for kill in killed:
        following = first_after(runs, kill)
        assert following is not None
        assert following - kill < 5, f"next tick {following - kill:.2f} s after the kill"
    # At most one slot lost per failover (a leader killed between recording and sending).
    assert len(missing(runs, interval)) <= len(killed), f"gaps {gaps(runs)}"
    # Takeover: when a standby logged that it leads, after each kill.
    led = sorted(t for p in processes for t in _led_at(p))
    takeovers = [delay_after(led, kill - 0.01) for kill in killed]
    assert all(0 <= t < 5 for t in takeovers), takeovers
    print(
        "failover: kill -> leading",
        takeovers,
        "kill -> next tick",
        [delay_after(runs, kill) for kill in killed],
    )


def _led_at(process: WorkerProcess) -> list[float]:
    """When the process started leading, by its log (``[%Y-%m-%d %H:%M:%S,ms: ...``)."""
    out = []
    for found in re.finditer(
        r"^\[(\S+ \S+),(\d{3}): INFO/\S+\] beat: leading$", process.stderr(), re.MULTILINE
    ):
        seconds = time.mktime(time.strptime(found.group(1), "%Y-%m-%d %H:%M:%S"))
        out.append(seconds + int(found.group(2)) / 1000)
    return out


def _leads(process: WorkerProcess) -> bool:
    """Whether the process leads now, by its banner and what it logged since."""
    text = process.stderr()
    led = text.rfind("beat: leading")
    stopped = text.rfind("beat: no longer leading")
    return led > stopped or (led == -1 and stopped == -1 and role(process) == "leader")


# -- runtime entries -----------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_an_entry_added_from_another_process_fires_and_stops_once_removed(
    beats: Beats,
) -> None:
    interval = 1.0
    processes = await beats.start_many(2)
    assert sorted(role(p) for p in processes) == ["leader", "standby"]
    added_output = await beats.cli(
        "add", "-A", APP, "rt", "--every", "1", "--task", "beatfaults.tick", "--args", '["rt"]'
    )
    added = time.time()
    assert "rt" in added_output
    await eventually(lambda: bool(beats.runs("rt")), 10)
    started_after = beats.runs("rt")[0] - added
    assert started_after < 3, f"first tick {started_after:.2f} s after the add"
    assert "rt: beatfaults.tick" in await beats.cli("list", "-A", APP)
    await wait_runs(beats, "rt", 4, 10)

    await beats.cli("remove", "-A", APP, "rt")
    removed = time.time()
    await anyio.sleep(4)
    runs = beats.runs("rt")
    assert runs[-1] - removed < 3, f"a tick {runs[-1] - removed:.2f} s after the removal"
    assert "rt:" not in await beats.cli("list", "-A", APP)
    assert not duplicates(runs, interval), gaps(runs)
    assert not missing(runs, interval), gaps(runs)
    print(
        f"add -> first tick {started_after:.2f} s; remove -> last tick {runs[-1] - removed:.2f} s"
    )


@pytest.mark.timeout(90)
async def test_entries_and_last_runs_survive_restarting_every_beat(beats: Beats) -> None:
    interval = 2.0
    beats.every = interval
    async with beats.client() as client:
        # Every missed slot is sent (once) and never expires: counting the runs tells
        # whether the new leaders knew the last run.
        await client.beat.add(
            "rt",
            every(1),
            Signature("beatfaults.tick", ("rt",)),
            catch_up="all",
            expires=0,
        )
    first = await beats.start_many(3)
    await wait_runs(beats, "rt", 3)
    await wait_runs(beats, "code", 2)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            for process in first:
                tg.start_soon(process.stop)
    assert [p.returncode for p in first] == [0, 0, 0], [p.stderr()[-2000:] for p in first]
    stopped = time.time()
    before = len(beats.runs("rt"))
    await anyio.sleep(3)  # three slots of rt pass with no beat
    assert len(beats.runs("rt")) == before

    second = [await beats.start("beat"), *await beats.start_many(2)]
    assert sorted(role(p) for p in second) == ["leader", "standby", "standby"]
    await eventually(lambda: len(beats.runs("rt")) >= before + 6, 15)
    await anyio.sleep(1.5)
    await second[0].stop()  # the standalone beat, no worker: stops beating first
    await anyio.sleep(1.5)  # every tick sent has run

    rt = beats.runs("rt")
    spanned = math.floor(rt[-1]) - math.floor(rt[0]) + 1
    # One run per slot of rt, across the restart: none twice (a slot already sent
    # sent again), none lost (a SIGTERM between recording a slot and sending it, or the
    # last run forgotten: the missed slots not caught up).
    assert len(rt) == spanned, f"{len(rt)} runs for {spanned} slots: {gaps(rt)}"
    code = beats.runs()
    assert not duplicates(code, interval), gaps(code)
    resumed = first_after(rt, stopped)
    assert resumed is not None
    print(f"rt: {len(rt)} runs for {spanned} slots; gaps {gaps(rt)}")


# -- the broker going away ---------------------------------------------------------------


@pytest.mark.timeout(90)
@needs_rabbitmqctl
async def test_beat_resumes_after_the_broker_drops_every_connection(beats: Beats) -> None:
    interval = 2.0
    beats.every = interval
    processes = await beats.start_many(3)
    await wait_runs(beats, "code", 3)
    drops: list[float] = []
    for _ in range(2):
        await anyio.sleep(0.5)
        await anyio.to_thread.run_sync(close_connections, beats.amqp_url)
        drops.append(time.time())
        await eventually(lambda: first_after(beats.runs(), drops[-1] + 0.5) is not None, 15)
        await anyio.sleep(3 * interval)

    runs = beats.runs()
    assert not duplicates(runs, interval), f"slots sent twice: gaps {gaps(runs)}"
    resumed = [delay_after(runs, drop + 0.5) + 0.5 for drop in drops]
    assert all(delay < 10 for delay in resumed), resumed
    # Ticks go on after the reconnection, one per slot again.
    after = [t for t in runs if t > drops[-1] + 3]
    assert len(after) >= 2 and not missing(after, interval), gaps(runs)
    assert all(p.returncode is None for p in processes)
    print("drop -> next tick:", resumed)


# -- a broker restart ------------------------------------------------------------------


@dataclass
class Node:
    """A RabbitMQ node of the test's own (its data under the test's tmp_path)."""

    name: str
    port: int
    env: dict[str, str]
    ctl: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def rabbitmqctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.ctl, "-n", self.name, *args],
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rabbitmq_script(name: str) -> str | None:
    # The scripts themselves: /usr/sbin's wrappers run them as the rabbitmq user, who
    # cannot reach the test's tmp_path.
    direct = Path("/usr/lib/rabbitmq/bin") / name
    return str(direct) if direct.exists() else shutil.which(name)


@pytest.fixture
def own_rabbitmq(tmp_path: Path) -> Iterator[Node]:
    """A separate RabbitMQ node (own name, ports, data, logs, Erlang cookie), stopped at
    the end; skips if it cannot start within 60 s."""
    server, ctl = _rabbitmq_script("rabbitmq-server"), _rabbitmq_script("rabbitmqctl")
    if server is None or ctl is None:
        pytest.skip("needs rabbitmq-server and rabbitmqctl")
    base = tmp_path / "rabbitmq"
    for sub in ("home", "mnesia", "log"):
        (base / sub).mkdir(parents=True)
    port = _free_port()
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = {port}\n")
    (base / "enabled_plugins").write_text("[].\n")
    name = f"aioqueue-test-{uuid.uuid4().hex[:8]}@localhost"
    env = {
        **os.environ,
        "HOME": str(base / "home"),  # its own Erlang cookie, for the node and its ctl
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(_free_port()),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
    }
    node = Node(name, port, env, ctl)
    try:
        started = subprocess.run(
            [server, "-detached"], env=env, capture_output=True, text=True, timeout=60
        )
        deadline = time.monotonic() + 60
        while True:
            # Fails at once while the node has not registered yet: ask again.
            if node.rabbitmqctl("await_startup", "--timeout", "10", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.skip(
                    f"a RabbitMQ node of our own did not start within 60 s: "
                    f"{started.stdout}{started.stderr}"
                )
            time.sleep(0.5)
        yield node
    finally:
        stopped = node.rabbitmqctl("stop", check=False)
        pid_file = base / "rabbitmq.pid"
        if stopped.returncode != 0 and pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, IndexError, ProcessLookupError):
                pass


@pytest.mark.timeout(120)
async def test_entries_and_last_runs_survive_a_broker_restart(
    own_rabbitmq: Node, queue_name: str, tmp_path: Path, worker_processes: WorkerProcesses
) -> None:
    node = own_rabbitmq
    beats = Beats(
        node.url,
        f"beat-{uuid.uuid4().hex[:8]}",
        queue_name,
        tmp_path / "runs.log",
        worker_processes,
        every=2.0,
    )
    async with beats.client() as client:
        await client.beat.add(
            "rt", every(1), Signature("beatfaults.tick", ("rt",)), catch_up="all", expires=0
        )
    try:
        await beats.start_many(2)
        await wait_runs(beats, "rt", 3)
        await wait_runs(beats, "code", 2)
        node.rabbitmqctl("stop_app")
        down = time.time()
        before = len(beats.runs("rt"))
        await anyio.sleep(3)
        node.rabbitmqctl("start_app")
        up = time.time()
        await eventually(lambda: len(beats.runs("rt")) >= before + 7, 30)
        back = first_after(beats.runs("rt"), up)
        await anyio.sleep(2.5)  # every tick sent has run
    finally:
        await worker_processes.aclose()

    rt = beats.runs("rt")
    spanned = math.floor(rt[-1]) - math.floor(rt[0]) + 1
    # The entry survived, and its last run: the slots missed while the broker was down
    # are caught up once each, the ones sent before are not sent again. A slot recorded
    # as the broker went down, whose tick then did not reach it in time, is lost by
    # design (recorded first, so that no slot is ever sent twice): hence ``- 1``.
    assert spanned - 1 <= len(rt) <= spanned, f"{len(rt)} sent for {spanned} slots: {gaps(rt)}"
    code = beats.runs()
    assert not duplicates(code, 2.0), gaps(code)
    assert back is not None
    print(
        f"broker down {up - down:.1f} s; first tick {back - up:.2f} s after start_app; "
        f"rt: {len(rt)} messages for {spanned} slots, gaps {gaps(rt)}, "
        f"{beats.reruns('rt')} run again after the restart"
    )
