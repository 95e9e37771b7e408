"""The raw aio-pika ceiling's worker (``ceiling.Worker``) as a process of its own.

    python benchmarks/ceiling_worker.py QUEUE [--task add|nap] [-c 100] [--url URL]

It does the least work with aioqueue's guarantees: per-consumer prefetch equal to the
concurrency, the reply (or the next chain step) published with a confirm, and the ack
only after that. It prints a banner between two rules once it consumes (as ``aioqueue
worker`` does, so ``worker_process.wait_banner`` serves both), and on SIGTERM it stops
consuming, lets the tasks in hand finish, deletes its queue and exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import ceiling
import uvloop

RULE = "-" * 40


async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


TASKS: dict[str, ceiling.TaskFn] = {"add": ceiling.add, "nap": nap}


async def serve(url: str, queue: str, concurrency: int, task: str) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    worker = await ceiling.Worker.start(url, queue, concurrency, TASKS[task])
    try:
        print(
            RULE,
            f"ceiling worker: queue {queue}, task {task}, prefetch {concurrency}",
            RULE,
            sep="\n",
        )
        sys.stdout.flush()
        await stopping.wait()
    finally:
        await worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("queue")
    parser.add_argument("--task", choices=sorted(TASKS), default="add")
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--url", default=ceiling.DEFAULT_URL)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(serve(args.url, args.queue, args.concurrency, args.task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
