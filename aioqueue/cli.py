"""``aioqueue worker``: the command line. The only module that reads argv and the
environment, installs uvloop, configures logging and handles signals.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import logging
import os
import platform
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ._version import __version__
from .app import App
from .config import mask_url
from .exceptions import AioQueueError
from .worker import Worker

__all__ = ("main",)

log = logging.getLogger("aioqueue.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioqueue`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "worker":
        parser.print_help()
        return 2
    logging.basicConfig(
        level=args.loglevel.upper(),
        format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s",
    )
    try:
        app = load_app(args.app)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"error: cannot load app {args.app!r}: {exc}", file=sys.stderr)
        return 2
    queues = [q for q in (args.queues or "").split(",") if q] or None
    worker = app.worker(
        queues=queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        shutdown_timeout=args.shutdown_timeout,
    )
    try:
        return _run(lambda: _serve(app, worker))
    except AioQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioqueue", description="aioqueue task queue")
    parser.add_argument("--version", action="version", version=f"aioqueue {__version__}")
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="run a worker")
    worker.add_argument("-A", "--app", required=True, help="the app, as module:attribute")
    worker.add_argument("-Q", "--queues", help="comma-separated queues (default: the app's)")
    worker.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=int(os.environ.get("AIOQUEUE_CONCURRENCY", "100")),
        help="tasks in flight at once (default 100)",
    )
    worker.add_argument("--prefetch", type=int, help="unacked messages per queue")
    worker.add_argument(
        "-l",
        "--loglevel",
        default=os.environ.get("AIOQUEUE_LOGLEVEL", "info"),
        choices=["debug", "info", "warning", "error", "critical"],
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds running tasks may take to finish on SIGTERM (default 30)",
    )
    return parser


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``module``, which must have ``app``) from the cwd."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
    if not isinstance(app, App):
        raise TypeError(f"{spec} is a {type(app).__name__}, not an aioqueue.App")
    return app


async def _serve(app: App, worker: Worker) -> int:
    """Run ``worker`` until SIGINT/SIGTERM (0) or until it cannot consume a queue (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with app:
        await worker.start()
        print(banner(app, worker), flush=True)
        # What start-up created lives as long as the process: keep it out of every
        # full collection (tens of thousands of objects, scanned again and again).
        gc.freeze()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(worker.wait_failed())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        failed = waits[1].done() and not waits[1].cancelled()
        if failed:
            print(f"error: {waits[1].result()}; stopping", file=sys.stderr, flush=True)
        else:
            log.info("stopping: no new tasks, waiting for running ones")
        # A second signal stops waiting for running tasks.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.hurry)
        await worker.stop()
    log.info("worker stopped")
    return 1 if failed else 0


def banner(app: App, worker: Worker) -> str:
    """The start-up banner: versions, broker (password masked), results, queues, tasks."""
    rows = [
        ("aioqueue", f"{__version__} ({app.name}@{socket.gethostname()} pid {os.getpid()})"),
        ("aio-pika", f"{_version('aio-pika')} (aiormq {_version('aiormq')})"),
        ("python", f"{platform.python_version()} ({_loop_name()})"),
        ("broker", f"{mask_url(app.broker_url)} ({app.transport.server_version})"),
        ("results", app.result_backend_url or "disabled"),
        *worker.describe(),
    ]
    # Celery's built-ins (celery.map, ...) are always there; list the app's own tasks.
    tasks = app.registry.user_tasks() or ["(none)"]
    rows += [("tasks" if i == 0 else "", name) for i, name in enumerate(tasks)]
    width = max(len(label) for label, _ in rows)
    lines = [f"  {label:<{width}}  {value}" for label, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0] + " event loop"


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main()`` in a new event loop: uvloop's when it is installed."""
    loop_factory = None
    if importlib.util.find_spec("uvloop") is not None:
        # Imported by name: the type checker's answer must not depend on whether it is.
        loop_factory = importlib.import_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


if __name__ == "__main__":
    raise SystemExit(main())
