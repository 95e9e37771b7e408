"""CPU time of the processes a workload runs on: the client, the worker and the broker.

A process's CPU time is its user + system time from ``/proc/<pid>/stat`` (all its
threads, in clock ticks). :class:`Meter` reads it for each role at the start and at the
end of a timed window; divided by the tasks of the window, that is the CPU each task
cost each process. The broker is the local RabbitMQ's ``beam.smp``; on a shared broker
its figure also counts everyone else's traffic of the moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Where "utime" sits among the fields after the command name (man 5 proc: fields 14
# and 15 of the line, counted from 1; the name, field 2, may hold spaces).
_UTIME = 11
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
LOOKUP_TIMEOUT = 30.0

log = logging.getLogger("benchmarks.cputime")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[_UTIME]) + int(fields[_UTIME + 1])) / TICKS_PER_SECOND


async def broker_pid(url: str) -> int | None:
    """The pid of the broker's ``beam.smp`` when it runs on this machine, else None:
    from ``rabbitmqctl eval 'os:getpid().'``, else a lone ``beam.smp`` found by pgrep."""
    if urlsplit(url).hostname not in LOCAL_HOSTS:
        return None
    for command in (["rabbitmqctl", "eval", "os:getpid()."], ["pgrep", "-x", "beam.smp"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            async with asyncio.timeout(LOOKUP_TIMEOUT):
                out, _ = await proc.communicate()
        except (OSError, TimeoutError) as exc:
            log.warning("%s failed: %s", command[0], exc)
            continue
        words = out.decode().replace('"', " ").split()
        if proc.returncode == 0 and len(words) == 1 and words[0].isdigit():
            return int(words[0])
    log.warning("no local broker process found: its CPU is not measured")
    return None


def _cpu_or_none(pid: int | None) -> float | None:
    # A broker restarted meanwhile (by someone else's test, on a shared machine) has
    # a new pid: its CPU over the window is unknown rather than an error.
    if pid is None:
        return None
    try:
        return cpu_seconds(pid)
    except FileNotFoundError:
        return None


@dataclass
class Meter:
    """Wall time and the CPU time of each role's process over one window.

    A role whose pid is None (a broker elsewhere) or whose process ended reads as None.
    """

    pids: dict[str, int | None]
    elapsed: float = 0.0
    cpu: dict[str, float | None] = field(default_factory=dict)
    _wall: float = 0.0
    _cpu: dict[str, float | None] = field(default_factory=dict)

    def _read(self) -> dict[str, float | None]:
        return {role: _cpu_or_none(pid) for role, pid in self.pids.items()}

    def start(self) -> None:
        self._cpu = self._read()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.elapsed = time.perf_counter() - self._wall
        after = self._read()
        self.cpu = {
            role: None
            if (end := after[role]) is None or (begin := self._cpu[role]) is None
            else end - begin
            for role in self.pids
        }

    def per_task_us(self, tasks: int) -> dict[str, float | None]:
        """Each role's CPU microseconds per task over the window."""
        return {role: None if s is None else 1e6 * s / tasks for role, s in self.cpu.items()}
