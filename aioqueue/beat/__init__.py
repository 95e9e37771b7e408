"""Beat: periodic tasks: the schedule maths, entries, and the scheduler runtime.

A schedule answers one question, pure and with the clock passed in: when does the entry
fire next after ``now``? :class:`every` fires on a fixed grid of instants,
:class:`crontab` at the wall-clock minutes of a cron expression in a timezone (DST rules
in :mod:`aioqueue.beat.crontab`), :class:`at` once. Each satisfies :class:`Schedule`.

The schedules are lowercase classes, named to read as calls (``every(10)``), as
Celery's ``crontab`` is.
"""

from __future__ import annotations

from .crontab import crontab as crontab
from .entry import Entry as Entry
from .schedule import Schedule as Schedule
from .schedule import at as at
from .schedule import every as every
from .scheduler import Beat as Beat

__all__ = ("Beat", "Entry", "Schedule", "at", "crontab", "every")
