"""Beat entries and the decisions about them (pure): which ticks are due, their ids.

An :class:`Entry` is a name, a schedule, the canvas it sends (a signature, or a chain,
group or chord, in Celery's wire form) and its send options. :func:`due` decides from
the entry's last recorded slot and the current time which slots to send now, following
the entry's catch-up policy:

- ``"once"`` (the default): one tick for the latest slot that passed, however many
  were missed while no beat ran; no backlog replay;
- ``"skip"``: only a slot that passed less than ``grace`` ago; missed ones are dropped;
- ``"all"``: every missed slot, oldest first (at most ``MAX_CATCH_UP``).

A tick's task id is derived from the entry's name and the slot (:func:`tick_id`), so
every beat instance names a tick alike. A tick expires (is not run) once its entry's
``expires`` has passed since the slot: by default the time to the next slot, so a tick
that waited too long in a queue does not run late.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ..exceptions import ConfigurationError
from .crontab import crontab
from .schedule import EPOCH, Schedule, at, every

__all__ = (
    "BEAT_TASK_HEADER",
    "MAX_CATCH_UP",
    "CatchUp",
    "Entry",
    "decode_entry",
    "decode_schedule",
    "due",
    "encode_entry",
    "encode_schedule",
    "next_wake",
    "tick_id",
)

CatchUp = Literal["skip", "once", "all"]
#: At most this many missed slots of one entry are sent at once with ``catch_up="all"``.
MAX_CATCH_UP = 1_000
#: The header Celery's beat sets (true) on every task message it sends.
BEAT_TASK_HEADER = "celery_beat_task"
# A slot that passed less than this ago is on time (the scheduler wakes a little late).
GRACE = timedelta(seconds=2)
_NAMESPACE = uuid.UUID("6f1c6a8e-3f0f-4d0e-9a8e-b3a7c1e0b2d4")


@dataclass(frozen=True, slots=True)
class Entry:
    """A periodic task.

    :param name: unique among the beat's entries.
    :param schedule: when it fires (:class:`every`, :class:`crontab`, :class:`at`).
    :param canvas: what it sends: a signature (or canvas) as Celery's dict.
    :param queue: send to this queue instead of the canvas's own.
    :param priority: AMQP priority of the tick.
    :param expires: seconds after the slot when the tick is no longer run (default:
        the time to the next slot; ``0`` for never).
    :param catch_up: what to do with slots missed while no beat ran (module doc).
    """

    name: str
    schedule: Schedule
    canvas: dict[str, Any]
    queue: str | None = None
    priority: int | None = None
    expires: float | None = None
    catch_up: CatchUp = "once"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a beat entry needs a name")
        if self.catch_up not in ("skip", "once", "all"):
            raise ConfigurationError(
                f"beat entry {self.name!r}: catch_up must be 'skip', 'once' or 'all', "
                f"not {self.catch_up!r}"
            )
        if self.expires is not None and self.expires < 0:
            raise ConfigurationError(f"beat entry {self.name!r}: expires must not be negative")
        if not isinstance(self.canvas.get("task"), str):
            raise ConfigurationError(f"beat entry {self.name!r}: its canvas names no task")

    @property
    def task(self) -> str:
        """The task (or canvas type) the entry sends."""
        return str(self.canvas["task"])

    def describe(self) -> str:
        """One line for banners and ``aioqueue beat list``."""
        return f"{self.name}: {self.task} {self.schedule.describe()}"

    def tick(self, slot: datetime) -> dict[str, Any]:
        """The canvas to send for ``slot``: its id, expiry and routing set."""
        options = dict(self.canvas.get("options") or {})
        options["task_id"] = tick_id(self.name, slot)
        if self.queue is not None:
            options["queue"] = self.queue
        if self.priority is not None:
            options["priority"] = self.priority
        lifetime = self._lifetime(slot)
        if lifetime is not None:
            options["expires"] = (slot + lifetime).isoformat()
        # As Celery's beat marks what it sends (Celery 5.7 headers).
        options["headers"] = {**(options.get("headers") or {}), BEAT_TASK_HEADER: True}
        return {**self.canvas, "options": options}

    def _lifetime(self, slot: datetime) -> timedelta | None:
        if self.expires is not None:
            return timedelta(seconds=self.expires) if self.expires else None
        following = self.schedule.next_after(slot)
        return following - slot if following is not None else None


def tick_id(name: str, slot: datetime) -> str:
    """The task id of entry ``name``'s tick for ``slot``: the same in every instance."""
    return str(uuid.uuid5(_NAMESPACE, f"{name}@{slot.astimezone(UTC).isoformat()}"))


def due(
    entry: Entry, last: datetime | None, now: datetime, *, grace: timedelta = GRACE
) -> tuple[list[datetime], datetime | None]:
    """The slots of ``entry`` to send at ``now``, and the slot to record as its last.

    ``last`` is the latest slot already dealt with (sent or dropped), ``None`` for an
    entry that never ran: its first slot is the first one after the first look at it.
    """
    if last is None:
        return [], now
    passed: list[datetime] = []
    slot = entry.schedule.next_after(last)
    while slot is not None and slot <= now:
        passed.append(slot)
        if len(passed) > MAX_CATCH_UP:
            passed.pop(0)
        slot = entry.schedule.next_after(slot)
    if not passed:
        return [], last
    latest = passed[-1]
    if entry.catch_up == "all":
        return passed, latest
    if entry.catch_up == "skip":
        return [s for s in passed[-1:] if now - s <= grace], latest
    return [latest], latest


def next_wake(entry: Entry, last: datetime | None, now: datetime) -> datetime | None:
    """When ``entry`` has its next slot after ``now`` (``None``: never again)."""
    return entry.schedule.next_after(max(now, last) if last is not None else now)


# -- the stored form of runtime entries ---------------------------------------------


def encode_schedule(schedule: Schedule) -> dict[str, Any]:
    """The JSON form of a schedule."""
    if isinstance(schedule, every):
        data: dict[str, Any] = {"every": schedule.interval.total_seconds()}
        if schedule.anchor != EPOCH:
            data["anchor"] = schedule.anchor.isoformat()
        return data
    if isinstance(schedule, crontab):
        return {"crontab": schedule.expression, "tz": schedule.tz.key}
    if isinstance(schedule, at):
        return {"at": schedule.when.isoformat()}
    raise ConfigurationError(f"cannot store a schedule of type {type(schedule).__name__}")


def decode_schedule(data: dict[str, Any]) -> Schedule:
    """A schedule from its JSON form.

    :raises ConfigurationError: it is not one (naming what is wrong).
    """
    if "every" in data:
        anchor = data.get("anchor")
        return every(float(data["every"]), datetime.fromisoformat(anchor) if anchor else None)
    if "crontab" in data:
        return crontab(str(data["crontab"]), tz=str(data.get("tz") or "UTC"))
    if "at" in data:
        return at(datetime.fromisoformat(str(data["at"])))
    raise ConfigurationError(f"not a schedule: {sorted(data)}")


def encode_entry(entry: Entry) -> bytes:
    """The stored form of a runtime entry."""
    return json.dumps(
        {
            "name": entry.name,
            "schedule": encode_schedule(entry.schedule),
            "canvas": entry.canvas,
            "queue": entry.queue,
            "priority": entry.priority,
            "expires": entry.expires,
            "catch_up": entry.catch_up,
        }
    ).encode()


def decode_entry(data: bytes) -> Entry:
    """A runtime entry from its stored form.

    :raises ConfigurationError: the bytes are not an entry (naming the problem).
    """
    try:
        raw = json.loads(data)
        return Entry(
            name=str(raw["name"]),
            schedule=decode_schedule(raw["schedule"]),
            canvas=dict(raw["canvas"]),
            queue=raw.get("queue"),
            priority=raw.get("priority"),
            expires=raw.get("expires"),
            catch_up=raw.get("catch_up", "once"),
        )
    except ConfigurationError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"not a beat entry: {type(exc).__name__}: {exc}") from None
