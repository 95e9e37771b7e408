"""Every example runs as the README says: the tour, and the service with its publisher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 45


def _run(*args: str, broker: str, queue: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIOQUEUE_BROKER": broker}
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
def test_service_and_publisher(amqp_url: str) -> None:
    queue = f"test.examples.{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AIOQUEUE_BROKER": amqp_url, "AIOQUEUE_QUEUE": queue}
    worker = subprocess.Popen(
        [sys.executable, "-m", "aioqueue.cli", "worker", "-A", "examples.multiply:app", "-c", "4"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert worker.stdout is not None
        banner = [worker.stdout.readline() for _ in range(12)]
        assert any("examples.multiply.multiply" in line for line in banner), banner
        out = _run("-m", "examples.publisher", "6", "7", broker=amqp_url, queue=queue)
        assert out.returncode == 0, out.stderr
        assert "result: 42" in out.stdout
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=TIMEOUT) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
