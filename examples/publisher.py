"""A separate program that uses the multiply service knowing only task names.

It does not import the service's code: it sends ``examples.multiply.multiply`` by name
and waits on the promise.

    aioqueue worker -A examples.multiply:app      # in one terminal
    python -m examples.publisher 6 7              # in another
"""

from __future__ import annotations

import asyncio
import os
import sys

from aioqueue import App


async def main(x: int, y: int) -> int:
    broker = os.environ.get("AIOQUEUE_BROKER", "amqp://guest:guest@localhost:5672//")
    queue = os.environ.get("AIOQUEUE_QUEUE", "celery")
    async with App("publisher", broker=broker, default_queue=queue) as app:
        result = await app.send_task("examples.multiply.multiply", args=[x, y])
        print(f"sent examples.multiply.multiply({x}, {y}) as task {result.id}")
        value: int = await result.get(timeout=30)
        print(f"result: {value}")
        return value


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:3]] or [6, 7]
    asyncio.run(main(*numbers))
