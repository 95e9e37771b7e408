"""The app the beat fault tests run in ``aioqueue worker --beat`` and ``aioqueue beat``
subprocesses, and in their ``aioqueue beat add|remove|list`` commands and clients.

:func:`create_app` builds it; the module-level ``app`` (what
``-A tests.faults.beat_app:app`` names) is configured from the environment:

- ``AIOQUEUE_TEST_BROKER``: the broker URL;
- ``AIOQUEUE_TEST_APP``: the app's name (beats of one name share their leader and their
  stored entries and last runs: one name per test);
- ``AIOQUEUE_TEST_QUEUE``: its default queue, where the ticks go;
- ``AIOQUEUE_TEST_LOG``: a file where every run of ``beatfaults.tick`` appends one line,
  ``tick <pid> <label> <unix time> <task id>``;
- ``AIOQUEUE_TEST_EVERY``: if set, an entry in code, ``tick``, sends
  ``beatfaults.tick("code")`` every that many seconds.
"""

from __future__ import annotations

import os
import time

from aioqueue import App, current_request


def log(what: str, detail: object = "") -> None:
    """Append one line to the log file (one ``write`` on an ``O_APPEND`` file: lines
    from several processes do not interleave)."""
    path = os.environ.get("AIOQUEUE_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {os.getpid()} {detail}\n".encode())
    finally:
        os.close(fd)


def create_app(broker: str, name: str, queue: str, every: float | None = None) -> App:
    app = App(name, broker=broker, default_queue=queue)

    @app.task(name="beatfaults.tick", ignore_result=True)
    async def tick(label: str) -> None:
        log("tick", f"{label} {time.time():.6f} {current_request().id}")

    if every is not None:
        app.beat.every(every, tick.s("code"), name="tick")
    return app


_every = os.environ.get("AIOQUEUE_TEST_EVERY")
app = create_app(
    os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    os.environ.get("AIOQUEUE_TEST_APP", "beatfaults"),
    os.environ.get("AIOQUEUE_TEST_QUEUE", "celery"),
    float(_every) if _every else None,
)
