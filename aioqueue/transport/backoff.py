"""How long a transport waits between attempts to reach the broker (pure).

Exponential with a cap, and jittered: when a broker node goes away, every client and
worker of a fleet loses its connection at the same instant; without jitter they would
all knock on the next node in lockstep, round after round.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import ConfigurationError

__all__ = ("ReconnectBackoff",)

# Past this many doublings every delay is the cap anyway; it keeps the power finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class ReconnectBackoff:
    """Pauses of ``first`` seconds, growing by ``factor`` after each failed round, at most
    ``longest``; each one shortened by a random part of at most ``jitter`` of it.

    :raises ConfigurationError: a value is out of range.
    """

    first: float = 1.0
    factor: float = 2.0
    longest: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.first > 0:
            raise ConfigurationError(
                f"the first reconnection pause must be positive, got {self.first}"
            )
        if self.factor < 1:
            raise ConfigurationError(f"the backoff factor must be 1 or more, got {self.factor}")
        if self.longest < self.first:
            raise ConfigurationError(
                f"the longest reconnection pause ({self.longest}) is shorter than the first "
                f"({self.first})"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be from 0 to 1, got {self.jitter}")

    def ceiling(self, failures: int) -> float:
        """The pause after ``failures`` failed rounds (counted from 0), before jitter."""
        return min(self.longest, self.first * self.factor ** min(failures, _MAX_EXPONENT))

    def delay(self, failures: int, draw: float) -> float:
        """The pause after ``failures`` failed rounds, for ``draw`` taken uniformly from
        [0, 1): between ``(1 - jitter)`` times :meth:`ceiling` and the ceiling itself.

        >>> ReconnectBackoff(first=1, longest=4, jitter=0.5).delay(1, 0.5)
        1.5
        """
        return self.ceiling(failures) * (1 - self.jitter * draw)
