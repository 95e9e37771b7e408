"""``aioqueue events -b URL``: the broker given on the command line, no app needed (as
``celery -b URL events``), run as users run it. Watching real events through it is in
``tests/interop/test_events.py``."""

from __future__ import annotations

import os

from tests.processes import error_line, run_cli


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIOQUEUE_BROKER_URL", None)  # -b alone says where
    return env


def test_events_needs_an_app_or_a_broker() -> None:
    out = run_cli("events", "--timeout", "1", env=_env())
    assert out.returncode == 2
    assert "-A/--app or -b/--broker" in out.stderr


def test_events_refuses_a_broker_it_cannot_watch() -> None:
    out = run_cli("events", "-b", "memory://", "--timeout", "1", env=_env())
    assert out.returncode == 1
    assert "memory://" in error_line(out)
    out = run_cli("events", "-b", "redis://localhost", "--timeout", "1", env=_env())
    assert out.returncode == 2
    assert "unsupported scheme 'redis'" in error_line(out)
