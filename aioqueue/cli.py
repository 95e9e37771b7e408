"""``aioqueue worker``: the command line. The only module that reads argv and the
environment, installs uvloop, configures logging and handles signals.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import platform
import signal
import socket
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

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
        _run(_serve(worker))
    except AioQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


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


async def _serve(worker: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker.app:
        await worker.start()
        print(banner(worker), flush=True)
        # What start-up created lives as long as the process: keep it out of every
        # full collection (tens of thousands of objects, scanned again and again).
        gc.freeze()
        await stop.wait()
        log.info("stopping: no new tasks, waiting for running ones")
        # A second signal skips the wait.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _cancel_current, asyncio.current_task())
        await worker.stop()
    log.info("worker stopped")


def _cancel_current(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()


def banner(worker: Worker) -> str:
    """The start-up banner: versions, broker (password masked), results, queues, tasks."""
    app = worker.app
    rows = [
        ("aioqueue", f"{__version__} ({app.name}@{socket.gethostname()} pid {os.getpid()})"),
        ("aio-pika", _version("aio-pika")),
        ("python", f"{platform.python_version()} ({_loop_name()})"),
        ("broker", f"{mask_url(app.broker_url)} ({app.transport.server_version})"),
        ("results", app.result_backend_url or "disabled"),
        *worker.describe(),
    ]
    # Celery's built-ins (celery.map, ...) are always there; list the app's own tasks.
    tasks = sorted(n for n in app.tasks if not n.startswith("celery.")) or ["(none)"]
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


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    uvloop.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
