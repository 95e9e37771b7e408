"""Every example runs as the README says: the tour, the service with its publisher, beat
and routing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from tests.helpers import delete_topology
from tests.processes import ONE_LOOP, WorkerProcesses

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 45


def _run(
    *args: str, broker: str, queue: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "AIOQUEUE_BROKER": broker}
    if queue is not None:
        env["AIOQUEUE_QUEUE"] = queue
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def _check_tour(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stderr
    for line in (
        "get(timeout=10) = 8",
        "send_task('tour.multiply', [3, 4]) = 12",
        "raised ZeroDivisionError",
        "multiply.s(2, 3) | multiply.s(4) | multiply.s(5) = 120",
        "chord(..., xsum.s()) = 285",
        "multiply.starmap([(1, 2), (3, 4)]) = [2, 12]",
        "tour finished",
    ):
        assert line in out.stdout, out.stdout


def test_tour_on_memory() -> None:
    out = _run("-m", "examples.tour", broker="memory://")
    assert "broker: the in-process memory://" in out.stdout
    _check_tour(out)


@pytest.mark.amqp
def test_tour_on_rabbitmq(amqp_url: str) -> None:
    out = _run("-m", "examples.tour", broker=amqp_url)
    assert "broker: RabbitMQ" in out.stdout
    _check_tour(out)


@pytest.mark.amqp
@pytest.mark.anyio
@ONE_LOOP
async def test_service_and_publisher(
    amqp_url: str, amqp_queue: str, worker_processes: WorkerProcesses
) -> None:
    env = {"AIOQUEUE_BROKER": amqp_url, "AIOQUEUE_QUEUE": amqp_queue}
    worker = await worker_processes.start("examples.multiply:app", "-c", "4", env=env)
    assert "examples.multiply.multiply" in worker.banner, worker.banner
    out = await anyio.to_thread.run_sync(
        lambda: _run("-m", "examples.publisher", "6", "7", broker=amqp_url, queue=amqp_queue)
    )
    assert out.returncode == 0, out.stderr
    assert "result: 42" in out.stdout
    assert await worker.stop(signal.SIGTERM, timeout=TIMEOUT) == 0, worker.stderr()


def _check_beat(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stderr
    assert "beat is leader" in out.stdout, out.stdout
    assert "double-hour: examples.beat.double_hour every 1 s" in out.stdout, out.stdout
    doubled = [line for line in out.stdout.splitlines() if "double_hour() = " in line]
    assert len(doubled) >= 2, out.stdout
    hour = int(doubled[-1].split(":")[0])
    assert doubled[-1].endswith(f"= {hour * 2}") or hour == 23, doubled  # unless the hour turned
    assert "beat example finished" in out.stdout


def test_beat_example_on_memory() -> None:
    env = {"AIOQUEUE_BEAT_EVERY": "1", "AIOQUEUE_BEAT_SECONDS": "3.5"}
    _check_beat(_run("-m", "examples.beat", broker="memory://", env=env))


@pytest.mark.amqp
def test_beat_example_on_rabbitmq(amqp_url: str, queue_name: str) -> None:
    env = {"AIOQUEUE_BEAT_EVERY": "1", "AIOQUEUE_BEAT_SECONDS": "3.5"}
    try:
        _check_beat(_run("-m", "examples.beat", broker=amqp_url, queue=queue_name, env=env))
    finally:
        asyncio.run(delete_topology(amqp_url, queue_name))


def _check_routing(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stderr
    for line in (
        "send_email -> routing.emails: mail sent to ada@example.com",
        "daily_report -> routing.reports: report for monday",
        "routing_key 'order.created' -> routing.audit: audited order.created",
        "routing_key 'invoice.paid' -> UnroutableError:",
        "reload_config(2) -> routing.reload: ran 2 times, once per worker",
        "routing example finished",
    ):
        assert line in out.stdout, out.stdout


def test_routing_example_on_memory() -> None:
    out = _run("-m", "examples.routing", broker="memory://")
    assert "broker: the in-process memory://" in out.stdout
    _check_routing(out)


@pytest.mark.amqp
def test_routing_example_on_rabbitmq(amqp_url: str) -> None:
    out = _run("-m", "examples.routing", broker=amqp_url)
    assert "broker: RabbitMQ" in out.stdout
    _check_routing(out)
