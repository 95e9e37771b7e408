"""Worker subprocesses, run as users run them: ``python -m aioqueue.cli worker -A ...``.

:class:`WorkerProcesses` (the ``worker_processes`` fixture in ``tests/conftest.py``)
starts them for one test and kills whatever still runs when the test ends. A worker is
returned once it has printed its banner, which it does once it consumes its queues; its
stderr goes to a file the test can read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import pytest

__all__ = ("CLI", "ONE_LOOP", "ROOT", "TIMEOUT", "WorkerProcess", "WorkerProcesses")

ROOT = Path(__file__).resolve().parents[1]
# How the command line is started: ``python <CLI...> worker -A module:app ...``.
CLI = ("-m", "aioqueue.cli")
# Generous, only there so that a broken test fails (inside pytest's timeout) instead of
# hanging.
TIMEOUT = 30


def run_cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m aioqueue.cli <args>`` from this repository, run to its end (blocking)."""
    return subprocess.run(
        [sys.executable, *CLI, *args],
        cwd=ROOT,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def error_line(out: subprocess.CompletedProcess[str]) -> str:
    """The one line a command printed on stderr (asserting it printed just one)."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


# For tests whose workers are subprocesses: one event loop on the test side is enough.
ONE_LOOP = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")]
)


@dataclass
class WorkerProcess:
    """A running worker subprocess."""

    process: anyio.abc.Process
    log: Path  # its stderr
    banner: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def stderr(self) -> str:
        """What the worker wrote to stderr so far."""
        return self.log.read_text(errors="replace")

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout: float = TIMEOUT) -> int:
        """Its exit status, once it has exited (fails after ``timeout`` seconds)."""
        with anyio.fail_after(timeout):
            return await self.process.wait()

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send ``sig`` (SIGTERM: running tasks finish first) and return the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await self.wait(timeout)

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)


class WorkerProcesses:
    """Starts worker subprocesses for one test; :meth:`aclose` kills those still running.

    :param directory: where their stderr files go.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[WorkerProcess] = []
        self.open: list[WorkerProcess] = []  # not closed by aclose() yet
        self._numbered = 0  # names the stderr files: counted before any await

    async def start(
        self,
        app: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        launcher: Sequence[str] = CLI,
        command: str = "worker",
    ) -> WorkerProcess:
        """``python <launcher> <command> -A <app> <args>``, returned past its banner.

        :param env: added to the environment (``PYTHONPATH`` reaches this repository).
        :param launcher: what follows ``python``; ``("-c", code)`` runs other code
            first, which must end by calling ``aioqueue.cli.main()``.
        :param command: ``"worker"``, or ``"beat"`` (a standalone beat, which prints a
            banner too).
        """
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **(env or {}),
        }
        # At info unless the test says otherwise (a later -l wins): tests read its lines.
        argv = [sys.executable, *launcher, command, "-A", app, "-l", "info", *args]
        self._numbered += 1
        log = self.directory / f"{command}-{self._numbered}.log"
        with log.open("wb") as stderr:
            process = await anyio.open_process(
                argv, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=stderr
            )
        worker = WorkerProcess(process, log)
        self.started.append(worker)
        self.open.append(worker)
        worker.banner = await _read_banner(worker)
        return worker

    async def start_many(
        self,
        n: int,
        app: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        command: str = "worker",
    ) -> list[WorkerProcess]:
        """``n`` workers (or beats) started concurrently, in the order they got ready."""
        started: list[WorkerProcess] = []

        async def one() -> None:
            started.append(await self.start(app, *args, env=env, command=command))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        return started

    async def aclose(self) -> None:
        """Kill the workers still running and release their pipes (safe to call twice)."""
        while self.open:
            worker = self.open.pop()
            if worker.process.returncode is None:
                worker.process.kill()
            with anyio.fail_after(TIMEOUT):
                await worker.process.wait()
            await worker.process.aclose()


async def _read_banner(worker: WorkerProcess) -> str:
    """The banner the worker prints once it consumes: a block between two rules."""
    stdout = worker.process.stdout
    assert stdout is not None
    text = ""
    with anyio.fail_after(TIMEOUT):
        while sum(1 for line in text.splitlines() if line and set(line) == {"-"}) < 2:
            try:
                text += (await stdout.receive()).decode()
            except anyio.EndOfStream:
                raise AssertionError(
                    f"the worker exited before its banner:\n{text}\n{worker.stderr()}"
                ) from None
    return text
