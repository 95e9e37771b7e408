"""The beat benchmark's app: one every-1-s entry whose task records when it ran.

``beat.py`` runs it as ``aioqueue worker -A beat_tasks:app --beat``, ``aioqueue beat -A
beat_tasks:app`` and ``aioqueue worker -A beat_tasks:app`` from this directory, with

* ``AIOQUEUE_BENCH_URL``: the broker URL;
* ``AIOQUEUE_BEAT_BENCH_APP``: the app's name (beats of one name share their leader
  and their stored state, so each run uses a name of its own);
* ``AIOQUEUE_BENCH_QUEUE``: the queue the ticks go to (one of the run's own);
* ``AIOQUEUE_BEAT_BENCH_RUNS``: the file each run of the task appends ``time.time()``
  to, one line per run (a single short ``O_APPEND`` write, so lines never interleave).
"""

from __future__ import annotations

import os
import time

from bench_tasks import DEFAULT_URL, QUEUE_ENV, URL_ENV

from aioqueue import App

APP_ENV = "AIOQUEUE_BEAT_BENCH_APP"
RUNS_ENV = "AIOQUEUE_BEAT_BENCH_RUNS"
# Registered under fixed names so beat.py can derive the tick ids (entry + slot).
TICK = "beatbench.tick"
ENTRY = "tick"
INTERVAL = 1.0

app = App(
    os.environ.get(APP_ENV, "beat-bench"),
    broker=os.environ.get(URL_ENV, DEFAULT_URL),
    default_queue=os.environ.get(QUEUE_ENV, "bench.beat"),
    result_backend=None,
)
_runs = os.environ.get(RUNS_ENV, os.devnull)


@app.task(name=TICK)
async def tick() -> None:
    ran = time.time()
    fd = os.open(_runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ran:.6f}\n".encode())
    finally:
        os.close(fd)


app.beat.every(INTERVAL, tick.s(), name=ENTRY)
