"""What the benchmarks need to run ``aioqueue worker`` as a separate process."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aioqueue import AioQueueError, App
from aioqueue.topology import dlq_name

log = logging.getLogger("benchmarks")


def worker_command() -> list[str]:
    """The console script next to this interpreter, which runs the worker in this
    environment; ``-m aioqueue.cli`` is the same entry point when it is not installed."""
    script = shutil.which("aioqueue", path=str(Path(sys.executable).parent))
    return [script] if script is not None else [sys.executable, "-m", "aioqueue.cli"]


async def wait_banner(proc: asyncio.subprocess.Process, what: str = "the worker") -> None:
    """Return once the worker (or pool) printed its banner, which it does once it consumes."""
    assert proc.stdout is not None
    rules = 0
    while rules < 2:
        line = (await proc.stdout.readline()).decode().strip()
        if not line and proc.stdout.at_eof():
            raise RuntimeError(f"{what} exited with status {await proc.wait()}")
        if line and set(line) == {"-"}:
            rules += 1


async def drain_output(stream: asyncio.StreamReader) -> None:
    """Read ``stream`` to its end: a full pipe would block the worker's prints."""
    while await stream.read(65_536):
        pass


async def stop(proc: asyncio.subprocess.Process, timeout: float, what: str = "the worker") -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; a non-zero status is logged."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            log.warning("%s ignored SIGTERM for %g s; killing it", what, timeout)
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        log.warning("%s exited with status %s", what, proc.returncode)


@asynccontextmanager
async def running(
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    what: str = "the worker",
    timeout: float = 30.0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``argv`` as a worker process; yield it once it printed its banner, and stop it
    (SIGTERM, then SIGKILL after ``timeout`` seconds) on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(timeout):
            await wait_banner(proc, what)
        drain = asyncio.create_task(drain_output(proc.stdout))
        try:
            yield proc
        finally:
            await stop(proc, timeout, what)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if drain is not None:
            await drain


async def delete_topology(app: App, queue: str) -> None:
    """Delete what the worker declares for ``queue``: Celery's exchange and queue, + dlq."""
    # Each deletion is tried even if another failed: leave as little as possible behind.
    for kind, name, delete in (
        ("queue", queue, app.transport.delete_queue),
        ("queue", dlq_name(queue), app.transport.delete_queue),
        ("exchange", queue, app.transport.delete_exchange),
    ):
        try:
            await delete(name)
        except AioQueueError as exc:
            log.warning("could not delete %s %r: %s", kind, name, exc)
