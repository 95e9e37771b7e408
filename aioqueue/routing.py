"""Where a task message goes: send options -> a :class:`Route` (pure).

:func:`resolve` decides the exchange, the routing key, what must be declared before the
publish (the target queue's topology, a delay bucket) and the delay; the broker layer
(``aioqueue.broker``) declares and publishes. Nothing here does I/O.

Delays: a message not yet due goes to a delay bucket (``aioqueue.topology``). Buckets
are powers of two; the largest bucket not longer than the remaining delay is chosen and
a message that comes back early (its ``eta`` still ahead) takes the next smaller bucket,
so any delay is reached in at most ~32 hops with a handful of queues.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .options import Options
from .topology import Queue, delay_topology

__all__ = ("MAX_DELAY_BUCKET_MS", "MIN_DELAY_MS", "Route", "delay_bucket_ms", "resolve")

# A remainder below this is run at once: the hop would cost more than the wait.
MIN_DELAY_MS = 5
MAX_DELAY_BUCKET_MS = 2**31


@dataclass(frozen=True, slots=True)
class Route:
    """Where one message is published, and what must exist first.

    :param exchange: the exchange to publish to (``""``: the default exchange).
    :param routing_key: the routing key.
    :param queue: the queue whose topology must be declared (``None``: the caller
        named an exchange of its own, which aioqueue does not declare).
    :param delay_ms: the delay bucket the message waits in first, if it is not due.
    """

    exchange: str
    routing_key: str
    queue: Queue | None = None
    delay_ms: int | None = None


def delay_bucket_ms(remaining_ms: float) -> int | None:
    """The delay bucket for a message due in ``remaining_ms``, or ``None`` if it is due.

    >>> delay_bucket_ms(10_000)
    8192
    """
    if remaining_ms < MIN_DELAY_MS:
        return None
    bucket = 1 << (int(remaining_ms).bit_length() - 1)
    return min(bucket, MAX_DELAY_BUCKET_MS)


def resolve(
    options: Options,
    *,
    default_queue: str,
    queues: Mapping[str, Queue],
    eta: datetime | None = None,
    now: datetime | None = None,
) -> Route:
    """The route of a message sent with ``options`` (and due at ``eta``).

    A per-call ``exchange`` is used as given, with ``routing_key`` (default: the queue
    name); otherwise the message goes to its queue (``options.queue``, else
    ``default_queue``) through the default exchange, or through the delay bucket when
    it is not due yet. ``queues`` holds the definitions of named queues.
    """
    name = options.queue or default_queue
    if options.exchange is not None:
        return Route(options.exchange, options.routing_key or name)
    queue = queues.get(name) or Queue(name)
    bucket = None
    if eta is not None:
        assert now is not None, "an eta needs the current time"
        bucket = delay_bucket_ms((eta - now).total_seconds() * 1000)
    if bucket is None:
        return Route("", name, queue)
    return Route(delay_topology(bucket)[0].name, name, queue, bucket)
