"""``aioqueue worker | beat | topology | purge | dlq | events | inspect | control``: the
command line. The only module that reads argv, installs uvloop, configures logging and
handles signals; it reads the ``AIOQUEUE_`` environment (besides ``App``, which reads
``AIOQUEUE_BROKER_URL`` when made without a broker, and ``App.from_env``).

``worker --processes N`` runs a supervisor (``aioqueue.worker.pool``) whose children
are this same command again, with ``--pool-child`` added: each child is an ordinary
worker that reports to the supervisor instead of printing a banner.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import deadletters, eventstream
from ._version import __version__
from .app import App
from .beat import Schedule, at, crontab, every
from .canvas import Signature
from .config import broker_nodes, broker_scheme, mask_url
from .control import INSPECT_METHODS, merge_replies, render_replies
from .exceptions import AioQueueError, BrokerError, ConfigurationError
from .overview import Overview, build, read_live, render, unacked_source
from .topology import dlq_name
from .worker import Worker
from .worker.pool import (
    ChildLimits,
    ChildLink,
    ChildReady,
    Leave,
    Leaving,
    Supervisor,
    node_name,
)
from .worker.tasklog import JsonFormatter

__all__ = ("main",)

log = logging.getLogger("aioqueue.cli")

T = TypeVar("T")

_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
# In a pool, every process logs to the same stderr: each line says whose it is.
_POOL_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s pid %(process)d] %(message)s"
_MIB = 2**20
_LOGLEVELS = ("debug", "info", "warning", "error", "critical")
_MEMORY_WORKER_ERROR = (
    "worker: the app's broker is memory://, which lives inside one process, so a worker "
    'would serve nobody; give it a broker: App(broker="amqp://..."), or '
    "AIOQUEUE_BROKER_URL=amqp://... for an App made without broker="
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioqueue`` console script; returns the exit status."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(parser, argv)
    known = ("worker", "beat", "topology", "purge", "dlq", "events", "inspect", "control")
    if args.command not in known:
        parser.print_help()
        return 2
    if args.app is None and getattr(args, "broker", None) is None:
        needed = "-A/--app or -b/--broker" if args.command == "events" else "-A/--app"
        parser.error(f"{args.command}: the following arguments are required: {needed}")
    pooled = args.command == "worker" and (args.processes, args.pool_child) != (None, None)
    if args.command == "worker" and not pooled:
        if args.max_tasks_per_child or args.max_memory_per_child:
            parser.error("--max-tasks-per-child and --max-memory-per-child need --processes")
    try:
        _configure_logging(args, pooled)
    except OSError as exc:
        print(
            f"error: cannot write --logfile {args.logfile!r}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    try:
        app = _broker_app(args.broker) if getattr(args, "broker", None) else load_app(args.app)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"error: cannot load app {args.app!r}: {exc}", file=sys.stderr)
        return 2
    except AioQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        _apply_connect_budget(app, args)
        return _dispatch(app, args, argv)
    except AioQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _dispatch(app: App, args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "topology":
        return _run(lambda: _topology_command(app, args))
    if args.command == "purge":
        return _purge_command(app, args)
    if args.command == "dlq":
        return _dlq_command(app, args)
    if args.command == "events":
        return _events_command(app, args)
    if args.command == "inspect":
        return _inspect_command(app, args)
    if args.command == "control":
        return _control_command(app, args)
    if args.command == "beat" and args.action in ("add", "remove", "list"):
        return _run(lambda: _beat_command(app, args))
    if args.command == "worker":
        return _worker_command(app, args, argv)
    return _run(lambda: _serve(app, None, with_beat=True))


def _broker_app(url: str) -> App:
    """An app that only connects to ``url`` (``-b``): watching events needs no tasks."""
    return App("aioqueue", broker=url, result_backend=None)


def _apply_connect_budget(app: App, args: argparse.Namespace) -> None:
    """``--connect-timeout`` / ``--connect-retries``, over what the app was made with."""
    timeout = getattr(args, "connect_timeout", None)
    retries = getattr(args, "connect_retries", None)
    if (timeout, retries) != (None, None):
        app.set_connect_budget(timeout=timeout, retries=retries)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if getattr(args, "loglevel", "") is None:
        # A beat says what it sends, a line per tick. A worker logs two lines per task at
        # info, which would cost a third of its CPU per task: it starts at warning, as
        # Celery's does. One-shot commands keep stderr for warnings and errors.
        beat = args.command == "beat" and getattr(args, "action", "") is None
        default = "info" if beat else "warning"
        args.loglevel = os.environ.get("AIOQUEUE_LOGLEVEL", "").strip().lower() or default
        if args.loglevel not in _LOGLEVELS:
            # argparse checks choices only on a typed-in value.
            parser.error(f"AIOQUEUE_LOGLEVEL={args.loglevel!r}: use one of {', '.join(_LOGLEVELS)}")
    return args


def _worker_command(app: App, args: argparse.Namespace, argv: list[str]) -> int:
    """``aioqueue worker``: one worker, a pool's supervisor, or one of its children."""
    if app.config.broker_url is not None and broker_scheme(app.config.broker_url) == "memory":
        print(f"error: {_MEMORY_WORKER_ERROR}", file=sys.stderr)
        return 2
    if args.processes is not None and args.pool_child is None:
        return _run(lambda: _supervise(app, args, argv))
    link = None
    if args.pool_child is not None:
        index, fd = args.pool_child
        limits = ChildLimits(
            max_tasks=args.max_tasks_per_child,
            max_memory=None
            if args.max_memory_per_child is None
            else args.max_memory_per_child * _MIB,
        )
        link = ChildLink(index, fd, limits)
    hostname = None
    if args.hostname is not None:
        index = None if link is None else link.index
        hostname = node_name(args.hostname, socket.gethostname(), index)
    worker = app.worker(
        queues=_names(args.queues) or None,
        exclude=_names(args.exclude),
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        shutdown_timeout=args.shutdown_timeout,
        hostname=hostname,
        block_warning=args.block_warning,
        finished_records=args.finished_records,
        health_file=args.health_file,
        health_interval=args.health_interval,
        events=args.events,
    )
    # In a pool, beat runs in the first child only (and in its replacements).
    with_beat = args.beat and (link is None or link.index == 1)
    status = _run(lambda: _serve(app, worker, with_beat, link))
    if link is not None and link.abandon_threads:
        # A thread stuck past its time limit would keep the interpreter's exit waiting
        # for it (it cannot be stopped); the worker has stopped and the app is closed.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioqueue", description="aioqueue task queue")
    parser.add_argument("--version", action="version", version=f"aioqueue {__version__}")
    common = _common(app_required=True)
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="run a worker", parents=[common])
    worker.add_argument(
        "-Q",
        "--queues",
        help="comma-separated queues to consume (default: the default queue and every "
        "queue and broadcast the app defines)",
    )
    worker.add_argument("-X", "--exclude-queues", dest="exclude", help="queues not to consume")
    worker.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        # A string: argparse checks it with ``type`` as it would a typed-in value.
        default=os.environ.get("AIOQUEUE_CONCURRENCY", "100"),
        help="tasks in flight at once (default: $AIOQUEUE_CONCURRENCY, else 100)",
    )
    worker.add_argument("--prefetch", type=int, help="unacked messages per queue")
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds running tasks may take to finish on SIGTERM (default 30)",
    )
    worker.add_argument(
        "-B", "--beat", action="store_true", help="run beat in this worker too (one leads)"
    )
    worker.add_argument(
        "-n",
        "--hostname",
        help="the worker's name (Celery's nodename), e.g. w1@%%h: %%h is the host, %%n its "
        "first label, %%d its domain, %%i the index of the process in a pool; in a pool, a "
        "name without %%i gets -%%i before its @ (default: aioqueue.<id>@<host>, unique)",
    )
    worker.add_argument(
        "--processes",
        type=_positive_int,
        metavar="N",
        help="run N worker processes (each with -c tasks in flight) under one supervisor "
        "that restarts them: for CPU-bound sync tasks and hard time limits that stop them",
    )
    worker.add_argument(
        "--max-tasks-per-child",
        type=_positive_int,
        metavar="N",
        help="with --processes: a process replaces itself after N tasks",
    )
    worker.add_argument(
        "--max-memory-per-child",
        type=_positive_int,
        metavar="MiB",
        help="with --processes: a process whose resident memory passes this many MiB "
        "replaces itself (Celery's option counts KiB)",
    )
    worker.add_argument(
        "--block-warning",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="warn about an async task that blocks the event loop this long (default "
        "0.1; 0: do not watch)",
    )
    worker.add_argument(
        "-E",
        "--task-events",
        dest="events",
        action="store_true",
        help="send Celery-format task events to the celeryev exchange (for Flower)",
    )
    worker.add_argument(
        "--health-file",
        metavar="PATH",
        help="touch PATH every --health-interval seconds while every queue is consumed, "
        "so that a probe (find PATH -mmin -1) sees a worker that consumes nothing",
    )
    worker.add_argument(
        "--health-interval",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between two touches of --health-file (default 5)",
    )
    worker.add_argument(
        "--finished-records",
        type=_count,
        default=10_000,
        metavar="N",
        help="task ids whose outcome the worker remembers, so that a redelivery of a task "
        "it finished (its ack lost with the connection) is not run again (default 10000)",
    )
    # How a pool's supervisor starts a child: its index and its end of the socket.
    worker.add_argument("--pool-child", type=_pool_child, help=argparse.SUPPRESS)
    # Its own -A is optional: ``aioqueue beat add -A ...`` gives it to the action.
    beat = commands.add_parser(
        "beat", help="run beat, or change its runtime entries", parents=[_common(False)]
    )
    actions = beat.add_subparsers(dest="action")
    add = actions.add_parser("add", help="add or replace a runtime entry", parents=[common])
    add.add_argument("name")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", type=float, metavar="SECONDS")
    when.add_argument("--crontab", metavar="EXPRESSION")
    when.add_argument("--at", metavar="ISO-TIME")
    add.add_argument("--tz", default="UTC", help="the crontab's timezone (default UTC)")
    add.add_argument("--task", required=True, help="the task's registered name")
    add.add_argument("--args", default="[]", help="positional arguments, as JSON")
    add.add_argument("--kwargs", default="{}", help="keyword arguments, as JSON")
    add.add_argument("--queue")
    add.add_argument("--catch-up", default="once", choices=["skip", "once", "all"])
    remove = actions.add_parser("remove", help="remove a runtime entry", parents=[common])
    remove.add_argument("name")
    actions.add_parser("list", help="list every entry", parents=[common])
    topology = commands.add_parser(
        "topology",
        help="show the exchanges, bindings and queues the app declares",
        parents=[common],
    )
    topology.add_argument(
        "--live",
        action="store_true",
        help="add what the broker holds: ready and unacked messages, consumers",
    )
    topology.add_argument("--json", action="store_true", help="print one JSON document")
    topology.add_argument(
        "-Q", "--queues", help="mark what a worker started with these -Q would consume"
    )
    topology.add_argument(
        "-X", "--exclude-queues", dest="exclude", help="... and with these -X (queues it skips)"
    )
    purge = commands.add_parser(
        "purge", help="remove the ready messages of the named queues", parents=[common]
    )
    purge.add_argument("-Q", "--queues", help="comma-separated queues to purge (required)")
    purge.add_argument("-f", "--force", action="store_true", help="do not ask first")
    _dlq_parser(commands)
    _inspect_parser(commands, common)
    _control_parser(commands, common)
    events = commands.add_parser(
        "events",
        help="print the celeryev event stream, one line per event",
        parents=[_common(app_required=False)],
    )
    events.add_argument(
        "-b",
        "--broker",
        metavar="URL",
        help="the broker to watch, instead of the app's (as celery -b URL events): "
        "-A is then not needed",
    )
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--limit", type=int, metavar="N", help="stop after N events")
    events.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS", help="stop after SECONDS"
    )
    return parser


def _inspect_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``aioqueue inspect METHOD``: Celery's remote inspection, of either kind of worker."""
    inspect = commands.add_parser(
        "inspect", help="ask the running workers (ping, active, registered, ...)", parents=[common]
    )
    inspect.add_argument("method", choices=INSPECT_METHODS)
    inspect.add_argument("ids", nargs="*", help="task ids (query_task)")
    inspect.add_argument("-d", "--destination", help="comma-separated worker hostnames")
    inspect.add_argument(
        "-t", "--timeout", type=_positive_float, default=1.0, help="seconds to wait (1)"
    )
    inspect.add_argument("-j", "--json", action="store_true", help="the replies as JSON")


def _inspect_command(app: App, args: argparse.Namespace) -> int:
    """``aioqueue inspect``; 1 when no worker replied."""
    _refuse_memory(app, "inspect")
    arguments = {"ids": args.ids} if args.method == "query_task" else {}

    async def ask() -> dict[str, Any]:
        async with app:
            return await app.control.broadcast(
                args.method,
                arguments,
                destination=_names(args.destination) or None,
                timeout=args.timeout,
            )

    replies = _run(ask)
    print(json.dumps(replies) if args.json else render_replies(replies))
    return 0 if replies else 1


def _control_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """``aioqueue control ACTION``: Celery's remote control, of either kind of worker."""
    control = commands.add_parser(
        "control", help="change the running workers (revoke, shutdown, ...)"
    )
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-d", "--destination", help="comma-separated worker hostnames")
    options.add_argument(
        "-t", "--timeout", type=_positive_float, default=1.0, help="seconds to wait (1)"
    )
    options.add_argument("-j", "--json", action="store_true", help="the replies as JSON")
    actions = control.add_subparsers(dest="action", metavar="ACTION", required=True)
    revoke = actions.add_parser(
        "revoke", help="revoke tasks on every worker, now and later", parents=[common, options]
    )
    revoke.add_argument("ids", nargs="+", metavar="TASK_ID")
    revoke.add_argument(
        "--terminate", action="store_true", help="also cancel them where they run now"
    )
    actions.add_parser("shutdown", help="stop workers as on SIGTERM", parents=[common, options])
    add = actions.add_parser(
        "add-consumer", help="make workers declare and consume a queue", parents=[common, options]
    )
    add.add_argument("queue")
    add.add_argument("exchange", nargs="?", help="bind it to this exchange")
    add.add_argument("exchange_type", nargs="?", default="direct", help="its type (direct)")
    add.add_argument("routing_key", nargs="?", help="the binding key (the queue's name)")
    cancel = actions.add_parser(
        "cancel-consumer", help="make workers stop consuming a queue", parents=[common, options]
    )
    cancel.add_argument("queue")
    rate = actions.add_parser(
        "rate-limit", help="set a task's rate limit on workers", parents=[common, options]
    )
    rate.add_argument("task_name")
    rate.add_argument("rate_limit", help="10/s, 100/m, 5/h; 0 for none")


def _control_command(app: App, args: argparse.Namespace) -> int:
    """``aioqueue control``; 1 when no worker replied (but to ``shutdown``, which a
    Celery worker never answers) or one replied with an error."""
    _refuse_memory(app, "control")
    destination = _names(args.destination) or None
    if args.action == "revoke" and destination:
        raise ConfigurationError(
            "control revoke: --destination does not apply: a revocation reaches every "
            "worker, and is kept in the broker for the workers that start later"
        )

    async def send() -> dict[str, Any]:
        control, timeout = app.control, args.timeout
        async with app:
            if args.action == "revoke":
                replies = await control.revoke(
                    args.ids, terminate=args.terminate, reply=True, timeout=timeout
                )
                return merge_replies(replies)
            if args.action == "shutdown":
                return await control.shutdown(timeout=timeout, destination=destination)
            if args.action == "add-consumer":
                return await control.add_consumer(
                    args.queue,
                    exchange=args.exchange,
                    exchange_type=args.exchange_type,
                    routing_key=args.routing_key,
                    timeout=timeout,
                    destination=destination,
                )
            if args.action == "cancel-consumer":
                return await control.cancel_consumer(
                    args.queue, timeout=timeout, destination=destination
                )
            return await control.rate_limit(
                args.task_name, args.rate_limit, timeout=timeout, destination=destination
            )

    replies = _run(send)
    if args.json:
        print(json.dumps(replies))
    elif replies or args.action != "shutdown":
        print(render_replies(replies))
    else:
        print("shutdown sent; no worker replied (Celery workers stop without replying)")
    failed = any(isinstance(a, dict) and "error" in a for a in replies.values())
    return 1 if failed or not (replies or args.action == "shutdown") else 0


def _dlq_parser(commands: Any) -> None:
    """``aioqueue dlq list|show|replay|purge``: see ``aioqueue.deadletters``."""
    dlq = commands.add_parser(
        "dlq", help="list, show, replay or purge a queue's dead letters (<queue>.dlq)"
    )
    actions = dlq.add_subparsers(dest="action", required=True)
    common = _common(app_required=True)
    common.add_argument(
        "-Q", "--queue", help="whose <queue>.dlq (default: the app's default queue)"
    )
    actions.add_parser("list", help="one line per dead letter, with its reason", parents=[common])
    show = actions.add_parser("show", help="one dead letter decoded", parents=[common])
    show.add_argument("id", help="its task id, or its position in the list")
    replay = actions.add_parser(
        "replay",
        help="send dead letters back to the queue they came from (the others stay)",
        parents=[common],
    )
    replay.add_argument(
        "--id", dest="ids", action="append", default=[], help="only this task id (repeatable)"
    )
    replay.add_argument("--reason", help="only those whose reason contains this text")
    purge = actions.add_parser("purge", help="remove every dead letter", parents=[common])
    purge.add_argument("-f", "--force", action="store_true", help="do not ask first")


def _whole(least: int, kind: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least``, else "'<text>' is not
    <kind>"."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}")
        return value

    return parse


_positive_int = _whole(1, "a positive integer")
_count = _whole(0, "a whole number of 0 or more")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _pool_child(text: str) -> tuple[int, int]:
    index, _, fd = text.partition(":")
    try:
        return int(index), int(fd)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not INDEX:FD") from None


def _common(app_required: bool) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-A",
        "--app",
        required=app_required,
        help="the app, as module:attribute (a dotted module name, not a file: "
        "-A myapp means myapp:app)",
    )
    common.add_argument(
        "-l",
        "--loglevel",
        type=str.lower,
        choices=_LOGLEVELS,
        help="default: $AIOQUEUE_LOGLEVEL, else info for beat and warning for the other "
        "commands, the worker included (as Celery's; -l info shows every task)",
    )
    common.add_argument("--logfile", metavar="PATH", help="log to this file (default: stderr)")
    common.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line (time, level, logger, message; a task's "
        "lines add task, id, event, duration)",
    )
    common.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        help="how long connecting to the broker may take in all, retries included, "
        "before the command fails (default: the app's connect_timeout, 30)",
    )
    common.add_argument(
        "--connect-retries",
        type=int,
        metavar="N",
        help="rounds over the broker's nodes after the first failed (default: the app's "
        "connect_retries, 3)",
    )
    return common


def _configure_logging(args: argparse.Namespace, pooled: bool) -> None:
    """The root logger: ``-l``'s level, to ``--logfile`` or stderr, as ``--log-format``."""
    handler: logging.Handler
    if args.logfile:
        handler = logging.FileHandler(args.logfile, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_POOL_LOG_FORMAT if pooled else _LOG_FORMAT))
    logging.basicConfig(level=args.loglevel.upper(), handlers=[handler])


async def _beat_command(app: App, args: argparse.Namespace) -> int:
    async with app:
        if args.action == "list":
            for entry in (await app.beat.entries()).values():
                print(entry.describe())
            return 0
        if args.action == "remove":
            await app.beat.remove(args.name)
            print(f"removed {args.name}")
            return 0
        entry = await app.beat.add(
            args.name,
            _schedule(args),
            Signature(args.task, tuple(_json(args.args, list)), _json(args.kwargs, dict)),
            queue=args.queue,
            catch_up=args.catch_up,
        )
        print(f"added {entry.describe()}")
        return 0


def _schedule(args: argparse.Namespace) -> Schedule:
    if args.every is not None:
        return every(args.every)
    if args.crontab is not None:
        return crontab(args.crontab, tz=args.tz)
    try:
        return at(datetime.fromisoformat(args.at))
    except ValueError:
        raise ConfigurationError(f"--at {args.at!r} is not an ISO time") from None


def _json(text: str, kind: type[T]) -> T:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{text!r} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ConfigurationError(f"{text!r} is not a JSON {kind.__name__}")
    return value


async def _topology_command(app: App, args: argparse.Namespace) -> int:
    include, exclude = _names(args.queues), _names(args.exclude)
    overview = build(app.broker.topology, include, exclude)
    if args.live:
        overview = await _read_live(app, overview, include, exclude)
    if args.json:
        print(json.dumps(overview.to_json(), indent=2, default=str))
    else:
        print(render(overview))
    return 0


async def _read_live(
    app: App, overview: Overview, include: list[str], exclude: list[str]
) -> Overview:
    _refuse_memory(app, "topology --live")
    source = unacked_source(app.config.broker_url, shutil.which("rabbitmqctl"))
    async with app:
        live = await read_live(app.transport, overview, source)
    return build(app.broker.topology, include, exclude, live)


def _refuse_memory(app: App, command: str) -> None:
    url = app.config.broker_url
    if url is not None and broker_scheme(url) == "memory":
        raise ConfigurationError(
            f"{command}: the app's broker is memory://, which lives inside one process; "
            "there is nothing another process can see"
        )


def _purge_command(app: App, args: argparse.Namespace) -> int:
    """Purge the queues named by -Q, after asking (unless -f); 1 if declined."""
    names = _names(args.queues)
    if not names:
        # Never every queue by accident: the queues are always named.
        print("error: purge: name the queues to purge with -Q q1,q2", file=sys.stderr)
        return 2
    _refuse_memory(app, "purge")
    waiting = _run(lambda: _ready_counts(app, names))
    total = sum(waiting.values())
    if not args.force:
        if total == 0:
            print(f"nothing to purge: no ready messages in {', '.join(names)}")
            return 0
        if not _confirm(f"purge {_messages(total)} from {', '.join(names)}? [y/N] "):
            print("nothing purged", file=sys.stderr)
            return 1
    for name, count in _run(lambda: _purge_queues(app, names)).items():
        print(f"{name}: {_messages(count)} purged")
    return 0


async def _ready_counts(app: App, names: list[str]) -> dict[str, int]:
    async with app:
        counts = {}
        for name in names:
            state = await app.transport.inspect_queue(name)
            if state is None:
                raise BrokerError(f"queue {name!r} does not exist; nothing was purged")
            counts[name] = state.messages
        return counts


async def _purge_queues(app: App, names: list[str]) -> dict[str, int]:
    async with app:
        return {name: await app.transport.purge_queue(name) for name in names}


def _events_command(app: App, args: argparse.Namespace) -> int:
    """``aioqueue events``: each event as a line (or JSON) until --limit or --timeout."""
    _refuse_memory(app, "events")

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event) if args.json else eventstream.describe(event), flush=True)

    async def read(transport: Any) -> int:
        return await eventstream.watch(transport, show, limit=args.limit, timeout=args.timeout)

    try:
        _run(lambda: _opened(app, read))
    except KeyboardInterrupt:
        pass
    return 0


def _dlq_command(app: App, args: argparse.Namespace) -> int:
    """``aioqueue dlq ACTION``; 1 when nothing matched or a purge was declined."""
    _refuse_memory(app, f"dlq {args.action}")
    queue = args.queue or app.default_queue
    dlq = dlq_name(queue)
    if args.action == "list":
        print(deadletters.render_list(dlq, _run(lambda: _opened(app, deadletters.read, queue))))
        return 0
    if args.action == "show":
        letters = _run(lambda: _opened(app, deadletters.read, queue))
        found = [x for x in letters if args.id in (x.id, str(x.position))]
        if not found:
            print(f"error: no dead letter {args.id!r} in {dlq}", file=sys.stderr)
            return 1
        print(deadletters.render_one(found[0]))
        return 0
    if args.action == "replay":
        result = _run(lambda: _opened(app, deadletters.replay, queue, args.ids, args.reason))
        for letter in result.replayed:
            print(f"replayed {letter.task} id={letter.id} to {letter.queue}")
        print(f"{dlq}: {_messages(len(result.replayed))} replayed, {result.kept} kept")
        return 0 if result.replayed or not (args.ids or args.reason) else 1
    waiting = _run(lambda: _ready_counts(app, [dlq]))[dlq]
    if not args.force:
        if waiting == 0:
            print(f"nothing to purge: {dlq} is empty")
            return 0
        if not _confirm(f"purge {_messages(waiting)} from {dlq}? [y/N] "):
            print("nothing purged", file=sys.stderr)
            return 1
    print(f"{dlq}: {_messages(_run(lambda: _opened(app, deadletters.purge, queue)))} purged")
    return 0


async def _opened(app: App, action: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """``action(app.transport, *args)`` with the app open."""
    async with app:
        return await action(app.transport, *args)


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except (EOFError, KeyboardInterrupt):  # no answer is no
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def _messages(count: int) -> str:
    return f"{count} message" + ("" if count == 1 else "s")


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``module``, which must have ``app``) from the cwd.

    :raises ImportError: no such module; for a file name (``myapp.py:app``) the message
        says which module name was meant.
    """
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not module_name.endswith(".py"):
            raise
        meant = module_name.removesuffix(".py").replace(os.sep, ".").replace("/", ".")
        raise ImportError(f"{exc}: did you mean `{meant}:{attribute or 'app'}`?") from None
    app = getattr(module, attribute or "app")
    if not isinstance(app, App):
        raise TypeError(f"{spec} is a {type(app).__name__}, not an aioqueue.App")
    return app


async def _serve(
    app: App, worker: Worker | None, with_beat: bool, link: ChildLink | None = None
) -> int:
    """Run a worker and/or beat until SIGINT/SIGTERM (0) or until the worker cannot
    consume a queue (1); a pool's child also stops when it must leave (its
    :class:`~aioqueue.worker.pool.Leave` status) or its supervisor is gone (1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if link is not None:
        await link.open(worker)
    try:
        async with app:
            if worker is not None:
                await worker.start()
            if with_beat:
                await app.beat.start()
            rows = banner_rows(app, worker, with_beat)
            if link is None:
                print(render_banner(rows), flush=True)
            else:
                hostname = worker.hostname if worker is not None else None
                await link.ready({"banner": rows, "hostname": hostname})
            if worker is not None:
                worker.announce()  # after the banner: the last line of start-up
            # What start-up created lives as long as the process: keep it out of every
            # full collection (tens of thousands of objects, scanned again and again).
            gc.freeze()
            status = await _until_done(stop, worker, link)
            await app.beat.stop()
            if worker is not None:
                # A second signal stops waiting for running tasks.
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, worker.hurry)
                await worker.stop()
    finally:
        if link is not None:
            await link.aclose()
    log.info("stopped")
    return status


async def _until_done(stop: asyncio.Event, worker: Worker | None, link: ChildLink | None) -> int:
    """Wait for the first reason to stop; say it, and return the exit status."""
    waits: dict[str, Coroutine[Any, Any, Any]] = {}
    if worker is not None:
        waits["failed"] = worker.wait_failed()
        waits["shutdown"] = worker.wait_shutdown()
    waits["signal"] = stop.wait()
    if link is not None:
        waits["orphaned"] = link.wait_orphaned()
        if worker is not None:
            waits["leave"] = link.wait_leave()
    reason, outcome = await _first(waits)
    if reason == "failed":
        print(f"error: {outcome}; stopping", file=sys.stderr, flush=True)
        return 1
    if reason == "orphaned":
        log.warning("the pool's supervisor is gone; stopping")
        return 1
    if reason == "shutdown":
        log.info("stopping: shutdown by remote control, waiting for running tasks")
        if link is None:
            return 0
        # A pool's child: the pool starts another in its place.
        leaving = Leaving(Leave.SHUTDOWN, "shut down by remote control")
        await link.leaving(leaving)
        return int(leaving.status)
    if reason == "leave":
        assert link is not None
        log.log(outcome.level, "%s; stopping", outcome.why)
        await link.leaving(outcome)
        return int(outcome.status)
    log.info("stopping: no new tasks, waiting for running ones")
    return 0


async def _first(waits: dict[str, Coroutine[Any, Any, Any]]) -> tuple[str, Any]:
    """Run ``waits`` until one ends; its name (the first in ``waits``' order among those
    that ended together) and its result. The others are cancelled."""
    futures = {name: asyncio.ensure_future(wait) for name, wait in waits.items()}
    try:
        await asyncio.wait(futures.values(), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures.values():
            future.cancel()
        await asyncio.gather(*futures.values(), return_exceptions=True)
    name = next(n for n, f in futures.items() if f.done() and not f.cancelled())
    return name, futures[name].result()


async def _supervise(app: App, args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``--processes`` children until SIGINT/SIGTERM (0), each this same command
    with ``--pool-child``; print the pool's banner once every child consumes."""

    def command(index: int, fd: int) -> list[str]:
        return [sys.executable, "-m", "aioqueue.cli", *argv, "--pool-child", f"{index}:{fd}"]

    pool = Supervisor(command, args.processes, stop_timeout=args.shutdown_timeout)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, pool.signal, sig)

    def ready(children: list[ChildReady]) -> None:
        print(render_banner(pool_banner_rows(app, args, children)), flush=True)

    status = await pool.run(ready)
    log.info("stopped")
    return status


def banner_rows(
    app: App, worker: Worker | None = None, with_beat: bool = False
) -> list[tuple[str, str]]:
    """The start-up banner's rows: versions, broker (password masked), results, queues,
    tasks, and beat: its role and entries."""
    rows = [
        _identity(app),
        ("aio-pika", f"{_version('aio-pika')} (aiormq {_version('aiormq')})"),
        ("python", f"{platform.python_version()} ({_loop_name()})"),
        ("broker", _broker_row(app)),
        ("results", app.result_backend_url or "disabled"),
        *(worker.describe() if worker is not None else []),
        *(app.beat.describe() if with_beat else []),
    ]
    # Celery's built-ins (celery.map, ...) are always there; list the app's own tasks.
    tasks = app.registry.user_tasks() or ["(none)"]
    rows += [("tasks" if i == 0 else "", name) for i, name in enumerate(tasks)]
    return rows


def _broker_row(app: App) -> str:
    """The broker, masked, and its version; of several nodes, the one connected to."""
    row = f"{mask_url(app.broker_url)} ({app.transport.server_version}"
    node, url = app.broker_node, app.config.broker_url
    if node is not None and url is not None and len(broker_nodes(url)) > 1:
        row += f", connected to {urlsplit(node).netloc.rpartition('@')[2]}"
    return row + ")"


def pool_banner_rows(
    app: App, args: argparse.Namespace, children: list[ChildReady]
) -> list[tuple[str, str]]:
    """The pool's banner: the first child's, with the supervisor's pid and one row per
    process (its pid and name) in place of the child's own."""
    recycled = []
    if args.max_tasks_per_child:
        recycled.append(f"after {args.max_tasks_per_child} tasks")
    if args.max_memory_per_child:
        recycled.append(f"above {args.max_memory_per_child} MiB")
    recycling = f" (each recycled {' or '.join(recycled)})" if recycled else ""
    rows: list[tuple[str, str]] = []
    for label, value in children[0].details["banner"]:
        if label == "aioqueue":
            rows.append(_identity(app))
            rows.append(("processes", f"{len(children)}{recycling}"))
            rows += [
                (f"process {c.index}", f"pid {c.pid}, hostname {c.details.get('hostname')}")
                for c in children
            ]
        elif label == "hostname":
            continue  # each process's is above
        elif label == "concurrency":
            rows.append((label, f"{value} in each process"))
        else:
            rows.append((str(label), str(value)))
    return rows


def _identity(app: App) -> tuple[str, str]:
    """The banner's first row: this version, the app, host and pid (a pool's: the
    supervisor's)."""
    return ("aioqueue", f"{__version__} ({app.name}@{socket.gethostname()} pid {os.getpid()})")


def render_banner(rows: Sequence[tuple[str, str]]) -> str:
    """``rows`` as the banner: aligned, between two rules (lines of ``-`` only, which
    is how a reader of the worker's stdout knows the banner is complete)."""
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


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` in a new event loop: uvloop's when it is installed."""
    loop_factory = None
    if importlib.util.find_spec("uvloop") is not None:
        # Imported by name: the type checker's answer must not depend on whether it is.
        loop_factory = importlib.import_module("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


if __name__ == "__main__":
    raise SystemExit(main())
