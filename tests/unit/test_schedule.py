"""Fixed intervals (`every`) and one-off times (`at`): pure, with `now` passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aioqueue.beat import Schedule, at, every
from aioqueue.exceptions import ConfigurationError

BERLIN = ZoneInfo("Europe/Berlin")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- every ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "anchor", "now", "expected"),
    [
        # the default anchor is the epoch in UTC: the grid is the same in every process
        (10, None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z"),
        (10, None, "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"),
        (10, None, "2026-01-01T00:00:09.999999Z", "2026-01-01T00:00:10Z"),
        (10, None, "2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"),
        (0.5, None, "2026-01-01T00:00:00.25Z", "2026-01-01T00:00:00.5Z"),
        (3600, None, "2026-01-01T10:59:59Z", "2026-01-01T11:00:00Z"),
        (86400, None, "2026-06-15T12:00:00Z", "2026-06-16T00:00:00Z"),
        (timedelta(minutes=5), None, "2026-01-01T00:07:00Z", "2026-01-01T00:10:00Z"),
        (7, None, "1970-01-01T00:00:00Z", "1970-01-01T00:00:07Z"),
        (7, None, "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"),
        # `now` in another zone is the same instant
        (3600, None, "2026-01-01T10:30:00+05:30", "2026-01-01T06:00:00Z"),
        # anchored
        (3600, "2026-01-01T00:30:00Z", "2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z"),
        (3600, "2026-01-01T00:30:00Z", "2026-01-01T10:30:00Z", "2026-01-01T11:30:00Z"),
        (3600, "2030-01-01T00:30:00Z", "2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z"),
        (90, "2026-01-01T00:00:00Z", "2025-12-31T23:58:00Z", "2025-12-31T23:58:30Z"),
        (
            timedelta(days=1),
            "2026-01-01T09:00:00+01:00",
            "2026-07-01T12:00:00Z",
            "2026-07-02T08:00:00Z",
        ),
    ],
)
def test_every_next_after(
    interval: float | timedelta, anchor: str | None, now: str, expected: str
) -> None:
    schedule = every(interval, anchor=None if anchor is None else _t(anchor))
    found = schedule.next_after(_t(now))
    assert found == _t(expected)
    assert found.tzinfo is UTC


def test_every_counts_real_time_across_dst() -> None:
    # An anchor in a DST zone does not make the grid follow the wall clock.
    schedule = every(3600, anchor=datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN))
    ticks, now = [], _t("2026-03-28T23:30:00Z")
    for _ in range(4):
        now = schedule.next_after(now)
        ticks.append(now)
    assert [t - ticks[0] for t in ticks] == [timedelta(hours=h) for h in range(4)]
    assert ticks[0] == _t("2026-03-29T00:00:00Z")


def test_every_grid_does_not_drift() -> None:
    schedule = every(0.1)
    now = _t("2026-01-01T00:00:00Z")
    for _ in range(1000):
        now = schedule.next_after(now)
    assert now == _t("2026-01-01T00:01:40Z")


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (0, "interval must be positive, got 0"),
        (-5, "interval must be positive, got -5"),
        (timedelta(0), "interval must be positive"),
        (timedelta(seconds=-1), "interval must be positive"),
        (1e-9, "interval must be positive"),
        (float("nan"), "interval must be finite, got nan"),
        (float("inf"), "interval must be finite, got inf"),
        (1e20, "too large"),
        (True, "interval must be seconds or a timedelta, got bool"),
        ("10", "interval must be seconds or a timedelta, got str"),
    ],
)
def test_every_refuses_bad_intervals(interval: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        every(interval)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_every_refuses_naive_times() -> None:
    with pytest.raises(ConfigurationError, match="anchor must be timezone-aware"):
        every(10, anchor=datetime(2026, 1, 1))
    with pytest.raises(ConfigurationError, match="now must be timezone-aware"):
        every(10).next_after(datetime(2026, 1, 1))


def test_every_describe_repr_and_equality() -> None:
    assert every(10).describe() == "every 10 s"
    assert every(0.5).describe() == "every 0.5 s"
    assert every(timedelta(minutes=5)).describe() == "every 300 s"
    anchored = every(3600, anchor=_t("2026-01-01T01:30:00+01:00"))
    assert anchored.describe() == "every 3600 s from 2026-01-01T00:30:00+00:00"
    assert anchored.anchor == _t("2026-01-01T00:30:00Z")
    assert anchored.interval == timedelta(hours=1)
    assert every(10).anchor == datetime(1970, 1, 1, tzinfo=UTC)
    assert repr(every(10)) == "every(datetime.timedelta(seconds=10))"
    assert every(10) == every(timedelta(seconds=10))
    assert hash(every(10)) == hash(every(timedelta(seconds=10)))
    assert every(10) != every(11)
    assert every(10) != every(10, anchor=_t("2026-01-01T00:00:05Z"))
    assert isinstance(every(10), Schedule)


# --- at -------------------------------------------------------------------------------


def test_at_fires_once() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    schedule = at(when)
    assert schedule.next_after(_t("2029-12-31T23:59:59.999999Z")) == when
    assert schedule.next_after(when) is None
    assert schedule.next_after(_t("2031-01-01T00:00:00Z")) is None


def test_at_compares_instants_not_wall_times() -> None:
    schedule = at(datetime(2030, 1, 1, 1, 0, tzinfo=BERLIN))  # 00:00 UTC
    assert schedule.when == _t("2030-01-01T00:00:00Z")
    assert schedule.when.tzinfo is UTC
    assert schedule.next_after(_t("2029-12-31T23:30:00Z")) == _t("2030-01-01T00:00:00Z")
    assert schedule.next_after(datetime(2030, 1, 1, 0, 30, tzinfo=BERLIN)) == schedule.when
    assert schedule.next_after(datetime(2030, 1, 1, 1, 0, tzinfo=BERLIN)) is None


def test_at_describe_repr_and_equality() -> None:
    schedule = at(datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))))
    assert schedule.describe() == "at 2029-12-31T22:00:00+00:00"
    assert at(datetime(2030, 1, 1, tzinfo=UTC)).describe() == "at 2030-01-01T00:00:00+00:00"
    assert repr(at(datetime(2030, 1, 1, tzinfo=UTC))).startswith("at(datetime.datetime(2030")
    assert at(_t("2030-01-01T01:00:00+01:00")) == at(_t("2030-01-01T00:00:00Z"))
    assert hash(at(_t("2030-01-01T01:00:00+01:00"))) == hash(at(_t("2030-01-01T00:00:00Z")))
    assert isinstance(schedule, Schedule)


def test_at_refuses_naive_times() -> None:
    with pytest.raises(ConfigurationError, match="at\\(\\): the time must be timezone-aware"):
        at(datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match="now must be timezone-aware"):
        at(datetime(2030, 1, 1, tzinfo=UTC)).next_after(datetime(2029, 1, 1))


def test_the_package_exports_the_schedules() -> None:
    import aioqueue.beat

    assert aioqueue.beat.__all__ == ("Beat", "Entry", "Schedule", "at", "crontab", "every")
    for name in aioqueue.beat.__all__:
        assert getattr(aioqueue.beat, name).__doc__
