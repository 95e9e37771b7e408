"""A task's retry policy and the countdown of its next attempt (pure).

Celery's semantics: ``autoretry_for`` lists the errors that make the task retry on its
own; ``retry_backoff`` makes the countdown grow as ``factor * 2 ** retries`` (``True``
means a factor of 1 s), capped by ``retry_backoff_max``, and ``retry_jitter`` draws it
uniformly from ``[0, countdown]`` ("full jitter") so that many failing tasks do not
come back all at once. Without backoff the countdown is ``default_retry_delay``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from .exceptions import ConfigurationError

__all__ = ("RetryPolicy", "Uniform")


class Uniform(Protocol):
    """A source of uniform draws, as ``random.uniform`` (injectable for tests)."""

    def __call__(self, a: float, b: float, /) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task retries.

    :param autoretry_for: errors that make the task retry by itself.
    :param max_retries: retries at most (``None``: no limit); past it the task fails
        with the error it retried for.
    :param default_retry_delay: seconds before the next attempt, without backoff.
    :param retry_backoff: ``True`` or a factor in seconds: exponential backoff.
    :param retry_backoff_max: the largest countdown backoff gives, in seconds.
    :param retry_jitter: draw the backoff countdown from ``[0, countdown]``.
    """

    autoretry_for: tuple[type[BaseException], ...] = ()
    max_retries: int | None = 3
    default_retry_delay: float = 180.0
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.default_retry_delay < 0:
            raise ConfigurationError(
                f"default_retry_delay must be >= 0, got {self.default_retry_delay}"
            )
        if self.retry_backoff_max < 0:
            raise ConfigurationError(
                f"retry_backoff_max must be >= 0, got {self.retry_backoff_max}"
            )
        for error in self.autoretry_for:
            if not (isinstance(error, type) and issubclass(error, BaseException)):
                raise ConfigurationError(f"autoretry_for takes exception types, got {error!r}")

    def retries_left(self, retries: int, max_retries: int | None = None) -> bool:
        """Whether a task that has retried ``retries`` times may retry again."""
        limit = self.max_retries if max_retries is None else max_retries
        return limit is None or retries < limit

    def countdown(self, retries: int, draw: Uniform = random.uniform) -> float:
        """Seconds until the attempt after ``retries`` earlier retries."""
        if self.retry_backoff is False:
            return self.default_retry_delay
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = min(self.retry_backoff_max, factor * 2.0 ** min(retries, 64))
        if self.retry_jitter:
            countdown = draw(0.0, countdown)
        return countdown
