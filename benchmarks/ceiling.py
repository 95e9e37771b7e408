"""Raw aio-pika "ceiling" for the aioqueue benchmarks.

This is the least work any client/worker pair has to do while keeping the
guarantees aioqueue gives, so aioqueue's own figures can be read as a fraction
of what the broker and aio-pika allow on the same machine:

* task messages are persistent (delivery_mode 2) on a durable queue;
* every publish, by the client and by the worker, waits for its publisher
  confirm;
* the worker acks a task only after its reply publish has been confirmed, so a
  worker crash can never lose a result that the broker already forgot;
* replies go to a per-client durable reply queue with ``x-expires``;
* the worker's per-consumer prefetch equals its concurrency;
* in this module's ``w1``-``w7``, worker and client share one process (and one
  uvloop) but use separate connections; ``run.py`` runs the :class:`Worker` in a
  process of its own (``ceiling_worker.py``), as it runs ``aioqueue worker``.

Run alone with ``python benchmarks/ceiling.py [amqp-url]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import uvloop
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

# Long enough to survive a client reconnect, short enough that reply queues
# left behind by a crashed run vanish on their own.
REPLY_QUEUE_EXPIRES_MS = 60_000

log = logging.getLogger(__name__)

TaskFn = Callable[..., Awaitable[Any]]


async def add(x: int, y: int) -> int:
    return x + y


def _sleeper(seconds: float) -> TaskFn:
    async def sleep_task(*_args: Any) -> None:
        await asyncio.sleep(seconds)

    return sleep_task


class Worker:
    """Consumes the task queue, runs ``task`` and replies when asked to."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        queue: AbstractQueue,
        task: TaskFn,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._queue = queue
        self._task = task
        self._consumer_tag: ConsumerTag | None = None
        # Event loops only keep weak references to tasks, so the worker owns
        # the in-flight ones; it also lets close() wait for pending acks.
        self._inflight: set[asyncio.Task[None]] = set()
        self.acked = 0
        self.ack_target = math.inf
        self.all_acked = asyncio.Event()

    @classmethod
    async def start(cls, url: str, queue_name: str, concurrency: int, task: TaskFn) -> Worker:
        connection = await aio_pika.connect_robust(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            # global_=False is per-consumer qos: one consumer, so prefetch caps
            # the number of tasks this worker holds at once.
            await channel.set_qos(prefetch_count=concurrency)
            queue = await channel.declare_queue(queue_name, durable=True)
        except BaseException:
            await connection.close()
            raise
        worker = cls(connection, channel, queue, task)
        try:
            worker._consumer_tag = await queue.consume(worker._on_message)
        except BaseException:
            # The durable queue would otherwise outlive the failed run.
            await worker.close()
            raise
        return worker

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Return at once so the consumer callback never serialises deliveries,
        # whatever the library does with the callback.
        task = asyncio.create_task(self._handle(message))
        self._inflight.add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task handling failed", exc_info=exc)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        args, _kwargs, embed = json.loads(message.body)
        result = await self._task(*args)
        hops = embed.get("hops", 1)
        if hops > 1:
            # W6's chain: the worker forwards the result as the next step itself, and
            # only the last step replies (the least a chain can do).
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps([[result, 1], {}, {"hops": hops - 1}]).encode(),
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    reply_to=message.reply_to,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self._queue.name,
            )
        elif message.reply_to is not None:
            reply = {"status": "SUCCESS", "result": result, "task_id": message.correlation_id}
            await self._channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps(reply).encode(),
                    content_type="application/json",
                    correlation_id=message.correlation_id,
                    delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                ),
                routing_key=message.reply_to,
            )
        await message.ack()
        self.acked += 1
        if self.acked >= self.ack_target:
            self.all_acked.set()

    async def close(self) -> None:
        if self._consumer_tag is not None:
            await self._queue.cancel(self._consumer_tag)
        # Replies can reach the client before the worker's confirm does, so
        # acks may still be pending when the benchmark itself is finished.
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._queue.delete(if_unused=False, if_empty=False)
        await self._connection.close()


class Client:
    """Publishes tasks and resolves their results from its own reply queue."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        reply_queue: AbstractQueue,
        task_queue: str,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._reply_queue = reply_queue
        self._task_queue = task_queue
        self._consumer_tag: ConsumerTag | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}

    @classmethod
    async def start(cls, url: str, task_queue: str) -> Client:
        connection = await aio_pika.connect_robust(url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            # Durable with x-expires rather than transient non-exclusive
            # (deprecated by RabbitMQ) or exclusive (dies with the connection,
            # so a robust reconnect would lose every reply in flight).
            reply_queue = await channel.declare_queue(
                f"bench.ceiling.reply.{uuid.uuid4()}",
                durable=True,
                arguments={"x-expires": REPLY_QUEUE_EXPIRES_MS},
            )
        except BaseException:
            await connection.close()
            raise
        client = cls(connection, channel, reply_queue, task_queue)
        try:
            # no_ack: a ceiling must not do work aioqueue might skip, and
            # replies are transient anyway.
            client._consumer_tag = await reply_queue.consume(client._on_reply, no_ack=True)
        except BaseException:
            await client.close()
            raise
        return client

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        if message.correlation_id is None:
            return
        future = self._pending.pop(message.correlation_id, None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body)["result"])

    async def _publish(
        self, args: list[Any], task_id: str, reply_to: str | None, hops: int = 1
    ) -> None:
        await self._channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps([args, {}, {"hops": hops}]).encode(),
                content_type="application/json",
                correlation_id=task_id,
                reply_to=reply_to,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self._task_queue,
        )

    async def call(self, args: list[Any], hops: int = 1) -> asyncio.Future[Any]:
        """Publish a task (forwarded ``hops - 1`` times by the worker); return the
        future of its result once confirmed."""
        task_id = str(uuid.uuid4())
        # Registered before publishing: the reply may overtake the confirm.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[task_id] = future
        try:
            await self._publish(args, task_id, self._reply_queue.name, hops)
        except BaseException:
            self._pending.pop(task_id, None)
            raise
        return future

    async def send(self, args: list[Any]) -> None:
        """Publish a fire-and-forget task and wait for its confirm."""
        await self._publish(args, str(uuid.uuid4()), None)

    async def delete_task_queue(self) -> None:
        """Delete the task queue: a worker in another process that died leaves it behind."""
        await self._channel.queue_delete(self._task_queue)

    async def close(self) -> None:
        if self._consumer_tag is not None:
            await self._reply_queue.cancel(self._consumer_tag)
        await self._reply_queue.delete(if_unused=False, if_empty=False)
        await self._connection.close()


@asynccontextmanager
async def _pair(url: str, concurrency: int, task: TaskFn) -> AsyncIterator[tuple[Worker, Client]]:
    queue_name = f"bench.ceiling.{uuid.uuid4()}"
    worker = await Worker.start(url, queue_name, concurrency, task)
    try:
        client = await Client.start(url, queue_name)
        try:
            yield worker, client
        finally:
            await client.close()
    finally:
        await worker.close()


async def w1(url: str, n: int = 10_000, concurrency: int = 1000) -> float:
    """Throughput with results: n add(i, i) submitted at once; returns tasks/s."""
    async with _pair(url, concurrency, add) as (_worker, client):
        start = time.perf_counter()
        futures = await asyncio.gather(*(client.call([i, i]) for i in range(n)))
        results = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    if results != [2 * i for i in range(n)]:
        raise RuntimeError("w1: wrong results")
    return n / elapsed


async def w2(url: str, n: int = 20_000, concurrency: int = 1000) -> float:
    """Fire-and-forget throughput; returns tasks/s until the worker acked all n."""
    async with _pair(url, concurrency, add) as (worker, client):
        worker.ack_target = n
        start = time.perf_counter()
        publishing = asyncio.gather(*(client.send([i, i]) for i in range(n)))
        await worker.all_acked.wait()
        elapsed = time.perf_counter() - start
        # Confirms for already-consumed messages can trail the last ack.
        await publishing
    return n / elapsed


async def w3(url: str, n: int = 2_000, concurrency: int = 1000, sleep: float = 0.1) -> float:
    """I/O-bound tasks that each sleep; returns wall seconds to the last result."""
    async with _pair(url, concurrency, _sleeper(sleep)) as (_worker, client):
        start = time.perf_counter()
        futures = await asyncio.gather(*(client.call([i]) for i in range(n)))
        await asyncio.gather(*futures)
        return time.perf_counter() - start


async def w4(url: str, n: int = 500) -> tuple[float, float]:
    """Sequential round-trip latency; returns (p50_ms, p99_ms)."""
    samples: list[float] = []
    async with _pair(url, 1000, add) as (_worker, client):
        for i in range(n):
            start = time.perf_counter()
            await (await client.call([i, i]))
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return percentile(samples, 50), percentile(samples, 99)


async def w6(url: str, n: int = 200, steps: int = 10) -> tuple[float, float]:
    """A chain of ``steps`` adds, each step forwarded by the worker, awaited end to end
    ``n`` times in turn; returns (chains/s, p50 ms)."""
    samples: list[float] = []
    async with _pair(url, 1000, add) as (_worker, client):
        start = time.perf_counter()
        for i in range(n):
            begin = time.perf_counter()
            value = await (await client.call([i, 1], hops=steps))
            samples.append((time.perf_counter() - begin) * 1000)
            if value != i + steps:
                raise RuntimeError("w6: wrong result")
        elapsed = time.perf_counter() - start
    samples.sort()
    return n / elapsed, percentile(samples, 50)


async def w7(url: str, n: int = 50, size: int = 100) -> float:
    """``n`` times in turn, ``size`` adds published at once and their results gathered
    (a group); returns groups/s."""
    async with _pair(url, 1000, add) as (_worker, client):
        start = time.perf_counter()
        for _ in range(n):
            futures = await asyncio.gather(*(client.call([i, i]) for i in range(size)))
            if await asyncio.gather(*futures) != [2 * i for i in range(size)]:
                raise RuntimeError("w7: wrong results")
        elapsed = time.perf_counter() - start
    return n / elapsed


def percentile(sorted_samples: list[float], p: float) -> float:
    """Nearest rank: always an observed latency, never an interpolated one."""
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


async def _main(url: str) -> None:
    print(f"w1 submit+results  : {await w1(url):>10,.0f} tasks/s")
    print(f"w2 fire-and-forget : {await w2(url):>10,.0f} tasks/s")
    print(f"w3 2000 x sleep 0.1: {await w3(url):>10.3f} s")
    p50, p99 = await w4(url)
    print(f"w4 round trip      : p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    chains, chain_p50 = await w6(url)
    print(f"w6 10-step chain   : {chains:>10,.1f} chains/s, p50 {chain_p50:.3f} ms")
    print(f"w7 group of 100    : {await w7(url):>10,.1f} groups/s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    uvloop.run(_main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL))
