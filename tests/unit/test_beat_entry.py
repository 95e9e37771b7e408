"""Beat entries (pure): which slots are due under each catch-up policy, tick ids, storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aioqueue import Signature
from aioqueue.beat import Entry, crontab, every
from aioqueue.beat.entry import decode_entry, due, encode_entry, tick_id
from aioqueue.exceptions import ConfigurationError

T0 = datetime(2030, 1, 1, tzinfo=UTC)
CANVAS = Signature("tasks.report", (1,)).to_dict()


def _entry(catch_up: str = "once", **options: object) -> Entry:
    return Entry("report", every(10), CANVAS, catch_up=catch_up, **options)  # type: ignore[arg-type]


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("catch_up", "last", "now", "slots", "record"),
    [
        # A new entry starts counting from the first look at it.
        ("once", None, s(0.5), [], s(0.5)),
        ("all", None, s(5), [], s(5)),
        # On time.
        ("once", s(0), s(10.2), [s(10)], s(10)),
        ("skip", s(0), s(10.2), [s(10)], s(10)),
        ("all", s(0), s(10.2), [s(10)], s(10)),
        # Nothing due yet.
        ("once", s(10), s(15), [], s(10)),
        # Missed while nobody led: one catch-up, none, or all of them.
        ("once", s(0), s(35), [s(30)], s(30)),
        ("skip", s(0), s(35), [], s(30)),
        ("all", s(0), s(35), [s(10), s(20), s(30)], s(30)),
    ],
)
def test_due(
    catch_up: str, last: datetime | None, now: datetime, slots: list[datetime], record: datetime
) -> None:
    assert due(_entry(catch_up), last, now) == (slots, record)


def test_a_tick_has_a_deterministic_id_and_expires_at_the_next_slot() -> None:
    tick = _entry().tick(s(10))
    assert tick["options"]["task_id"] == tick_id("report", s(10)) == tick_id("report", s(10))
    assert tick_id("report", s(10)) != tick_id("report", s(20)) != tick_id("other", s(10))
    assert datetime.fromisoformat(tick["options"]["expires"]) == s(20)
    assert "expires" not in _entry(expires=0).tick(s(10))["options"]
    assert _entry(queue="q", priority=3).tick(s(10))["options"]["queue"] == "q"


def test_runtime_entries_round_trip_through_their_stored_form() -> None:
    for entry in (
        _entry("all", queue="q", expires=5),
        Entry("c", crontab("*/5 * * * *", tz="Europe/Berlin"), CANVAS),
    ):
        assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not json", "not a beat entry"),
        (b'{"name": "x"}', "not a beat entry"),
        (
            b'{"name": "x", "schedule": {"crontab": "61 * * * *"}, "canvas": {"task": "t"}}',
            "minute",
        ),
        (b'{"name": "x", "schedule": {"weekly": 1}, "canvas": {"task": "t"}}', "not a schedule"),
    ],
)
def test_a_corrupt_stored_entry_is_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        decode_entry(data)


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="catch_up"):
        _entry("sometimes")
    with pytest.raises(ConfigurationError, match="needs a name"):
        Entry("", every(1), CANVAS)
