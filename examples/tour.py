"""The whole tour in one file: an app, its tasks, a worker, and a client using them.

    python -m examples.tour            # RabbitMQ on localhost if it answers, else memory://
    AIOQUEUE_BROKER=memory:// python -m examples.tour

The worker runs embedded in this program (``async with app.worker()``); in production
it is a separate process: ``aioqueue worker -A examples.multiply:app``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid

from aioqueue import App, ResultTimeoutError, chain, chord, group

LOCAL_RABBITMQ = "amqp://guest:guest@localhost:5672//"


def choose_broker() -> str:
    """``AIOQUEUE_BROKER`` if set, else RabbitMQ on localhost if it answers, else memory."""
    if "AIOQUEUE_BROKER" in os.environ:
        return os.environ["AIOQUEUE_BROKER"]
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if sock.recv(8):
                return LOCAL_RABBITMQ
    except OSError:
        pass
    return "memory://"


BROKER = choose_broker()
# A queue of its own, so the tour never meets messages left by anything else.
app = App("tour", broker=BROKER, default_queue=f"tour.{uuid.uuid4().hex[:8]}")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def multiply(x: int, y: int) -> int:
    return x * y


@app.task
def blocking_multiply(x: int, y: int) -> int:
    time.sleep(0.01)  # sync tasks may block: they run in a worker thread
    return x * y


@app.task
async def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
async def divide(x: float, y: float) -> float:
    return x / y


@app.task
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


async def main() -> None:
    where = "RabbitMQ at localhost" if BROKER.startswith("amqp") else "the in-process memory://"
    print(f"broker: {where} ({BROKER.split('@')[-1]})")
    async with app:
        async with app.worker(concurrency=50):
            await tour()
        # The tour's queue was its own: remove it with its .dlq and exchange.
        queue = app.default_queue
        for name in (queue, f"{queue}.dlq"):
            await app.transport.delete_queue(name)
        await app.transport.delete_exchange(queue)
    print("tour finished")


async def tour() -> None:
    """The steps of the classic introduction, each printing what it shows."""
    # Calling a task: delay() sends it, the AsyncResult is the promise.
    result = await add.delay(4, 4)
    print(f"add.delay(4, 4) -> task {result.id}")
    print(f"  get(timeout=10) = {await result.get(timeout=10)}")
    print(f"  status = {await result.status()}")

    # Sending by name: the client needs no import of the task's code.
    by_name = await app.send_task(multiply.name, args=[3, 4])
    print(f"send_task({multiply.name!r}, [3, 4]) = {await by_name}")

    # A direct call runs the function here, like a normal coroutine.
    print(f"await multiply(6, 7) = {await multiply(6, 7)}  (local, no broker)")
    print(f"blocking_multiply.delay(5, 6) = {await (await blocking_multiply.delay(5, 6))}")

    # Errors travel back as the same exception type, with the remote traceback.
    failing = await divide.delay(1, 0)
    try:
        await failing.get(timeout=10)
    except ZeroDivisionError as exc:
        print(f"divide.delay(1, 0) raised ZeroDivisionError: {exc}")
    returned = await failing.get(propagate=False)
    print(f"  get(propagate=False) returns it: {returned!r}")

    # Timeouts name the task.
    try:
        await (await slow.delay(2)).get(timeout=0.2)
    except ResultTimeoutError as exc:
        print(f"slow.delay(2).get(timeout=0.2) -> {exc}")

    # Options: countdown waits in the broker, not in a worker's memory.
    started = time.monotonic()
    later = await add.apply_async((1, 2), countdown=1)
    value = await later.get(timeout=10)
    print(f"apply_async((1, 2), countdown=1) = {value} after {time.monotonic() - started:.1f} s")

    # Many at once: gather the promises.
    results = await asyncio.gather(*[add.delay(i, i) for i in range(100)])
    values = await asyncio.gather(*[r.get(timeout=10) for r in results])
    print(f"100 x add.delay(i, i), summed = {sum(values)}")
    await canvas()


async def canvas() -> None:
    """Workflows: partials, chains, groups, chords, map/starmap/chunks."""
    # A partial misses arguments: in a chain, the previous result comes first.
    flow = multiply.s(2, 3) | multiply.s(4) | multiply.s(5)
    result = await flow.delay()
    print(f"multiply.s(2, 3) | multiply.s(4) | multiply.s(5) = {await result.get(timeout=10)}")
    # Only the last step sends its result, unless the earlier ones are asked for.
    result = await flow.apply_async(intermediate_results=True)
    if result.parent is not None:
        print(f"  its parent (the second step) returned {await result.parent.get(timeout=10)}")
    fixed = await chain(add.s(1, 1), multiply.si(2, 5)).delay()
    print(f"chain(add.s(1, 1), multiply.si(2, 5)) = {await fixed.get(timeout=10)}  (.si ignores 2)")

    squares = await group(multiply.s(i, i) for i in range(10)).delay()
    print(f"group(multiply.s(i, i) for i in range(10)) = {await squares.get(timeout=10)}")
    total = await chord(group(multiply.s(i, i) for i in range(10)), xsum.s()).delay()
    print(f"chord(..., xsum.s()) = {await total.get(timeout=10)}")
    also = await (group(add.s(i, i) for i in range(5)) | xsum.s()).delay()
    print(f"group(...) | xsum.s() (a chord) = {await also.get(timeout=10)}")

    mapped = await xsum.map([[1, 2], [3, 4]]).delay()
    print(f"xsum.map([[1, 2], [3, 4]]) = {await mapped.get(timeout=10)}")
    starred = await multiply.starmap([(1, 2), (3, 4)]).delay()
    print(f"multiply.starmap([(1, 2), (3, 4)]) = {await starred.get(timeout=10)}")
    pairs = [(i, i) for i in range(10)]
    chunked = await add.chunks(pairs, 4).delay()
    print(f"add.chunks([(i, i) for i in range(10)], 4) = {await chunked.get(timeout=10)}")
    routed = await multiply.s(2, 21).with_options(countdown=0.5).delay()
    print(f"multiply.s(2, 21).with_options(countdown=0.5) = {await routed.get(timeout=10)}")


if __name__ == "__main__":
    asyncio.run(main())
