"""Crontab schedules: five cron fields read in a timezone.

``crontab("*/5 9-17 * * mon-fri", tz="Europe/Berlin")`` fires at the local wall-clock
minutes the fields match. The fields are, in order::

    minute        0-59
    hour          0-23
    day-of-month  1-31
    month         1-12 or jan..dec
    day-of-week   0-7 or sun..sat (0 and 7 are both Sunday)

Each field is a comma-separated list of items; an item is ``*``, a value ``a``, a range
``a-b``, or ``*`` or a range with a step: ``*/n``, ``a-b/n``. Names are case-insensitive
and may appear in ranges (``mon-fri``). A range must not go backwards (``fri-sun`` is an
error; write ``5-7`` or ``fri,sat,sun``). The macros ``@hourly``, ``@daily`` (also
``@midnight``), ``@weekly``, ``@monthly`` and ``@yearly`` (also ``@annually``) stand for
``0 * * * *``, ``0 0 * * *``, ``0 0 * * 0``, ``0 0 1 * *`` and ``0 0 1 1 *``.

**Day of month and day of week** follow Vixie cron: a field is *unrestricted* when its
text starts with ``*`` (so ``*/2`` counts as unrestricted). If either of the two day
fields is unrestricted, a day must match both; if both are restricted, a day matches when
either does: ``0 0 1 * mon`` fires on the 1st of every month *and* on every Monday.

An expression that can never fire (``0 0 30 feb *``, ``0 0 31 apr,jun *``) is refused;
one that fires rarely (``0 0 29 feb *``: leap years only) is accepted.

**Daylight saving time.** The fields describe local wall-clock times; each matching wall
time becomes one instant:

- a wall time that occurs once fires at that instant;
- a wall time that does not exist (the spring-forward gap) fires at the first valid
  instant after it, which is the moment of the transition: ``30 2 * * *`` in
  Europe/Berlin fires at 03:00 CEST on 2026-03-29. Several matching times inside one gap
  (``*/15`` between 02:00 and 03:00) collapse into that single tick;
- a wall time that occurs twice (the autumn fold) fires once, at its first occurrence
  (``fold=0``): on 2026-10-25 in Europe/Berlin ``30 2 * * *`` fires at 02:30 CEST, not
  again at 02:30 CET. The second pass through the repeated hour fires nothing, so an
  entry such as ``*/5 * * * *`` pauses for that hour; use :class:`~aioqueue.beat.every`
  or ``tz="UTC"`` where real-time regularity matters.

So no tick is lost to a gap and none is doubled by a fold. The timezone is a
:mod:`zoneinfo` key (default ``"UTC"``) or a :class:`~zoneinfo.ZoneInfo`.

**How the next time is found.** Matching wall times are searched field by field, from
month down to minute, skipping whole months, days and hours that cannot match; the first
match is then turned into an instant by the rules above. That mapping never goes
backwards in time, so the first match whose instant is after ``now`` is the answer.
"""

from __future__ import annotations

from bisect import bisect_left
from calendar import monthrange
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..exceptions import ConfigurationError

__all__ = ("MACROS", "crontab")

#: The ``@`` shorthands and the five fields each stands for.
MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DAYS = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}

# A match, if there is one, shows within one Gregorian cycle: 400 years are a whole
# number of weeks (146097 days), so the calendar and the weekdays repeat.
_CYCLE_YEARS = 400
_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _DAYS),
)


class crontab:
    """A cron expression read in a timezone; see the module docstring for the rules.

    ``next_after(now)`` never returns ``None``.

    :param expression: five fields (``"*/5 * * * *"``) or a macro (``"@daily"``).
    :param tz: a :mod:`zoneinfo` key such as ``"Europe/Berlin"``, or a
        :class:`~zoneinfo.ZoneInfo`; default UTC.
    :raises ~aioqueue.exceptions.ConfigurationError: the expression does not parse (the
        message names the field and the value), can never fire, or the timezone is
        unknown.
    """

    __slots__ = (
        "_days",
        "_dom_star",
        "_dow_star",
        "_expression",
        "_hours",
        "_minutes",
        "_months",
        "_weekdays",
        "_zone",
    )

    def __init__(self, expression: str, tz: str | ZoneInfo = "UTC") -> None:
        if not isinstance(expression, str):
            raise ConfigurationError(
                f"crontab: the expression must be a string, got {type(expression).__name__}"
            )
        self._expression = " ".join(expression.split())
        self._zone = _zone(tz)
        texts = self._fields(expression)
        minutes, hours, days, months, weekdays = (
            _parse_field(text, field, expression)
            for text, field in zip(texts, _FIELDS, strict=True)
        )
        self._minutes = sorted(minutes)
        self._hours = sorted(hours)
        self._days = frozenset(days)
        self._months = sorted(months)
        self._weekdays = frozenset(7 if day == 0 else day for day in weekdays)
        self._dom_star = texts[2].startswith("*")
        self._dow_star = texts[4].startswith("*")
        if self._next_day(date(2000, 1, 1)) is None:
            raise ConfigurationError(
                f"crontab {expression!r}: day-of-month field {texts[2]!r} never falls in "
                f"month field {texts[3]!r}, so it matches no day of any year"
            )

    @staticmethod
    def _fields(expression: str) -> list[str]:
        texts = expression.split()
        if len(texts) == 1 and texts[0].startswith("@"):
            macro = texts[0].lower()
            if macro not in MACROS:
                raise ConfigurationError(
                    f"crontab {expression!r}: unknown macro {texts[0]!r} "
                    f"(known: {', '.join(MACROS)})"
                )
            texts = MACROS[macro].split()
        if len(texts) != len(_FIELDS):
            raise ConfigurationError(
                f"crontab {expression!r}: expected 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(texts)}"
            )
        return texts

    @property
    def expression(self) -> str:
        """The expression as given, with its whitespace normalised."""
        return self._expression

    @property
    def tz(self) -> ZoneInfo:
        """The timezone the fields are read in."""
        return self._zone

    def next_after(self, now: datetime) -> datetime:
        """The first instant strictly after ``now`` at which the expression fires.

        :param now: a timezone-aware datetime, in any timezone.
        :return: an aware UTC datetime.
        :raises ~aioqueue.exceptions.ConfigurationError: ``now`` is naive.
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigurationError(f"now must be timezone-aware, got naive {now.isoformat()}")
        wall = now.astimezone(self._zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
        # `wall` itself resolves to `now` or earlier, so every answer lies beyond it. The
        # loop only repeats for the wall times passed once already (`now` in a fold).
        candidate = wall + _MINUTE
        while True:
            match = self._next_wall_time(candidate)
            instant = _instant(match, self._zone)
            if instant > now:
                return instant
            candidate = match + _MINUTE

    def describe(self) -> str:
        """E.g. ``"crontab */5 * * * * (Europe/Berlin)"``."""
        return f"crontab {self._expression} ({_zone_name(self._zone)})"

    def _next_wall_time(self, start: datetime) -> datetime:
        """The first matching naive wall time at or after ``start`` (a whole minute)."""
        day = start.date()
        hour, minute = start.hour, start.minute
        while True:
            found = self._next_day(day)
            if found is None:  # pragma: no cover - refused at construction
                raise OverflowError(f"crontab {self._expression!r}: no day left before 10000")
            if found != day:
                day, hour, minute = found, 0, 0
            next_hour = _first_at_least(self._hours, hour)
            if next_hour is None:
                day, hour, minute = day + timedelta(days=1), 0, 0
                continue
            if next_hour != hour:
                hour, minute = next_hour, 0
            next_minute = _first_at_least(self._minutes, minute)
            if next_minute is None:
                hour, minute = hour + 1, 0
                continue
            return datetime(day.year, day.month, day.day, hour, next_minute)

    def _next_day(self, start: date) -> date | None:
        """The first matching day at or after ``start``, within one Gregorian cycle."""
        year, month, first = start.year, start.month, start.day
        last_year = min(year + _CYCLE_YEARS, 9999)
        while year <= last_year:
            next_month = _first_at_least(self._months, month)
            if next_month is None:
                year, month, first = year + 1, 1, 1
                continue
            if next_month != month:
                month, first = next_month, 1
            for day in range(first, monthrange(year, month)[1] + 1):
                if self._day_matches(year, month, day):
                    return date(year, month, day)
            year, month, first = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
        return None

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        in_month = day in self._days
        in_week = date(year, month, day).isoweekday() in self._weekdays
        if self._dom_star or self._dow_star:
            return in_month and in_week
        return in_month or in_week

    def __repr__(self) -> str:
        return f"crontab({self._expression!r}, tz={_zone_name(self._zone)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, crontab):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        return (
            tuple(self._minutes),
            tuple(self._hours),
            self._days,
            tuple(self._months),
            self._weekdays,
            self._dom_star or self._dow_star,  # what the star flags decide
            _zone_name(self._zone),
        )


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigurationError(
            f"crontab: tz must be a zoneinfo key or a ZoneInfo, got {type(tz).__name__}"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"crontab: unknown timezone {tz!r}") from None


def _zone_name(zone: ZoneInfo) -> str:
    return zone.key if zone.key is not None else str(zone)


def _parse_field(text: str, field: _Field, expression: str) -> set[int]:
    """The values ``text`` selects in ``field``."""

    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"crontab {expression!r}: {field.name} field {text!r}: {problem}")

    values: set[int] = set()
    for item in text.split(","):
        body, slash, step_text = item.partition("/")
        if body == "*":
            start, stop = field.low, field.high
        elif body:
            first, dash, second = body.partition("-")
            start = _value(first, field, fail)
            stop = _value(second, field, fail) if dash else start
            if start > stop:
                raise fail(f"range {body!r} goes backwards")
            if slash and not dash:
                raise fail(f"a step needs '*' or a range before it, got {item!r}")
        else:
            raise fail(f"empty item {item!r}" if item else "empty item")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise fail(f"step {step_text!r} is not a positive whole number")
            step = int(step_text)
        values.update(range(start, stop + 1, step))
    return values


def _value(text: str, field: _Field, fail: Callable[[str], ConfigurationError]) -> int:
    if text.isascii() and text.isdigit():
        number = int(text)
    elif text.lower() in field.names:
        number = field.names[text.lower()]
    elif field.names:
        raise fail(f"{text!r} is neither a number nor a name ({', '.join(field.names)})")
    else:
        raise fail(f"{text!r} is not a number")
    if not field.low <= number <= field.high:
        raise fail(f"{number} is out of range {field.low}-{field.high}")
    return number


def _first_at_least(values: Sequence[int], lowest: int) -> int | None:
    index = bisect_left(values, lowest)
    return values[index] if index < len(values) else None


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a naive local wall time fires at, by the DST rules above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # it exists; in a fold, fold=0 is the first occurrence
    # `wall` is in a gap. Its two readings lie on both sides of the transition; find the
    # first instant whose wall clock is past `wall`: that is the transition itself.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    while high - low > _SECOND:  # transitions fall on whole seconds
        middle = low + (high - low) // _SECOND // 2 * _SECOND
        if middle.astimezone(zone).replace(tzinfo=None) > wall:
            high = middle
        else:
            low = middle
    return high
