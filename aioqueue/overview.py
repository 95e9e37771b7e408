"""What an app declares in the broker, as ``aioqueue topology`` shows it.

:func:`build` turns an app's :class:`~aioqueue.topology.Topology` into an
:class:`Overview`: every exchange its destinations bind to, each binding, each queue
with its arguments and ``.dlq``, the broadcasts, and which of them a worker consumes.
:func:`render` prints it as a tree (exchange -> binding -> queue) followed by a table of
the queues; :meth:`Overview.to_json` is the same as one document for scripts. Given a
:class:`Live`, the overview also says what the broker holds. All of that is pure; only
:func:`read_live` does I/O.

Unacked counts: AMQP answers how many messages of a queue are ready and how many
consumers it has, not how many were delivered and not yet acked. ``rabbitmqctl
list_queues`` does, for the node of this machine only, so it is asked when the broker
URL names this machine (:func:`unacked_source`), and its answer is used only when it
lists every queue AMQP found: otherwise it speaks for another broker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .config import broker_nodes, broker_scheme
from .topology import Broadcast, Destination, Exchange, Topology
from .transport.base import BindingSpec, Transport

__all__ = (
    "BroadcastView",
    "ExchangeView",
    "Live",
    "Overview",
    "QueueCounts",
    "QueueView",
    "UnackedSource",
    "build",
    "read_live",
    "render",
    "unacked_counts",
    "unacked_source",
)

# rabbitmqctl starts an Erlang VM; it answers in about a second when its node is up.
RABBITMQCTL_TIMEOUT = 20.0
# Broker hosts that are this machine ("": the URL names none, so localhost).
_LOCAL_HOSTS = frozenset({"", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """What the broker held of one queue at one moment.

    :param messages: messages ready to be delivered.
    :param unacked: messages delivered and not yet acked (``None``: unknown).
    :param consumers: consumers subscribed to it.
    """

    messages: int
    unacked: int | None
    consumers: int


@dataclass(frozen=True, slots=True)
class Live:
    """What :func:`read_live` read from the broker.

    :param queues: by name: the counts, or ``None`` for a queue the broker lacks.
    :param exchanges: by name: whether the broker has it.
    :param unacked_unknown: why the unacked counts are unknown, if they are.
    """

    queues: Mapping[str, QueueCounts | None] = field(default_factory=dict)
    exchanges: Mapping[str, bool] = field(default_factory=dict)
    unacked_unknown: str | None = None


@dataclass(frozen=True, slots=True)
class QueueView:
    """A queue the app declares."""

    name: str
    arguments: Mapping[str, Any]
    dlq: str
    consumed: bool
    live: QueueCounts | None = None
    dlq_live: QueueCounts | None = None


@dataclass(frozen=True, slots=True)
class BroadcastView:
    """A broadcast: its fanout exchange, one exclusive queue per worker, a shared ``.dlq``."""

    name: str
    exchange: str
    dlq: str
    consumed: bool
    dlq_live: QueueCounts | None = None


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """An exchange the app declares, with the bindings of its queues."""

    name: str
    type: str
    durable: bool
    arguments: Mapping[str, Any]
    bindings: tuple[BindingSpec, ...] = ()
    broadcast: bool = False
    declared: bool | None = None  # None: not read from the broker


@dataclass(frozen=True, slots=True)
class Overview:
    """What an app declares (see the module docstring); ``live`` once read."""

    default_queue: str
    exchanges: tuple[ExchangeView, ...]
    queues: tuple[QueueView, ...]
    broadcasts: tuple[BroadcastView, ...]
    #: Which worker ``consumed`` speaks of: started with ``-Q``/``-X``, or not.
    selected: bool = False
    live: bool = False
    unacked_unknown: str | None = None

    def queue_names(self) -> list[str]:
        """Every queue whose counts :func:`read_live` reads: the queues and the ``.dlq``s."""
        names = [n for q in self.queues for n in (q.name, q.dlq)]
        return list(dict.fromkeys([*names, *(b.dlq for b in self.broadcasts)]))

    def exchange_names(self) -> list[str]:
        """Every exchange :func:`read_live` looks for."""
        return [e.name for e in self.exchanges]

    def to_json(self) -> dict[str, Any]:
        """The overview as one JSON-ready document, with stable keys."""
        return {
            "default_queue": self.default_queue,
            "exchanges": [
                {
                    "name": e.name,
                    "type": e.type,
                    "durable": e.durable,
                    "arguments": dict(e.arguments),
                    "bindings": [
                        {"queue": b.queue, "routing_key": b.routing_key, "arguments": b.arguments}
                        for b in e.bindings
                    ],
                    "live": {"declared": e.declared} if self.live else None,
                }
                for e in self.exchanges
            ],
            "queues": [
                {
                    "name": q.name,
                    "arguments": dict(q.arguments),
                    "dlq": q.dlq,
                    "consumed_by_default": q.consumed,
                    "live": self._counts(q.live),
                    "dlq_live": self._counts(q.dlq_live),
                }
                for q in self.queues
            ],
            "broadcasts": [
                {
                    "name": b.name,
                    "exchange": b.exchange,
                    "dlq": b.dlq,
                    "consumed_by_default": b.consumed,
                    "dlq_live": self._counts(b.dlq_live),
                }
                for b in self.broadcasts
            ],
            "unacked_unknown": self.unacked_unknown,
        }

    def _counts(self, counts: QueueCounts | None) -> dict[str, Any] | None:
        if not self.live:
            return None
        if counts is None:
            return {"declared": False, "messages": None, "unacked": None, "consumers": None}
        return {
            "declared": True,
            "messages": counts.messages,
            "unacked": counts.unacked,
            "consumers": counts.consumers,
        }


def build(
    topology: Topology,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    live: Live | None = None,
) -> Overview:
    """The overview of ``topology``: what it defines, its default queue, and what a
    worker started with ``include``/``exclude`` (``-Q``/``-X``) consumes.

    :raises ConfigurationError: ``exclude`` leaves nothing to consume.
    """
    include, exclude = list(include), list(exclude)
    consumed = topology.consumed(include, exclude)
    chosen = {d.name for d in consumed}
    shown: dict[str, Destination] = dict(topology.defined)
    for destination in (topology.destination(topology.default_queue), *consumed):
        shown.setdefault(destination.name, destination)
    exchanges: dict[str, Exchange] = {}
    bindings: dict[str, list[BindingSpec]] = {}
    broadcast: set[str] = set()
    queues: list[QueueView] = []
    broadcasts: list[BroadcastView] = []
    state = live or Live()
    for destination in shown.values():
        if isinstance(destination, Broadcast):
            exchange = destination.exchange
            exchanges.setdefault(exchange.name, exchange)
            broadcast.add(exchange.name)
            broadcasts.append(
                BroadcastView(
                    destination.name,
                    exchange.name,
                    destination.dlq,
                    destination.name in chosen,
                    state.queues.get(destination.dlq),
                )
            )
            continue
        for binding in destination.all_bindings():
            exchanges.setdefault(binding.target.name, binding.target)
            bindings.setdefault(binding.target.name, []).append(binding.spec(destination.name))
        queues.append(
            QueueView(
                destination.name,
                dict(destination.arguments),
                destination.dlq,
                destination.name in chosen,
                state.queues.get(destination.name),
                state.queues.get(destination.dlq),
            )
        )
    views = tuple(
        ExchangeView(
            e.name,
            e.type,
            e.durable,
            dict(e.arguments),
            tuple(bindings.get(e.name, ())),
            e.name in broadcast,
            state.exchanges.get(e.name) if live is not None else None,
        )
        for e in exchanges.values()
    )
    return Overview(
        topology.default_queue,
        views,
        tuple(queues),
        tuple(broadcasts),
        selected=bool(include or exclude),
        live=live is not None,
        unacked_unknown=state.unacked_unknown,
    )


# -- text ------------------------------------------------------------------------------


def render(overview: Overview) -> str:
    """The overview as text: the exchange tree, then a table of the queues."""
    arguments = {q.name: q.arguments for q in overview.queues}
    lines: list[str] = []
    for exchange in overview.exchanges:
        lines.append(_exchange_line(exchange))
        for binding in exchange.bindings:
            line = f"  {_binding_label(exchange.type, binding)}-> {binding.queue}"
            lines.append(line + _arguments(arguments.get(binding.queue, {})))
    lines += ["", *_table(overview)]
    who = "with these -Q/-X" if overview.selected else "without -Q/-X"
    lines.append(f"* consumed by a worker started {who}")
    if overview.live and overview.unacked_unknown:
        lines.append(f'unacked "-": {overview.unacked_unknown}')
    return "\n".join(lines)


def _exchange_line(exchange: ExchangeView) -> str:
    kind = exchange.type if exchange.durable else f"{exchange.type}, transient"
    line = f"{exchange.name} ({kind})" + _arguments(exchange.arguments)
    if exchange.broadcast:
        line += "  broadcast: a queue per worker"
    if exchange.declared is False:
        line += "  not declared"
    return line


def _binding_label(kind: str, binding: BindingSpec) -> str:
    if kind == "fanout":
        return ""
    if kind == "headers":
        headers = {k: v for k, v in binding.arguments.items() if k != "x-match"}
        pairs = ", ".join(f"{k}={v!r}" for k, v in headers.items())
        return f"headers {binding.arguments.get('x-match', 'all')}({pairs}) "
    return f"key {binding.routing_key!r} "


def _arguments(arguments: Mapping[str, Any]) -> str:
    if not arguments:
        return ""
    pairs = ", ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in arguments.items()
    )
    return f"  [{pairs}]"


def _table(overview: Overview) -> list[str]:
    live = overview.live
    header = ["  queue", *(["ready", "unacked", "consumers"] if live else []), "dlq"]
    rows: list[list[str]] = [header]
    for queue in overview.queues:
        row = [f"{'*' if queue.consumed else ' '} {queue.name}"]
        if live:
            row += _count_cells(queue.live)
        row.append(_dlq_cell(live, queue.dlq, queue.dlq_live))
        if live and queue.live is None:
            row.append("not declared")
        elif live and queue.dlq_live is None:
            row.append(f"{queue.dlq} not declared")
        rows.append(row)
    for item in overview.broadcasts:
        row = [f"{'*' if item.consumed else ' '} {item.name}", *(["-", "-", "-"] if live else [])]
        rows.append(
            [*row, _dlq_cell(live, item.dlq, item.dlq_live), "broadcast: a queue per worker"]
        )
    return _columns(rows)


def _count_cells(counts: QueueCounts | None) -> list[str]:
    if counts is None:
        return ["-", "-", "-"]
    unacked = "-" if counts.unacked is None else str(counts.unacked)
    return [str(counts.messages), unacked, str(counts.consumers)]


def _dlq_cell(live: bool, name: str, counts: QueueCounts | None) -> str:
    if not live:
        return name
    return f"{name}: {'-' if counts is None else counts.messages}"


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Cells aligned in columns; the last column is free text and sets no width."""
    last = max(len(row) for row in rows) - 1
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(last)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=False)).rstrip()
        for row in rows
    ]


# -- reading the broker ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnackedSource:
    """How unacked counts are read: the command, or why there is none."""

    command: tuple[str, ...] | None
    unknown: str | None = None


def unacked_source(broker_url: str | None, rabbitmqctl: str | None) -> UnackedSource:
    """The ``rabbitmqctl`` command listing the unacked counts of ``broker_url``'s vhost,
    or why they cannot be read.

    :param rabbitmqctl: the path of ``rabbitmqctl``, if it is installed.
    """
    if broker_url is None:
        return UnackedSource(None, "the app was given a transport, not a broker URL")
    if broker_scheme(broker_url) != "amqp":
        scheme = urlsplit(broker_url).scheme
        return UnackedSource(None, f"{scheme}:// keeps no unacked count")
    local = [node for node in broker_nodes(broker_url) if _is_local(urlsplit(node).hostname)]
    if not local:
        return UnackedSource(
            None, "AMQP gives no unacked count, and rabbitmqctl reads only this machine's broker"
        )
    if rabbitmqctl is None:
        return UnackedSource(None, "AMQP gives no unacked count, and rabbitmqctl is not on PATH")
    path = urlsplit(local[0]).path
    vhost = "/" if path in ("", "/", "//") else unquote(path[1:])
    columns = ("name", "messages_ready", "messages_unacknowledged", "consumers")
    return UnackedSource((rabbitmqctl, "list_queues", "-p", vhost, *columns, "--formatter", "json"))


def _is_local(host: str | None) -> bool:
    host = host or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


def unacked_counts(output: str, expected: Iterable[str]) -> dict[str, int]:
    """The unacked count of every queue in ``rabbitmqctl list_queues --formatter json``
    output.

    :param expected: queues the broker has (AMQP said so): each must be listed.
    :raises ValueError: the output is not that, or it lacks an expected queue (so it
        describes another broker); the message says which.
    """
    try:
        rows = json.loads(output)
        counts = {str(row["name"]): int(row["messages_unacknowledged"]) for row in rows}
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"rabbitmqctl answered something else than its queue list ({exc})"
        ) from exc
    for name in expected:
        if name not in counts:
            raise ValueError(
                f"rabbitmqctl speaks for another broker: it does not list queue {name!r}"
            )
    return counts


async def read_live(transport: Transport, overview: Overview, source: UnackedSource) -> Live:
    """What the broker holds of ``overview``'s queues and exchanges (nothing is declared).

    :raises BrokerError: the broker cannot be asked.
    """
    states = {name: await transport.inspect_queue(name) for name in overview.queue_names()}
    exchanges = {name: await transport.inspect_exchange(name) for name in overview.exchange_names()}
    found = [name for name, state in states.items() if state is not None]
    unacked: dict[str, int] = {}
    unknown = source.unknown
    if source.command is not None and found:
        try:
            unacked = unacked_counts(await _rabbitmqctl(source.command), found)
        except ValueError as exc:
            unknown = str(exc)
    queues = {
        name: None
        if state is None
        else QueueCounts(
            state.messages, unacked.get(name) if unknown is None else None, state.consumers
        )
        for name, state in states.items()
    }
    return Live(queues, exchanges, unknown)


async def _rabbitmqctl(command: Sequence[str]) -> str:
    """Run ``command``; its output.

    :raises ValueError: it could not run, failed or did not answer in time.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise ValueError(f"rabbitmqctl could not run: {exc}") from exc
    try:
        async with asyncio.timeout(RABBITMQCTL_TIMEOUT):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ValueError(f"rabbitmqctl did not answer in {RABBITMQCTL_TIMEOUT:g} s") from None
    if process.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines() or [f"status {process.returncode}"]
        raise ValueError(f"rabbitmqctl failed: {said[0]}")
    return out.decode(errors="replace")
