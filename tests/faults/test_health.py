"""``aioqueue worker --health-file``: touched while the worker consumes, left to age
once it consumes nothing although its process lives on.

The fault is real: the worker's vhost (its own, made for the test) loses its
permissions and RabbitMQ drops its connections, so the worker cannot reconnect; given
the permissions back, it consumes again and the file moves again.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from tests.faults.conftest import APP
from tests.helpers import close_connections, eventually
from tests.processes import ONE_LOOP, WorkerProcess, WorkerProcesses

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.amqp,
    ONE_LOOP,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"),
]

INTERVAL = 0.5


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def own_vhost(amqp_url: str) -> Iterator[tuple[str, str]]:
    """A vhost of this test's own (its permissions are taken away): (name, URL)."""
    vhost = f"aioqueue-health-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        yield vhost, urlunsplit(parts._replace(path=f"/{vhost}"))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


async def moves(path: Path, within: float) -> bool:
    """Whether the file is touched again within ``within`` seconds."""
    before = mtime(path)
    try:
        await eventually(lambda: mtime(path) != before, timeout=within)
    except TimeoutError:
        return False
    return True


async def start_worker(
    processes: WorkerProcesses, url: str, health: Path, tmp_path: Path
) -> WorkerProcess:
    env = {
        "AIOQUEUE_TEST_BROKER": url,
        "AIOQUEUE_TEST_QUEUE": "health",
        "AIOQUEUE_TEST_LOG": str(tmp_path / "runs.log"),
    }
    return await processes.start(
        APP, "--health-file", str(health), "--health-interval", str(INTERVAL), env=env
    )


@pytest.mark.timeout(180)
async def test_health_file_ages_while_the_worker_cannot_consume(
    own_vhost: tuple[str, str], worker_processes: WorkerProcesses, tmp_path: Path
) -> None:
    vhost, url = own_vhost
    health = tmp_path / "health"
    worker = await start_worker(worker_processes, url, health, tmp_path)
    await eventually(health.exists, timeout=30)
    # Consuming: touched every INTERVAL seconds.
    assert await moves(health, within=10 * INTERVAL)
    assert await moves(health, within=10 * INTERVAL)

    await asyncio.to_thread(rabbitmqctl, "clear_permissions", "-p", vhost, "guest")
    await asyncio.to_thread(close_connections, url)
    # A touch decided before the drop may still land: let it, then watch.
    await anyio.sleep(4 * INTERVAL)
    assert not await moves(health, within=12 * INTERVAL), worker.stderr()
    # Alive, yet consuming nothing: what only the file's age shows.
    assert worker.returncode is None, worker.stderr()

    await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    # It reconnects by itself (backing off) and consumes again: the file moves again.
    assert await moves(health, within=60), worker.stderr()
    assert await worker.stop() == 0, worker.stderr()
    # Stopped: the file is left to age.
    assert not await moves(health, within=4 * INTERVAL)


@pytest.mark.timeout(120)
async def test_health_file_ages_once_the_worker_queue_is_gone(
    own_vhost: tuple[str, str], worker_processes: WorkerProcesses, tmp_path: Path
) -> None:
    _, url = own_vhost
    health = tmp_path / "health"
    worker = await start_worker(worker_processes, url, health, tmp_path)
    await eventually(health.exists, timeout=30)
    assert await moves(health, within=10 * INTERVAL)
    rabbitmqctl_delete = ["rabbitmqctl", "delete_queue", "-p", urlsplit(url).path[1:], "health"]
    await asyncio.to_thread(
        subprocess.run, rabbitmqctl_delete, check=True, capture_output=True, timeout=60
    )
    # The worker stops consuming, says so and exits; the file is not touched again.
    assert await worker.wait(60) != 0
    assert not await moves(health, within=4 * INTERVAL)
