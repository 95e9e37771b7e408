"""Transports: the broker interface (``base``), RabbitMQ (``amqp``), in-process (``memory``)."""

from __future__ import annotations

from .base import Consumer as Consumer
from .base import Delivery as Delivery
from .base import Envelope as Envelope
from .base import Lease as Lease
from .base import Transport as Transport
from .memory import MemoryTransport as MemoryTransport

__all__ = ("Consumer", "Delivery", "Envelope", "Lease", "MemoryTransport", "Transport")
