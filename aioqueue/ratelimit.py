"""Rate limits: Celery's ``"10/s"`` strings and a token bucket (pure; times are given).

A limit holds per task and per worker, as in Celery. The bucket holds up to one
second's worth of tokens (at least one), so a burst after a quiet spell is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .exceptions import ConfigurationError

__all__ = ("TokenBucket", "parse_rate")

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float) -> float:
    """Tasks per second for Celery's ``"100/m"`` (``/s``, ``/m``, ``/h``) or a number
    (per second).

    :raises ConfigurationError: the rate cannot be read or is not positive.
    """
    if isinstance(rate, int | float):
        value = float(rate)
    else:
        count, _, unit = rate.strip().partition("/")
        try:
            value = float(count) / _PER[unit.strip() or "s"]
        except (ValueError, KeyError):
            raise ConfigurationError(
                f"rate_limit {rate!r}: expected '<number>/s', '/m' or '/h'"
            ) from None
    if not value > 0:
        raise ConfigurationError(f"rate_limit {rate!r}: must be more than 0")
    return value


@dataclass(slots=True)
class TokenBucket:
    """Tokens refill at ``rate`` per second up to ``capacity``.

    :param rate: tokens per second.
    """

    rate: float
    capacity: float = 0.0
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            self.capacity = max(1.0, self.rate)
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a token is free (0: one is free now); takes nothing."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take a token, possibly one that frees up later; returns the seconds to wait
        before using it (0: at once)."""
        wait = self.wait(now)
        self.tokens -= 1
        return wait
