"""``aioqueue dlq list|show|replay|purge`` through the real CLI, on RabbitMQ: messages
the worker parked (its ``x-aioqueue-error`` headers) and one RabbitMQ dead-lettered
itself (``x-death``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

from aioqueue import App, Queue
from aioqueue.transport.base import Delivery, Envelope, QueueSpec
from tests.processes import CLI, ONE_LOOP, ROOT, TIMEOUT, run_cli

app = App(
    "cli-dlq",
    broker=os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    default_queue=os.environ.get("AIOQUEUE_TEST_QUEUE", "cli.dlq"),
)
APP = "tests.test_cli_dlq:app"

pytestmark = pytest.mark.anyio


def _parked(task_id: str, error: str, queue: str) -> Envelope:
    headers = {
        "task": "cli.add",
        "id": task_id,
        "lang": "py",
        "x-aioqueue-error": error,
        "x-aioqueue-error-type": "UnknownTaskError",
        "x-aioqueue-queue": queue,
        "x-aioqueue-redeliveries": 2,
    }
    return Envelope(json.dumps([[1, 2], {}, {}]).encode(), headers=headers, correlation_id=task_id)


@pytest.fixture
async def filled(amqp_url: str, amqp_queue: str) -> AsyncIterator[App]:
    """``amqp_queue``'s .dlq with two parked messages and one RabbitMQ dead-lettered
    (rejected from ``<queue>.side``, whose dead-letter target is that .dlq)."""
    local = App("cli-dlq-test", broker=amqp_url, default_queue=amqp_queue)
    dlq, side = f"{amqp_queue}.dlq", f"{amqp_queue}.side"
    async with local:
        await local.broker.declare(Queue(amqp_queue))
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
        await local.transport.declare_queue(QueueSpec(side, arguments=arguments))
        for n in (1, 2):
            envelope = _parked(f"id-{n}", f"unknown task number {n}", amqp_queue)
            await local.transport.publish(envelope, routing_key=dlq)
        rejected = Envelope(b"[[3], {}, {}]", headers={"task": "cli.mul", "id": "id-3"})
        await local.transport.publish(rejected, routing_key=side)

        async def reject(delivery: Delivery) -> None:
            await delivery.reject(requeue=False)

        consumer = await local.transport.consume(side, reject, prefetch=1)
        with anyio.fail_after(10):
            # RabbitMQ moves the rejected message: nothing here could signal it.
            while (state := await local.transport.inspect_queue(dlq)) is None or state.messages < 3:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        await consumer.close()
        try:
            yield local
        finally:
            await local.transport.delete_queue(side)


async def _cli(
    amqp_url: str, queue: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOQUEUE_TEST_BROKER": amqp_url, "AIOQUEUE_TEST_QUEUE": queue}
    return await anyio.to_thread.run_sync(lambda: run_cli("dlq", *args, env=env, stdin=stdin))


async def _taken(local: App, queue: str) -> list[Envelope]:
    batch = await local.transport.take_all(queue, min_count=0)
    assert batch is not None
    await batch.release()
    return batch.envelopes


@ONE_LOOP
async def test_list_and_show(amqp_url: str, amqp_queue: str, filled: App) -> None:
    out = await _cli(amqp_url, amqp_queue, "list", "-A", APP)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{amqp_queue}.dlq: 3 dead letters"
    assert lines[1] == (
        f"  1. cli.add id=id-1 from {amqp_queue}: UnknownTaskError: unknown task number 1"
    )
    assert (
        lines[3]
        == f"  3. cli.mul id=id-3 from {amqp_queue}.side: RabbitMQ: rejected from {amqp_queue}.side"
    )
    # -Q names the queue too, and listing took nothing away.
    again = await _cli(amqp_url, "other", "list", "-A", APP, "-Q", amqp_queue)
    assert again.stdout == out.stdout
    shown = await _cli(amqp_url, amqp_queue, "show", "-A", APP, "id-2")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["body"] == [[1, 2], {}, {}]
    assert document["headers"]["x-aioqueue-error"] == "unknown task number 2"
    assert (
        json.loads((await _cli(amqp_url, amqp_queue, "show", "-A", APP, "3")).stdout)["id"]
        == "id-3"
    )
    missing = await _cli(amqp_url, amqp_queue, "show", "-A", APP, "nope")
    assert missing.returncode == 1
    assert "no dead letter 'nope'" in missing.stderr


@ONE_LOOP
async def test_replay_by_id_then_by_reason(amqp_url: str, amqp_queue: str, filled: App) -> None:
    out = await _cli(amqp_url, amqp_queue, "replay", "-A", APP, "--id", "id-2")
    assert out.returncode == 0, out.stderr
    assert f"replayed cli.add id=id-2 to {amqp_queue}" in out.stdout
    assert out.stdout.splitlines()[-1] == f"{amqp_queue}.dlq: 1 message replayed, 2 kept"
    (home,) = await _taken(filled, amqp_queue)
    assert home.headers == {"task": "cli.add", "id": "id-2", "lang": "py"}
    assert [e.headers["id"] for e in await _taken(filled, f"{amqp_queue}.dlq")] == ["id-1", "id-3"]

    out = await _cli(amqp_url, amqp_queue, "replay", "-A", APP, "--reason", "rejected")
    assert out.returncode == 0, out.stderr
    assert f"replayed cli.mul id=id-3 to {amqp_queue}.side" in out.stdout
    (replayed,) = await _taken(filled, f"{amqp_queue}.side")
    assert not any(k.startswith("x-") for k in replayed.headers)
    (left,) = await _taken(filled, f"{amqp_queue}.dlq")
    assert left.headers["id"] == "id-1"
    assert left.headers["x-aioqueue-error"] == "unknown task number 1"

    nothing = await _cli(amqp_url, amqp_queue, "replay", "-A", APP, "--id", "nope")
    assert nothing.returncode == 1
    assert f"{amqp_queue}.dlq: 0 messages replayed, 1 kept" in nothing.stdout


@ONE_LOOP
async def test_purge_asks_first(amqp_url: str, amqp_queue: str, filled: App) -> None:
    declined = await _cli(amqp_url, amqp_queue, "purge", "-A", APP, stdin="n\n")
    assert declined.returncode == 1
    assert f"purge 3 messages from {amqp_queue}.dlq? [y/N]" in declined.stdout
    assert len(await _taken(filled, f"{amqp_queue}.dlq")) == 3
    out = await _cli(amqp_url, amqp_queue, "purge", "-A", APP, "-f")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{amqp_queue}.dlq: 3 messages purged"
    assert await _taken(filled, f"{amqp_queue}.dlq") == []


def test_a_memory_broker_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, *CLI, "dlq", "list", "-A", APP],
        cwd=ROOT,
        env={**os.environ, "AIOQUEUE_TEST_BROKER": "memory://"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 1
    assert "memory://" in out.stderr
