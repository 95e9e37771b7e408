"""Real Celery and aioqueue workers for the interoperability tests, and a vhost for them.

The workers are subprocesses started as their users start them (``python -m celery
... worker``, ``python -m aioqueue.cli worker``), with the environment that
``tests/interop/celery_app.py`` and ``tests/interop/aioqueue_app.py`` read. A test
module starts one of each kind for all its tests (a module-scoped fixture), on a vhost
of its own that is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import fresh_vhost
from tests.processes import CLI, ROOT

__all__ = (
    "Fleet",
    "Worker",
    "celery_control_worker",
    "fleet",
    "spawn_aioqueue",
    "spawn_celery",
    "vhost",
)

# Generous: only there so that a broken start fails instead of hanging.
START_TIMEOUT = 60
# What each kind of worker prints once it consumes: Celery's "<name> ready." line, and
# the rule under aioqueue's banner.
CELERY_READY = " ready."
AIOQUEUE_READY = "\n" + "-" * 3


@contextmanager
def vhost() -> Iterator[str]:
    """The URL of a fresh vhost on the local RabbitMQ, deleted on exit (as
    ``tests/conftest.py``'s ``amqp_url``, for one module)."""
    with fresh_vhost("aioqueue-interop") as url:
        yield url


@dataclass
class Worker:
    """A worker subprocess; what it printed goes to ``log``."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        """Wait until the worker has printed ``text``; fail if it exits first."""
        deadline = time.monotonic() + START_TIMEOUT
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.process.returncode}):\n" + self.output()
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from the worker:\n" + self.output())
            time.sleep(0.05)

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM; SIGKILL if it is still there after ``grace`` seconds (a Celery worker
        without work notices a SIGTERM only when its event loop next wakes, seconds
        later; by then the tests that used it are over)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(START_TIMEOUT)


@dataclass
class Fleet:
    """One Celery worker and one aioqueue worker on a vhost, each on its own queue."""

    amqp_url: str
    celery_queue: str
    aioqueue_queue: str
    notes: Path  # where ``ci.note`` and ``aq.note`` write
    env: dict[str, str]
    celery: Worker | None = None
    aioqueue: Worker | None = None

    def notes_of(self, key: str) -> list[str]:
        """What the ``note`` tasks wrote under ``key`` so far (JSON texts)."""
        return sorted(p.read_text() for p in self.notes.glob(f"{key}.*.json"))

    def wait_notes(self, key: str, count: int = 1, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(found := self.notes_of(key)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} notes {key!r}, expected {count}")
            time.sleep(0.05)
        return found


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> Worker:
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Worker(process, log)


def spawn_celery(fleet: Fleet, directory: Path) -> Worker:
    """``celery -A tests.interop.celery_app worker`` on the fleet's Celery queue (wait
    for ``CELERY_READY``)."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.interop.celery_app",
        "-b",
        fleet.amqp_url,
        "worker",
        "-P",
        "solo",
        "-Q",
        fleet.celery_queue,
        "-n",
        f"celery-{uuid.uuid4().hex[:6]}@interop",
        "-l",
        "info",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return _spawn(argv, fleet.env, directory / "celery-worker.log")


async def celery_control_worker(
    amqp_url: str, hostname: str, queue: str
) -> asyncio.subprocess.Process:
    """``celery -A tests.interop.celery_control_app worker`` named ``hostname`` on
    ``queue``, output discarded; the caller waits until it answers a ping."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.interop.celery_control_app",
        "worker",
        "-P",
        "solo",
        "-l",
        "warning",
        "-n",
        hostname,
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        env={**os.environ, "CELERY_TEST_BROKER": amqp_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def spawn_aioqueue(fleet: Fleet, directory: Path, concurrency: int = 8) -> Worker:
    """``aioqueue worker -A tests.interop.aioqueue_app`` on the fleet's aioqueue queue
    (wait for ``AIOQUEUE_READY``)."""
    argv = [
        sys.executable,
        *CLI,
        "worker",
        "-A",
        "tests.interop.aioqueue_app:app",
        "-Q",
        fleet.aioqueue_queue,
        "-c",
        str(concurrency),
        "-l",
        "info",
    ]
    return _spawn(argv, fleet.env, directory / "aioqueue-worker.log")


@contextmanager
def fleet(
    directory: Path, *, celery: bool = True, aioqueue: bool = True, routes: bool = True
) -> Iterator[Fleet]:
    """A vhost with the workers asked for; both stopped and the vhost deleted on exit.

    :param routes: whether the workers' apps route each kind of task to its queue
        (without, a workflow's steps must name their queues).
    """
    with vhost() as url:
        tag = uuid.uuid4().hex[:6]
        notes = directory / "notes"
        notes.mkdir()
        celery_queue, aioqueue_queue = f"interop.celery.{tag}", f"interop.aioqueue.{tag}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "INTEROP_BROKER": url,
            "AIOQUEUE_BROKER_URL": url,
            "INTEROP_CELERY_QUEUE": celery_queue,
            "INTEROP_AIOQUEUE_QUEUE": aioqueue_queue,
            "INTEROP_NOTES": str(notes),
            "INTEROP_ROUTES": "1" if routes else "0",
        }
        out = Fleet(url, celery_queue, aioqueue_queue, notes, env)
        try:
            # Started together, waited for in turn: the two starts overlap.
            if celery:
                out.celery = spawn_celery(out, directory)
            if aioqueue:
                out.aioqueue = spawn_aioqueue(out, directory)
            if out.celery is not None:
                out.celery.wait_for(CELERY_READY)
            if out.aioqueue is not None:
                out.aioqueue.wait_for(AIOQUEUE_READY)
            yield out
        finally:
            for worker in (out.aioqueue, out.celery):
                if worker is not None:
                    worker.stop()
