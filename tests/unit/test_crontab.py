"""Crontab schedules: parsing, next_after tables (DST, month ends, leap days, weekdays),
and a property test against a brute-force minute scan."""

from __future__ import annotations

import time as clock
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioqueue.beat import Schedule, crontab
from aioqueue.exceptions import ConfigurationError

MINUTE = timedelta(minutes=1)


def _t(text: str) -> datetime:
    """An aware datetime from ISO text; a bare ``Z`` means UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * sun", "0 0 * * 0"),
        ("0 0 * * SUN", "0 0 * * 7"),
        ("0 0 * * Mon-Fri", "0 0 * * 1-5"),
        ("0 0 * * 5-7", "0 0 * * fri,sat,sun"),
        ("0 0 * * *", "0 0 * * 0-7"),
        ("0 0 * JAN *", "0 0 * 1 *"),
        ("0 0 * jan-mar,Dec *", "0 0 * 1,2,3,12 *"),
        ("*/15 * * * *", "0,15,30,45 * * * *"),
        ("1-10/3 * * * *", "1,4,7,10 * * * *"),
        ("0 */7 * * *", "0 0,7,14,21 * * *"),
        ("0 0 * * */3", "0 0 * * 0,3,6"),
        ("0 0 * * */7", "0 0 * * 0"),
        ("0 9-17/4 * * *", "0 9,13,17 * * *"),
        ("5 4 3 2 1", "05 04 03 02 01"),
        ("  0   0 *\t* *  ", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_spellings_of_the_same_schedule(left: str, right: str) -> None:
    assert crontab(left) == crontab(right)
    assert hash(crontab(left)) == hash(crontab(right))


def test_equality_includes_the_timezone() -> None:
    assert crontab("0 0 * * *", tz="Europe/Berlin") == crontab("0 0 * * *", "Europe/Berlin")
    assert crontab("0 0 * * *", tz="Europe/Berlin") != crontab("0 0 * * *")
    assert crontab("0 0 * * *") != crontab("0 1 * * *")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected 5 fields"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * *", "got 6"),
        ("@daily 0", "got 2"),
        ("@every", "unknown macro '@every'"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 0 *", "month field '0'"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("*/0 * * * *", "minute field '*/0': step '0' is not a positive whole number"),
        ("*/x * * * *", "step 'x'"),
        ("*/ * * * *", "step ''"),
        ("*/-2 * * * *", "step '-2'"),
        ("5/10 * * * *", "a step needs '*' or a range before it, got '5/10'"),
        ("10-5 * * * *", "minute field '10-5': range '10-5' goes backwards"),
        ("* * * * fri-sun", "day-of-week field 'fri-sun': range 'fri-sun' goes backwards"),
        ("* * * foo *", "month field 'foo': 'foo' is neither a number nor a name (jan, feb"),
        ("* * * mon *", "month field 'mon'"),
        ("* * * * jan", "day-of-week field 'jan'"),
        ("* jan * * *", "hour field 'jan': 'jan' is not a number"),
        ("a * * * *", "minute field 'a'"),
        ("1,,2 * * * *", "minute field '1,,2': empty item"),
        ("1, * * * *", "empty item"),
        ("-5 * * * *", "minute field '-5'"),
        ("1-2-3 * * * *", "'2-3' is not a number"),
        ("² * * * *", "minute field '²'"),
        ("** * * * *", "minute field '**'"),
        ("0 0 30 2 *", "day-of-month field '30' never falls in month field '2'"),
        ("0 0 31 apr,jun,sep,nov *", "matches no day of any year"),
        ("0 0 30,31 feb */7", "matches no day of any year"),
    ],
)
def test_bad_expressions_name_the_field_and_the_value(expression: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        crontab(expression)
    assert message in str(caught.value)
    assert repr(expression) in str(caught.value)


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_an_unknown_timezone_is_refused(tz: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown timezone"):
        crontab("* * * * *", tz=tz)


def test_a_timezone_that_is_not_a_name_or_a_zoneinfo_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="tz must be a zoneinfo key or a ZoneInfo"):
        crontab("* * * * *", tz=1)  # type: ignore[arg-type]


def test_an_expression_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be a string, got int"):
        crontab(5)  # type: ignore[arg-type]


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        crontab("* * * * *").next_after(datetime(2026, 1, 1))


def test_description_and_accessors() -> None:
    entry = crontab(" */5  * * * *", tz=ZoneInfo("Europe/Berlin"))
    assert isinstance(entry, Schedule)
    assert entry.describe() == "crontab */5 * * * * (Europe/Berlin)"
    assert entry.expression == "*/5 * * * *"
    assert entry.tz == ZoneInfo("Europe/Berlin")
    assert repr(entry) == "crontab('*/5 * * * *', tz='Europe/Berlin')"
    assert crontab("@daily").describe() == "crontab @daily (UTC)"


# --- next_after -----------------------------------------------------------------------

# (expression, tz, now, expected next instant in UTC)
TABLE = [
    # basics, and "strictly after"
    ("* * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
    ("* * * * *", "UTC", "2026-01-01T00:00:59.999999Z", "2026-01-01T00:01:00Z"),
    ("*/5 * * * *", "UTC", "2026-01-01T00:03:00Z", "2026-01-01T00:05:00Z"),
    ("*/5 * * * *", "UTC", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"),
    ("*/5 * * * *", "UTC", "2026-12-31T23:58:00Z", "2027-01-01T00:00:00Z"),
    ("0 * * * *", "UTC", "2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z"),
    ("15,45 9-17/4 * * *", "UTC", "2026-01-01T13:20:00Z", "2026-01-01T13:45:00Z"),
    ("15,45 9-17/4 * * *", "UTC", "2026-01-01T17:46:00Z", "2026-01-02T09:15:00Z"),
    ("0 0 1 * *", "UTC", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z"),
    ("0 0 * jan,jul *", "UTC", "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z"),
    ("30 4 1 JAN-mar/2 *", "UTC", "2026-01-01T05:00:00Z", "2026-03-01T04:30:00Z"),
    # month ends: the 31st is skipped in 30-day months (and in February)
    ("0 12 31 * *", "UTC", "2026-04-01T00:00:00Z", "2026-05-31T12:00:00Z"),
    ("0 12 31 * *", "UTC", "2026-05-31T12:00:00Z", "2026-07-31T12:00:00Z"),
    ("0 12 31 * *", "UTC", "2026-01-31T12:00:00Z", "2026-03-31T12:00:00Z"),
    ("0 0 30 * *", "UTC", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z"),
    ("0 0 31 apr,may,jun *", "UTC", "2026-01-01T00:00:00Z", "2026-05-31T00:00:00Z"),
    # leap days: Feb 29 fires in leap years only (2100 is not one)
    ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 29 feb *", "UTC", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"),
    ("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z"),
    ("0 0 28-29 feb *", "UTC", "2027-02-28T00:00:00Z", "2028-02-28T00:00:00Z"),
    ("0 0 28-29 feb *", "UTC", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 * 2 *", "UTC", "2027-02-28T00:00:00Z", "2028-02-01T00:00:00Z"),
    ("0 0 * 2 *", "UTC", "2028-02-28T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 0 1 3 *", "UTC", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"),
    # Sundays as 0 and 7, names (2026-01-01 is a Thursday)
    ("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("0 0 * * Sun", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
    ("@weekly", "UTC", "2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"),
    ("0 9 * * mon-fri", "UTC", "2026-01-02T10:00:00Z", "2026-01-05T09:00:00Z"),
    ("0 9 * * 5-7", "UTC", "2026-01-05T00:00:00Z", "2026-01-09T09:00:00Z"),
    ("0 9 * * 6-7", "UTC", "2026-01-04T09:00:00Z", "2026-01-10T09:00:00Z"),
    ("0 9 * * sat,sun", "UTC", "2026-01-03T09:00:00Z", "2026-01-04T09:00:00Z"),
    # day-of-month and day-of-week both restricted: either matches (Vixie cron) ...
    ("0 0 1 * mon", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"),
    ("0 0 1 * mon", "UTC", "2026-01-26T00:00:00Z", "2026-02-01T00:00:00Z"),
    ("0 0 13 * fri", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
    ("0 0 13 * fri", "UTC", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z"),
    ("0 0 31 2 mon", "UTC", "2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z"),
    # ... but a field starting with "*" is unrestricted, so both must match
    ("0 0 */2 * mon", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z"),
    ("0 0 */2 * mon", "UTC", "2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z"),
    ("0 0 1-31/2 * mon", "UTC", "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"),
    ("0 0 13 * */7", "UTC", "2026-01-01T00:00:00Z", "2026-09-13T00:00:00Z"),
    # macros
    ("@hourly", "UTC", "2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z"),
    ("@daily", "UTC", "2026-01-01T10:30:00Z", "2026-01-02T00:00:00Z"),
    ("@monthly", "UTC", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
    ("@yearly", "UTC", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("@annually", "UTC", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z"),
    # a timezone outside DST changes; `now` in any zone
    ("0 9 * * *", "Europe/Berlin", "2026-01-01T00:00:00Z", "2026-01-01T08:00:00Z"),
    ("0 9 * * *", "Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-01T07:00:00Z"),
    ("0 9 * * *", "Europe/Berlin", "2026-01-01T09:30:00+01:00", "2026-01-02T08:00:00Z"),
    ("0 0 1 1 *", "America/New_York", "2026-06-01T00:00:00Z", "2027-01-01T05:00:00Z"),
    ("0 0 * * *", "America/New_York", "2026-01-01T04:59:00Z", "2026-01-01T05:00:00Z"),
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC)
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),
    ("30 2 * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"),
    ("0 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),
    ("59 2 * * *", "Europe/Berlin", "2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z"),
    ("0 3 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z"),
    ("59 1 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", "2026-03-29T00:59:00Z"),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:50:00Z", "2026-03-29T01:00:00Z"),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"),
    ("30 2 29 3 *", "Europe/Berlin", "2026-01-01T00:00:00Z", "2026-03-29T01:00:00Z"),
    ("30 2 29 3 *", "Europe/Berlin", "2026-03-29T01:00:00Z", "2027-03-29T00:30:00Z"),
    # Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET (01:00 UTC)
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", "2026-10-26T01:30:00Z"),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T02:30:00+01:00", "2026-10-26T01:30:00Z"),
    ("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", "2026-10-25T00:00:00Z"),
    ("0 * * * *", "Europe/Berlin", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),
    ("*/30 * * * *", "Europe/Berlin", "2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z"),
    ("0 3 * * *", "Europe/Berlin", "2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z"),
    ("59 1 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-24T23:59:00Z"),
    # America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC)
    ("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z"),
    ("30 2 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"),
    ("45 1 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T06:45:00Z"),
    ("0 3 * * *", "America/New_York", "2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z"),
    ("*/20 2-3 * * *", "America/New_York", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z"),
    ("*/20 2-3 * * *", "America/New_York", "2026-03-08T07:00:00Z", "2026-03-08T07:20:00Z"),
    # America/New_York, 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00 UTC)
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z"),
    ("30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"),
    ("0 2 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-01T07:00:00Z"),
    ("*/20 * * * *", "America/New_York", "2026-11-01T05:45:00Z", "2026-11-01T07:00:00Z"),
    ("*/20 * * * *", "America/New_York", "2026-11-01T06:15:00Z", "2026-11-01T07:00:00Z"),
    ("*/20 * * * *", "America/New_York", "2026-11-01T01:15:00-05:00", "2026-11-01T07:00:00Z"),
    ("0 0 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T04:00:00Z"),
    ("0 0 * * *", "America/New_York", "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"),
]


@pytest.mark.parametrize(("expression", "tz", "now", "expected"), TABLE)
def test_next_after(expression: str, tz: str, now: str, expected: str) -> None:
    found = crontab(expression, tz=tz).next_after(_t(now))
    assert found == _t(expected)
    assert found.tzinfo is UTC


def test_a_gap_collapses_into_one_tick_then_the_fold_fires_each_time_once() -> None:
    entry = crontab("*/30 * * * *", tz="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")

    def local_ticks(start: str, count: int) -> list[str]:
        ticks, now = [], _t(start)
        for _ in range(count):
            now = entry.next_after(now)
            ticks.append(now.astimezone(berlin).strftime("%H:%M%z"))
        return ticks

    assert local_ticks("2026-03-29T00:00:00Z", 4) == [
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:00+0200",
    ]
    assert local_ticks("2026-10-24T23:40:00Z", 5) == [
        "02:00+0200",
        "02:30+0200",
        "03:00+0100",
        "03:30+0100",
        "04:00+0100",
    ]


def test_rare_schedules_are_found_without_a_minute_scan() -> None:
    started = clock.perf_counter()
    assert crontab("0 0 29 2 *").next_after(_t("2096-03-01T00:00:00Z")) == _t(
        "2104-02-29T00:00:00Z"
    )
    assert crontab("59 23 31 12 *", tz="Europe/Berlin").next_after(
        _t("2026-01-01T00:00:00Z")
    ) == _t("2026-12-31T22:59:00Z")
    assert clock.perf_counter() - started < 0.1


# --- property: the same answers as a brute-force minute scan -------------------------

ZONES = ("UTC", "Europe/Berlin", "America/New_York")


@dataclass(frozen=True)
class Field:
    """A generated field: its text and, computed independently of the parser, its values."""

    text: str
    values: frozenset[int]


def _items(low: int, high: int) -> st.SearchStrategy[tuple[str, set[int]]]:
    def single(value: int) -> tuple[str, set[int]]:
        return str(value), {value}

    def span(ends: tuple[int, int]) -> tuple[str, set[int]]:
        a, b = sorted(ends)
        return f"{a}-{b}", set(range(a, b + 1))

    def stepped(args: tuple[tuple[int, int], int]) -> tuple[str, set[int]]:
        ends, step = args
        a, b = sorted(ends)
        return f"{a}-{b}/{step}", set(range(a, b + 1, step))

    def star_step(step: int) -> tuple[str, set[int]]:
        return f"*/{step}", set(range(low, high + 1, step))

    value = st.integers(low, high)
    return st.one_of(
        value.map(single),
        st.tuples(value, value).map(span),
        st.tuples(st.tuples(value, value), st.integers(1, high - low + 1)).map(stepped),
        st.integers(1, high - low + 1).map(star_step),
    )


def _field(low: int, high: int, star_weight: int = 1) -> st.SearchStrategy[Field]:
    def join(items: list[tuple[str, set[int]]]) -> Field:
        return Field(",".join(t for t, _ in items), frozenset().union(*(v for _, v in items)))

    star = st.just(Field("*", frozenset(range(low, high + 1))))
    listed = st.lists(_items(low, high), min_size=1, max_size=3).map(join)
    return st.one_of(*[star] * star_weight, listed)


_NAMED_DAYS = st.sampled_from(
    [
        Field("mon-fri", frozenset(range(1, 6))),
        Field("sat,SUN", frozenset({6, 0})),
        Field("Sun", frozenset({0})),
        Field("7", frozenset({7})),
    ]
)
_NAMED_MONTHS = st.sampled_from(
    [Field("mar,oct,nov", frozenset({3, 10, 11})), Field("Feb", frozenset({2}))]
)
# The hours around the DST transitions come up often.
_DST_HOURS = st.sampled_from(
    [Field(text, frozenset(values)) for text, values in [("2", {2}), ("1-3", {1, 2, 3})]]
)


@dataclass(frozen=True)
class Spec:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def expression(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    def day_matches(self, day: date) -> bool:
        if day.month not in self.month.values:
            return False
        in_month = day.day in self.dom.values
        weekdays = {d % 7 for d in self.dow.values}
        in_week = day.isoweekday() % 7 in weekdays
        if self.dom.text.startswith("*") or self.dow.text.startswith("*"):
            return in_month and in_week
        return in_month or in_week

    def matches(self, wall: datetime) -> bool:
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and self.day_matches(wall.date())
        )


SPECS = st.builds(
    Spec,
    minute=_field(0, 59),
    hour=st.one_of(_field(0, 23), _DST_HOURS),
    dom=_field(1, 31, star_weight=3),
    month=st.one_of(_field(1, 12, star_weight=3), _NAMED_MONTHS),
    dow=st.one_of(_field(0, 7, star_weight=3), _NAMED_DAYS),
)


def _transitions(zone: ZoneInfo) -> list[datetime]:
    hour, found = timedelta(hours=1), []
    instant = datetime(2025, 1, 1, tzinfo=UTC)
    while instant.year < 2030:
        if (instant + hour).astimezone(zone).utcoffset() != instant.astimezone(zone).utcoffset():
            found.append(instant + hour)
        instant += hour
    return found


TRANSITIONS = _transitions(ZoneInfo("Europe/Berlin")) + _transitions(ZoneInfo("America/New_York"))

NOWS = st.one_of(
    st.datetimes(datetime(2025, 1, 1), datetime(2029, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda at, minutes, seconds: at + timedelta(minutes=minutes, seconds=seconds),
        st.sampled_from(TRANSITIONS),
        st.integers(-26 * 60, 26 * 60),
        st.sampled_from([0, 0, 30, 59.999]),
    ),
)

HORIZON = timedelta(days=400)


def _walls_between(earlier: datetime, later: datetime) -> Iterable[datetime]:
    """The naive wall times strictly between two (a forward jump of the clock)."""
    wall = earlier + MINUTE
    while wall < later:
        yield wall
        wall += MINUTE


def brute_force(spec: Spec, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The first firing instant after ``now``, scanning real minutes one by one.

    An instant fires when its wall time matches and is the first occurrence of that wall
    time (fold 0), or when the clock jumped over a matching wall time just before it (a
    gap fires at the first valid instant after it). Days that cannot match are skipped
    up to an hour before their end, which is safe for zones whose transitions are not
    within an hour of midnight. Returns ``None`` if nothing fires within ``HORIZON``.
    """
    instant = now.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE
    previous = (instant - MINUTE).astimezone(zone).replace(tzinfo=None, fold=0)
    while instant <= now + HORIZON:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        skipped = list(_walls_between(previous, wall))
        if (local.fold == 0 and spec.matches(wall)) or any(map(spec.matches, skipped)):
            return instant
        if not skipped and not spec.day_matches(wall.date()):
            midnight = datetime.combine(wall.date() + timedelta(days=1), time(), tzinfo=zone)
            jump = midnight.astimezone(UTC) - timedelta(hours=1)
            if jump > instant:
                instant = jump
                previous = (instant - MINUTE).astimezone(zone).replace(tzinfo=None, fold=0)
                continue
        previous, instant = wall, instant + MINUTE
    return None


@settings(max_examples=200, deadline=None, database=None)
@given(spec=SPECS, tz=st.sampled_from(ZONES), now=NOWS, local_now=st.booleans())
def test_next_after_agrees_with_a_minute_scan(
    spec: Spec, tz: str, now: datetime, local_now: bool
) -> None:
    zone = ZoneInfo(tz)
    try:
        entry = crontab(spec.expression, tz=tz)
    except ConfigurationError as error:
        # Only an expression that never fires is refused.
        assert "matches no day" in str(error)
        assert not any(
            spec.day_matches(date(2000, 1, 1) + timedelta(days=d)) for d in range(366 * 8)
        )
        return
    found = entry.next_after(now.astimezone(zone) if local_now else now)
    expected = brute_force(spec, zone, now)
    if expected is None:
        assert found > now + HORIZON
    else:
        assert found == expected


def test_the_brute_force_follows_the_documented_dst_rules() -> None:
    # The oracle itself, on the cases the module docstring spells out.
    spec = Spec(
        Field("30", frozenset({30})),
        Field("2", frozenset({2})),
        Field("*", frozenset(range(1, 32))),
        Field("*", frozenset(range(1, 13))),
        Field("*", frozenset(range(8))),
    )
    berlin = ZoneInfo("Europe/Berlin")

    def brute(now: str) -> datetime | None:
        return brute_force(spec, berlin, _t(now))

    assert brute("2026-03-28T12:00:00Z") == _t("2026-03-29T01:00:00Z")
    assert brute("2026-10-24T12:00:00Z") == _t("2026-10-25T00:30:00Z")
    assert brute("2026-10-25T00:30:00Z") == _t("2026-10-26T01:30:00Z")
