"""Periodic tasks: the current hour multiplied by 2, every 10 seconds.

Run it with a worker that also runs beat (start several: exactly one leads)::

    aioqueue worker -A examples.beat:app --beat

or as one program, worker and beat embedded, for ``AIOQUEUE_BEAT_SECONDS`` seconds
(default 25)::

    python -m examples.beat

The broker URL comes from ``AIOQUEUE_BROKER`` (default: RabbitMQ on localhost);
``AIOQUEUE_BEAT_EVERY`` changes the interval.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from aioqueue import App

BROKER = os.environ.get("AIOQUEUE_BROKER", "amqp://guest:guest@localhost:5672//")
EVERY = float(os.environ.get("AIOQUEUE_BEAT_EVERY", "10"))

app = App("beat-example", broker=BROKER, default_queue=os.environ.get("AIOQUEUE_QUEUE", "celery"))


# Named as a worker started with ``-A examples.beat:app`` knows it, also when this file
# runs as ``__main__``.
@app.task(name="examples.beat.double_hour")
async def double_hour() -> int:
    """The current hour (UTC), multiplied by 2."""
    doubled = datetime.now(UTC).hour * 2
    print(f"{datetime.now(UTC):%H:%M:%S} double_hour() = {doubled}", flush=True)
    return doubled


app.beat.every(EVERY, double_hour.s(), name="double-hour")


async def main(seconds: float) -> None:
    async with app, app.worker(concurrency=10), app.beat:
        print(f"beat is {app.beat.role}; entries:", flush=True)
        for entry in (await app.beat.entries()).values():
            print(f"  {entry.describe()}", flush=True)
        await asyncio.sleep(seconds)
    print("beat example finished", flush=True)


if __name__ == "__main__":
    asyncio.run(main(float(os.environ.get("AIOQUEUE_BEAT_SECONDS", "25"))))
