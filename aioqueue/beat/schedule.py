"""When an entry fires: the :class:`Schedule` interface, fixed intervals and one-off times.

A schedule is pure: it does no I/O and reads no clock. The caller passes ``now`` (a
timezone-aware datetime) and gets back the next instant the entry fires, as an aware UTC
datetime, or ``None`` when it never fires again. Tests and the beat runtime therefore
share one code path, with the clock injected.

:class:`every` fires on a fixed grid of instants, :class:`at` once; the crontab schedule
lives in :mod:`aioqueue.beat.crontab`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from ..exceptions import ConfigurationError

__all__ = ("EPOCH", "Schedule", "at", "every")

#: The default anchor of :class:`every`: every process derives the same grid from it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@runtime_checkable
class Schedule(Protocol):
    """What beat needs from a schedule."""

    def next_after(self, now: datetime) -> datetime | None:
        """The first instant strictly after ``now`` at which the entry fires.

        :param now: a timezone-aware datetime.
        :return: an aware UTC datetime, or ``None`` if the entry never fires again.
        :raises ~aioqueue.exceptions.ConfigurationError: ``now`` is naive.
        """
        ...

    def describe(self) -> str:
        """A short human description for banners and logs, e.g. ``"every 10 s"``."""
        ...


def _aware(value: datetime, what: str) -> datetime:
    """``value`` in UTC; a naive datetime is refused, as its instant is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


class every:
    """Fire every ``interval``, on the grid ``anchor + k * interval`` for integer ``k``.

    The grid depends only on the interval and the anchor, not on when a process started,
    so every beat instance computes the same instants. ``next_after(now)`` is the first
    grid instant strictly after ``now``; it is never ``None``.

    :param interval: seconds (an int or float) or a :class:`~datetime.timedelta`; must be
        positive (and at least a microsecond).
    :param anchor: a timezone-aware instant on the grid; default the Unix epoch in UTC,
        so ``every(3600)`` fires on the hour and ``every(86400)`` at midnight UTC.
    :raises ~aioqueue.exceptions.ConfigurationError: the interval is not positive or not
        finite, or the anchor is naive.
    """

    __slots__ = ("_anchor", "_anchored", "_interval")

    def __init__(self, interval: float | timedelta, anchor: datetime | None = None) -> None:
        self._interval = _interval(interval)
        self._anchored = anchor is not None
        self._anchor = EPOCH if anchor is None else _aware(anchor, "every(): anchor")

    @property
    def interval(self) -> timedelta:
        """The time between two ticks."""
        return self._interval

    @property
    def anchor(self) -> datetime:
        """An instant on the grid, in UTC (the epoch unless one was given)."""
        return self._anchor

    def next_after(self, now: datetime) -> datetime:
        """The first grid instant strictly after ``now`` (aware UTC).

        :raises ~aioqueue.exceptions.ConfigurationError: ``now`` is naive.
        """
        # timedelta // timedelta is exact integer arithmetic on microseconds.
        steps = (_aware(now, "now") - self._anchor) // self._interval + 1
        return self._anchor + steps * self._interval

    def describe(self) -> str:
        """E.g. ``"every 10 s"``, or ``"every 3600 s from 2026-01-01T00:30:00+00:00"``."""
        text = f"every {self._interval.total_seconds():g} s"
        return f"{text} from {self._anchor.isoformat()}" if self._anchored else text

    def __repr__(self) -> str:
        anchor = f", anchor={self._anchor!r}" if self._anchored else ""
        return f"every({self._interval!r}{anchor})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, every):
            return NotImplemented
        return self._interval == other._interval and self._anchor == other._anchor

    def __hash__(self) -> int:
        return hash((self._interval, self._anchor))


def _interval(value: float | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        interval = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigurationError(f"every(): interval must be finite, got {value!r}")
        try:
            interval = timedelta(seconds=value)
        except OverflowError:
            raise ConfigurationError(f"every(): interval {value!r} s is too large") from None
    else:
        raise ConfigurationError(
            f"every(): interval must be seconds or a timedelta, got {type(value).__name__}"
        )
    if interval <= timedelta(0):
        raise ConfigurationError(f"every(): interval must be positive, got {value!r}")
    return interval


class at:
    """Fire once, at ``when``.

    ``next_after(now)`` is ``when`` while ``when`` is after ``now``, then ``None`` for
    ever.

    :param when: a timezone-aware datetime.
    :raises ~aioqueue.exceptions.ConfigurationError: ``when`` is naive.
    """

    __slots__ = ("_when",)

    def __init__(self, when: datetime) -> None:
        self._when = _aware(when, "at(): the time")

    @property
    def when(self) -> datetime:
        """The instant it fires, in UTC."""
        return self._when

    def next_after(self, now: datetime) -> datetime | None:
        """``when`` if it is strictly after ``now``, else ``None`` (aware UTC).

        :raises ~aioqueue.exceptions.ConfigurationError: ``now`` is naive.
        """
        return self._when if self._when > _aware(now, "now") else None

    def describe(self) -> str:
        """E.g. ``"at 2030-01-01T00:00:00+00:00"``."""
        return f"at {self._when.isoformat()}"

    def __repr__(self) -> str:
        return f"at({self._when!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, at):
            return NotImplemented
        return self._when == other._when

    def __hash__(self) -> int:
        return hash(self._when)
