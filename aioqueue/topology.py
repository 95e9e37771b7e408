"""What aioqueue declares in the broker, and every broker name it uses (all pure).

A :class:`Queue` is consumed by workers and published to by clients. By default its
topology is Celery's: a durable direct exchange and a durable queue of the same name,
bound with the queue's name as routing key, so Celery and aioqueue can share a broker;
a queue may instead be bound to any :class:`Exchange` (direct, topic, fanout, headers)
by one or more :class:`Binding`. A :class:`Broadcast` is a fanout exchange with one
exclusive queue per worker. aioqueue adds a ``<queue>.dlq`` for messages that cannot be
processed. :class:`Topology` holds an app's definitions by name.

Delays (countdown, eta, retry backoff) live in the broker, never in a worker's memory:
RabbitMQ would close a channel holding an unacked message past ``consumer_timeout``.
A message that is not yet due goes to a delay bucket: a fanout exchange and a durable
queue ``aioqueue.delay.<ms>`` whose ``x-message-ttl`` is ``<ms>`` and whose dead-letter
exchange is the default one. The message keeps its routing key (the target queue), so
when the TTL ends RabbitMQ dead-letters it straight back to its queue. A message routed
through an exchange waits in ``aioqueue.delay.<ms>.<exchange>`` instead, which
dead-letters it to that exchange. One queue per bucket, because a per-message TTL only
expires at the head of a queue (``aioqueue.routing.delay_bucket_ms`` chooses the bucket).

The other names: a chord's progress queue (``worker/chord.py``), the ``rpc://`` reply
queues, and the names Celery's remote control, events and beat use or that aioqueue's
beat and revocations keep their state under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .exceptions import ConfigurationError
from .transport.base import BindingSpec, ExchangeSpec, ExchangeType, QueueSpec

__all__ = (
    "BEAT_ENTRIES",
    "BEAT_LEASE",
    "BEAT_STATE",
    "CHORD_PREFIX",
    "DEATH_HEADERS",
    "DELAY_PREFIX",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "EVENTS_EXCHANGE",
    "ORIGIN_HEADER",
    "PIDBOX_EXCHANGE",
    "PIDBOX_REPLY_EXCHANGE",
    "REDELIVERIES_HEADER",
    "REPLY_PREFIX",
    "REVOKED_STATE",
    "REVOKE_SWEEP_LEASE",
    "Binding",
    "Broadcast",
    "Declarations",
    "Destination",
    "Exchange",
    "Queue",
    "Topology",
    "beat_names",
    "chord_queue",
    "chord_run_lease",
    "delay_topology",
    "dlq_name",
    "pidbox_exchange",
    "pidbox_queue",
    "pidbox_reply_exchange",
    "pidbox_reply_queue",
    "reply_queue",
)

DELAY_PREFIX = "aioqueue.delay."
CHORD_PREFIX = "aioqueue.chord."
REPLY_PREFIX = "aioqueue.reply."
# Celery's names, so that Celery's tools (inspect, control, Flower) see aioqueue workers.
PIDBOX_EXCHANGE = "celery.pidbox"
PIDBOX_REPLY_EXCHANGE = "reply.celery.pidbox"
EVENTS_EXCHANGE = "celeryev"
# The lease whose holder is the one beat leader, and the state queues beat and
# revocation keep.
BEAT_LEASE = "aioqueue.beat.leader"
BEAT_STATE = "aioqueue.beat"
BEAT_ENTRIES = "aioqueue.beat.entries"
# One revocation store per vhost, not per app: task ids are unique, and the app that
# revokes (a web app, say) is often not the one whose workers run the task.
REVOKED_STATE = "aioqueue.revoked"
# Held by the worker that deletes expired revocations from the store, one at a time.
REVOKE_SWEEP_LEASE = "aioqueue.revoked.sweep"
# Celery's pidbox queue arguments (milliseconds): RabbitMQ deletes a queue unused for
# 10 s, and drops a control message that waited in it for 5 min.
_PIDBOX_QUEUE_ARGUMENTS = {"x-expires": 10_000, "x-message-ttl": 300_000}
EXCHANGE_TYPES: tuple[str, ...] = get_args(ExchangeType)
# Headers the worker adds to a message it dead-letters (why, and where it came from) or
# publishes again in place of a redelivered one (how often it was redelivered).
ERROR_HEADER = "x-aioqueue-error"
ERROR_TYPE_HEADER = "x-aioqueue-error-type"
ORIGIN_HEADER = "x-aioqueue-queue"
REDELIVERIES_HEADER = "x-aioqueue-redeliveries"
# Prefixes of the headers RabbitMQ adds to a message it dead-letters.
DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")


def dlq_name(queue: str) -> str:
    """The dead-letter queue of ``queue``."""
    return f"{queue}.dlq"


@dataclass(frozen=True, slots=True)
class Declarations:
    """What one definition needs in the broker, in the order it is declared."""

    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange aioqueue declares.

    :param name: the exchange's name (not ``""``: the default exchange always exists).
    :param type: ``direct`` (routing key equals the binding key), ``topic`` (binding
        keys are patterns: ``*`` one word, ``#`` any), ``fanout`` (every bound queue) or
        ``headers`` (bindings match message headers).
    :param durable: survives a broker restart.
    :param arguments: extra exchange arguments (``alternate-exchange``, ...).
    """

    name: str
    type: ExchangeType = "direct"
    durable: bool = True
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("an exchange needs a name (the default exchange exists)")
        if self.type not in EXCHANGE_TYPES:
            raise ConfigurationError(
                f"exchange {self.name!r}: type must be one of {', '.join(EXCHANGE_TYPES)}, "
                f"got {self.type!r}"
            )

    def spec(self) -> ExchangeSpec:
        """What the transport declares."""
        return ExchangeSpec(self.name, self.type, self.durable, dict(self.arguments))

    def describe(self) -> str:
        """``name (type)``, for the banner and ``aioqueue topology``."""
        return f"{self.name} ({self.type})"


def _exchange(value: Exchange | str) -> Exchange:
    return value if isinstance(value, Exchange) else Exchange(value)


@dataclass(frozen=True, slots=True)
class Binding:
    """One way messages reach a queue: from ``exchange``, by key or by headers.

    :param exchange: the exchange (a name: a direct exchange of that name).
    :param routing_key: the binding key: a routing key (direct) or a pattern (topic);
        fanout and headers exchanges ignore it.
    :param headers: for a headers exchange, the header values to match.
    :param match: ``all`` headers must match, or ``any`` of them.
    """

    exchange: Exchange | str
    routing_key: str = ""
    headers: Mapping[str, Any] | None = None
    match: Literal["all", "any"] = "all"

    def __post_init__(self) -> None:
        exchange = _exchange(self.exchange)
        object.__setattr__(self, "exchange", exchange)
        if self.headers is not None and exchange.type != "headers":
            raise ConfigurationError(
                f"binding to {exchange.name!r}: headers match only on a headers exchange, "
                f"not a {exchange.type} one"
            )
        if self.match not in ("all", "any"):
            raise ConfigurationError(
                f"binding to {exchange.name!r}: match must be 'all' or 'any', got {self.match!r}"
            )

    @property
    def target(self) -> Exchange:
        """The exchange, as an :class:`Exchange`."""
        return _exchange(self.exchange)

    def spec(self, queue: str) -> BindingSpec:
        """What the transport binds for ``queue``."""
        exchange = self.target
        if exchange.type != "headers":
            return BindingSpec(queue, exchange.name, self.routing_key)
        return BindingSpec(
            queue, exchange.name, "", {"x-match": self.match, **(self.headers or {})}
        )

    def describe(self) -> str:
        """The binding in a few words, for the banner and ``aioqueue topology``."""
        exchange = self.target
        if exchange.type == "headers":
            pairs = ", ".join(f"{k}={v!r}" for k, v in (self.headers or {}).items())
            return f"{exchange.describe()} headers {self.match}({pairs})"
        if exchange.type == "fanout":
            return exchange.describe()
        return f"{exchange.describe()} key {self.routing_key!r}"


# Typed queue options and the arguments RabbitMQ reads them from.
_QUEUE_OPTIONS = {
    "max_priority": "x-max-priority",
    "queue_type": "x-queue-type",
    "message_ttl": "x-message-ttl",
    "max_length": "x-max-length",
    "max_length_bytes": "x-max-length-bytes",
    "overflow": "x-overflow",
    "single_active_consumer": "x-single-active-consumer",
}


@dataclass(frozen=True, slots=True)
class Queue:
    """A task queue and how messages reach it.

    By default a queue is Celery's: a direct exchange of the same name bound with the
    queue's name as key. Give ``exchange`` (with ``routing_key``) and/or ``bindings`` to
    bind it elsewhere instead. Sending a task with ``queue=`` delivers it to this queue
    alone (through the default exchange); to route through an exchange, send with
    ``exchange=`` and ``routing_key=``.

    :param name: the queue's name.
    :param exchange: an exchange to bind it to (a name: a direct exchange).
    :param routing_key: the key of that binding (default: the queue's name).
    :param bindings: further bindings: keys, topic patterns, header matches.
    :param arguments: raw queue arguments, for what the options below do not cover.
    :param max_priority: highest message priority honoured (``x-max-priority``, 1-255);
        higher ``priority=`` messages are delivered first.
    :param queue_type: ``classic`` or ``quorum`` (replicated; RabbitMQ's choice for
        durability). A quorum queue dead-letters into ``<name>.dlq``, a quorum queue too.
    :param message_ttl: seconds a message may wait; then it goes to ``<name>.dlq``.
    :param max_length: messages the queue holds at most (see ``overflow``).
    :param max_length_bytes: bytes of message bodies the queue holds at most.
    :param overflow: what a full queue does: ``drop-head`` (the default: the oldest
        goes to ``<name>.dlq``), ``reject-publish`` (the publish fails with
        :class:`~aioqueue.exceptions.PublishError`) or ``reject-publish-dlx`` (the new
        message goes to ``<name>.dlq``).
    :param single_active_consumer: one consumer at a time gets the messages, in order;
        another takes over when it goes (ordered processing).
    """

    name: str
    exchange: Exchange | str | None = None
    routing_key: str | None = None
    bindings: Sequence[Binding] = ()
    arguments: Mapping[str, Any] = field(default_factory=dict)
    max_priority: int | None = None
    queue_type: Literal["classic", "quorum"] | None = None
    message_ttl: float | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: Literal["drop-head", "reject-publish", "reject-publish-dlx"] | None = None
    single_active_consumer: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a queue needs a name")
        object.__setattr__(self, "bindings", tuple(self.bindings))
        if self.exchange is not None:
            object.__setattr__(self, "exchange", _exchange(self.exchange))
        # Computed once: every publish to this queue reads them.
        object.__setattr__(self, "arguments", _queue_arguments(self))

    @property
    def dlq(self) -> str:
        """The dead-letter queue, ``<name>.dlq``."""
        return dlq_name(self.name)

    def all_bindings(self) -> tuple[Binding, ...]:
        """Every binding of the queue, the default one when none is given."""
        bindings = tuple(self.bindings)
        if self.exchange is not None:
            key = self.routing_key if self.routing_key is not None else self.name
            bindings = (Binding(self.exchange, key), *bindings)
        return bindings or (Binding(self.name, self.name),)

    def declarations(self) -> Declarations:
        """The exchanges, the queue and its ``.dlq``, and the bindings to declare."""
        bindings = self.all_bindings()
        exchanges = {b.target.name: b.target.spec() for b in bindings}
        return Declarations(
            tuple(exchanges.values()),
            (QueueSpec(self.name, arguments=dict(self.arguments)), _dlq_spec(self)),
            tuple(b.spec(self.name) for b in bindings),
        )

    def describe(self) -> str:
        """The queue's options and bindings in a line, for the banner."""
        options = [f"{key}={value}" for key, value in self.arguments.items()]
        routes = "; ".join(b.describe() for b in self.all_bindings())
        return f"{self.name} <- {routes}" + (f" [{', '.join(options)}]" if options else "")


# A quorum ``.dlq`` is never consumed, only taken and given back whole (``aioqueue dlq``):
# before 4.3 RabbitMQ counts every such return as a delivery, and from 4.0 it drops a
# message returned 20 times unless told otherwise. A limit no listing reaches keeps them
# (not -1: 3.10 drops a message at its first return then).
_DLQ_DELIVERY_LIMIT = 2**31 - 1


def _dlq_spec(queue: Queue) -> QueueSpec:
    """The ``.dlq`` of ``queue``: a quorum queue for a quorum queue, so that on a cluster
    its dead letters are replicated as its messages are. A classic queue lives on the
    node that declared it: while that node is down it cannot be declared, published to
    or read, and what it holds is out of reach."""
    if queue.arguments.get("x-queue-type") != "quorum":
        return QueueSpec(queue.dlq)
    return QueueSpec(
        queue.dlq, arguments={"x-queue-type": "quorum", "x-delivery-limit": _DLQ_DELIVERY_LIMIT}
    )


def _queue_arguments(queue: Queue) -> dict[str, Any]:
    """The queue's arguments: the raw ones and those its options set, checked."""
    arguments = dict(queue.arguments)
    values: dict[str, Any] = {
        "max_priority": queue.max_priority,
        "queue_type": queue.queue_type,
        "message_ttl": None if queue.message_ttl is None else round(queue.message_ttl * 1000),
        "max_length": queue.max_length,
        "max_length_bytes": queue.max_length_bytes,
        "overflow": queue.overflow,
        "single_active_consumer": queue.single_active_consumer or None,
    }
    where = f"queue {queue.name!r}"
    for option, value in values.items():
        if value is None:
            continue
        key = _QUEUE_OPTIONS[option]
        if key in arguments and arguments[key] != value:
            raise ConfigurationError(
                f"{where}: {option}={getattr(queue, option)!r} disagrees with "
                f"arguments[{key!r}]={arguments[key]!r}"
            )
        arguments[key] = value
    _check_queue_arguments(where, arguments)
    if _drops_messages(arguments):
        arguments.setdefault("x-dead-letter-exchange", "")
        arguments.setdefault("x-dead-letter-routing-key", dlq_name(queue.name))
    return arguments


def _drops_messages(arguments: Mapping[str, Any]) -> bool:
    """Whether the broker itself would drop messages of such a queue: those go to the
    ``.dlq`` instead, so nothing is lost."""
    if arguments.get("x-queue-type") == "quorum":
        # From RabbitMQ 4.0 a quorum queue drops a message redelivered 20 times unless
        # it has a dead-letter target.
        return True
    if "x-message-ttl" in arguments:
        return True
    limited = "x-max-length" in arguments or "x-max-length-bytes" in arguments
    return limited and arguments.get("x-overflow", "drop-head") != "reject-publish"


def _check_queue_arguments(where: str, arguments: Mapping[str, Any]) -> None:
    """Refuse what RabbitMQ would refuse, before anything is declared."""
    priority = arguments.get("x-max-priority")
    if priority is not None and not (isinstance(priority, int) and 1 <= priority <= 255):
        raise ConfigurationError(f"{where}: max_priority must be 1-255, got {priority!r}")
    kind = arguments.get("x-queue-type", "classic")
    if kind not in ("classic", "quorum"):
        raise ConfigurationError(f"{where}: queue_type must be classic or quorum, got {kind!r}")
    for key in ("x-message-ttl", "x-max-length", "x-max-length-bytes"):
        value = arguments.get(key)
        if value is not None and not (isinstance(value, int) and value >= 0):
            raise ConfigurationError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    overflow = arguments.get("x-overflow")
    if overflow is not None and overflow not in (
        "drop-head",
        "reject-publish",
        "reject-publish-dlx",
    ):
        raise ConfigurationError(
            f"{where}: overflow must be drop-head, reject-publish or reject-publish-dlx, "
            f"got {overflow!r}"
        )
    if kind == "quorum":
        if priority is not None:
            raise ConfigurationError(f"{where}: a quorum queue takes no max_priority")
        if overflow == "reject-publish-dlx":
            raise ConfigurationError(f"{where}: a quorum queue has no reject-publish-dlx overflow")


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A task destination every worker receives once: a fanout exchange, and for each
    worker consuming it an exclusive queue of its own bound to it.

    A broadcast sent while no worker consumes it fails with
    :class:`~aioqueue.exceptions.UnroutableError`; a worker that starts later does not
    see what was broadcast before. Bad input from a worker's queue goes to the shared
    ``<name>.dlq``.

    :param name: the exchange's name, and the prefix of the workers' queues.
    """

    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a broadcast needs a name")

    @property
    def exchange(self) -> Exchange:
        """The fanout exchange."""
        return Exchange(self.name, "fanout")

    @property
    def dlq(self) -> str:
        """The dead-letter queue shared by the workers' queues."""
        return dlq_name(self.name)

    def declarations(self) -> Declarations:
        """What a sender declares: the exchange (and the shared ``.dlq``)."""
        return Declarations((self.exchange.spec(),), (QueueSpec(self.dlq),))

    def worker_queue(self, worker_id: str) -> Declarations:
        """The exclusive queue of one worker, bound to the exchange."""
        name = f"{self.name}.{worker_id}"
        return Declarations(
            (self.exchange.spec(),),
            (QueueSpec(name, durable=False, exclusive=True), QueueSpec(self.dlq)),
            (BindingSpec(name, self.name),),
        )

    def describe(self) -> str:
        """The broadcast in a line, for the banner."""
        return f"{self.name} <- {self.exchange.describe()}, a queue per worker"


#: A destination tasks are sent to by name (``queue=``).
Destination = Queue | Broadcast


class Topology:
    """The app's destinations by name, and the exchanges they bind to (pure).

    :param destinations: the queues and broadcasts the app defines.
    :param default_queue: where tasks go without a route.
    :raises ConfigurationError: two definitions share a name, or one exchange is
        defined twice with different settings.
    """

    def __init__(self, destinations: Iterable[Destination], default_queue: str) -> None:
        self.default_queue = default_queue
        self._defined: dict[str, Destination] = {}
        self._exchanges: dict[str, Exchange] = {}
        self._bound: dict[str, list[Queue]] = {}
        for item in destinations:
            if item.name in self._defined:
                raise ConfigurationError(f"queue {item.name!r} is defined twice")
            self._defined[item.name] = item
            if isinstance(item, Broadcast):
                self._add_exchange(item.exchange, item.name)
                continue
            for binding in item.all_bindings():
                self._add_exchange(binding.target, item.name)
                self._bound.setdefault(binding.target.name, []).append(item)
        # Undefined names get the default shape, made once: a publish reads it each time.
        self._shapes: dict[str, Queue] = {}

    def _add_exchange(self, exchange: Exchange, where: str) -> None:
        known = self._exchanges.setdefault(exchange.name, exchange)
        if known != exchange:
            raise ConfigurationError(
                f"exchange {exchange.name!r} is defined twice: as {known} and, for "
                f"{where!r}, as {exchange}"
            )

    @property
    def defined(self) -> Mapping[str, Destination]:
        """The destinations the app defines, by name."""
        return self._defined

    @property
    def exchanges(self) -> Mapping[str, Exchange]:
        """The exchanges the app's destinations bind to, by name."""
        return self._exchanges

    def destination(self, name: str) -> Destination:
        """The definition of ``name``: the one given, else the default queue shape."""
        found = self._defined.get(name) or self._shapes.get(name)
        if found is None:
            found = self._shapes[name] = Queue(name)
        return found

    def bound_to(self, exchange: str) -> tuple[Queue, ...]:
        """The app's queues bound to ``exchange``."""
        return tuple(self._bound.get(exchange, ()))

    def consumed(
        self, include: Iterable[str] = (), exclude: Iterable[str] = ()
    ) -> list[Destination]:
        """What a worker consumes: ``include`` (default: the default queue and every
        destination the app defines) without ``exclude``.

        :raises ConfigurationError: nothing is left to consume.
        """
        names = list(dict.fromkeys(include)) or [self.default_queue, *self._defined]
        dropped = set(exclude)
        chosen = [self.destination(n) for n in dict.fromkeys(names) if n not in dropped]
        if not chosen:
            raise ConfigurationError(f"no queue to consume: {', '.join(names)} all excluded")
        return chosen


def delay_topology(
    bucket_ms: int, exchange: str = ""
) -> tuple[ExchangeSpec, QueueSpec, BindingSpec]:
    """The fanout exchange and TTL queue of one delay bucket (see the module docstring).

    A message waits in it, then is dead-lettered to ``exchange`` (default: the default
    exchange, so straight to the queue its routing key names).
    """
    name = f"{DELAY_PREFIX}{bucket_ms}" + (f".{exchange}" if exchange else "")
    spec = QueueSpec(
        name, arguments={"x-message-ttl": bucket_ms, "x-dead-letter-exchange": exchange}
    )
    return ExchangeSpec(name, "fanout"), spec, BindingSpec(name, name)


def chord_queue(group_id: str, expires_s: float) -> QueueSpec:
    """The queue holding a chord's progress (see ``aioqueue.worker.chord``).

    RabbitMQ deletes it once unused for ``expires_s`` seconds, should a chord never
    complete (its members were purged, say).
    """
    return QueueSpec(f"{CHORD_PREFIX}{group_id}", arguments={"x-expires": int(expires_s * 1000)})


def chord_run_lease(task_id: str) -> str:
    """The lease a worker holds while it runs ``task_id``, published by a chord's firing
    (see ``aioqueue.worker.chord``): a copy of it waits meanwhile."""
    return f"{CHORD_PREFIX}{task_id}.run"


def beat_names(app: str) -> tuple[str, str, str]:
    """The lease, last-run store and runtime-entry store of app ``app``'s beat.

    Per app: two apps sharing a vhost each have their own leader and entries.
    """
    return f"{BEAT_LEASE}.{app}", f"{BEAT_STATE}.{app}", f"{BEAT_ENTRIES}.{app}"


def reply_queue(client_id: str, expires_s: float) -> QueueSpec:
    """The ``rpc://`` reply queue of one client (see ``aioqueue.results.rpc``).

    Durable with ``x-expires`` rather than exclusive: states published while the client
    reconnects wait for it; RabbitMQ deletes the queue once the client is gone.
    """
    return QueueSpec(f"{REPLY_PREFIX}{client_id}", arguments={"x-expires": int(expires_s * 1000)})


def pidbox_exchange() -> ExchangeSpec:
    """Celery's remote-control exchange: every worker's pidbox queue is bound to it.

    Declared exactly as Celery declares it (fanout, not durable), or the declarations of
    Celery's tools and workers on the same vhost would fail.
    """
    return ExchangeSpec(PIDBOX_EXCHANGE, "fanout", durable=False)


def pidbox_queue(hostname: str) -> tuple[QueueSpec, BindingSpec]:
    """The pidbox queue of the worker named ``hostname`` (Celery's
    ``<hostname>.celery.pidbox``) and its binding to :func:`pidbox_exchange`.

    Exclusive, as Celery's (RabbitMQ 4.3 refuses transient queues that are not): it
    goes with the worker's connection, so two running workers cannot share a hostname.
    """
    name = f"{hostname}.{PIDBOX_EXCHANGE}"
    spec = QueueSpec(name, durable=False, exclusive=True, arguments=dict(_PIDBOX_QUEUE_ARGUMENTS))
    return spec, BindingSpec(name, PIDBOX_EXCHANGE)


def pidbox_reply_exchange(name: str = PIDBOX_REPLY_EXCHANGE) -> ExchangeSpec:
    """The exchange control replies go to (Celery's: direct, not durable)."""
    return ExchangeSpec(name, "direct", durable=False)


def pidbox_reply_queue(client_id: str) -> tuple[QueueSpec, BindingSpec]:
    """The queue a client collects control replies in (Celery's
    ``<oid>.reply.celery.pidbox``), bound with its id as routing key."""
    name = f"{client_id}.{PIDBOX_REPLY_EXCHANGE}"
    spec = QueueSpec(name, durable=False, exclusive=True, arguments=dict(_PIDBOX_QUEUE_ARGUMENTS))
    return spec, BindingSpec(name, PIDBOX_REPLY_EXCHANGE, client_id)
