"""Remote control of aioqueue workers: ``app.control`` and Celery's own CLI, on RabbitMQ.

Two embedded workers with hostnames of their own share the test's vhost; each command
is checked for the answer of the worker it addressed, and for silence from the other.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioqueue import App
from tests.helpers import eventually
from tests.interop.processes import celery_control_worker

pytestmark = pytest.mark.anyio

TIMEOUT = 30  # generous: the machine is shared
# The event that lets rc.hold end; one per test, made on the test's event loop.
RELEASE: list[asyncio.Event] = []


@pytest.fixture
async def app(amqp_url: str) -> AsyncIterator[App]:
    queue = f"rc-{uuid.uuid4().hex[:8]}"
    application = App("rc", broker=amqp_url, default_queue=queue)
    RELEASE[:] = [asyncio.Event()]

    @application.task(name="rc.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @application.task(name="rc.hold")
    async def hold() -> str:
        await RELEASE[0].wait()
        return "released"

    async with application:
        yield application


def _hosts() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"rc-a-{tag}@test", f"rc-b-{tag}@test"


async def test_ping_reaches_every_worker_or_the_destination(app: App) -> None:
    first, second = _hosts()
    async with (
        app.worker(hostname=first, concurrency=2),
        app.worker(hostname=second, concurrency=2),
    ):
        everyone = await app.control.broadcast("ping", timeout=3, limit=2)
        assert everyone == {first: {"ok": "pong"}, second: {"ok": "pong"}}
        one = await app.control.ping(timeout=3, destination=[second])
        assert one == {second: {"ok": "pong"}}
    # No worker left: nobody answers.
    assert await app.control.ping(timeout=0.5) == {}


async def test_registered_and_stats(app: App) -> None:
    first, _ = _hosts()
    async with app.worker(hostname=first, concurrency=3):
        result = await app.send_task("rc.add", args=[2, 3])
        assert await result.get(timeout=TIMEOUT) == 5
        registered = await app.control.registered(timeout=3, destination=[first])
        assert registered == {first: ["rc.add", "rc.hold"]}
        stats = (await app.control.stats(timeout=3, destination=[first]))[first]
        assert stats["pid"] == os.getpid()
        assert stats["pool"]["max-concurrency"] == 3
        assert stats["total"] == {"rc.add": 1}


async def test_revoked_lists_what_was_revoked(app: App) -> None:
    first, _ = _hosts()
    async with app.worker(hostname=first, concurrency=1):
        task_id = uuid.uuid4().hex
        await app.control.revoke(task_id, reply=True, limit=1, timeout=5)
        revoked = await app.control.revoked(timeout=3, destination=[first])
        assert task_id in revoked[first]


async def _celery(amqp_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "celery",
        "-b",
        amqp_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_celery_cli_pings_and_inspects_an_aioqueue_worker(app: App, amqp_url: str) -> None:
    first, second = _hosts()
    async with app.worker(hostname=first), app.worker(hostname=second):
        code, out, err = await _celery(amqp_url, "inspect", "ping", "-j", "-t", "5", "-d", first)
        assert code == 0, err
        assert json.loads(out) == {first: {"ok": "pong"}}
        code, out, err = await _celery(
            amqp_url, "inspect", "registered", "-j", "-t", "5", "-d", second
        )
        assert code == 0, err
        assert json.loads(out) == {second: ["rc.add", "rc.hold"]}


async def test_active_and_query_task_show_a_running_task(app: App) -> None:
    first, _ = _hosts()
    async with app.worker(hostname=first, concurrency=2):
        result = await app.send_task("rc.hold")

        active: dict[str, Any] = {}

        async def listed() -> bool:
            active.update(await app.control.active(timeout=2, destination=[first]))
            return [r["id"] for r in active.get(first, [])] == [result.id]

        await eventually(listed, timeout=TIMEOUT)
        request = active[first][0]
        assert request["name"] == "rc.hold" and request["hostname"] == first
        query = await app.control.query_task([result.id, "unknown"], destination=[first])
        assert list(query[first]) == [result.id]
        assert query[first][result.id][0] == "active"
        RELEASE[0].set()
        assert await result.get(timeout=TIMEOUT) == "released"
        assert await app.control.active(timeout=2, destination=[first]) == {first: []}


#: What ``aioqueue inspect -A`` loads in the CLI's subprocess: its broker comes from
#: ``AIOQUEUE_BROKER_URL`` there.
cli_app = App("rc-cli")


async def _aioqueue(amqp_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from aioqueue.cli import main; sys.exit(main())",
        *args,
        "-A",
        f"{__name__}:cli_app",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AIOQUEUE_BROKER_URL": amqp_url},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_aioqueue_cli_inspects_with_destination(app: App, amqp_url: str) -> None:
    first, second = _hosts()
    async with app.worker(hostname=first), app.worker(hostname=second):
        code, out, err = await _aioqueue(amqp_url, "inspect", "ping", "-t", "5", "-d", first)
        assert code == 0, err
        assert out.splitlines()[0] == f"->  {first}: OK pong"
        assert second not in out
        code, out, err = await _aioqueue(amqp_url, "inspect", "registered", "-t", "3", "--json")
        assert code == 0, err
        assert json.loads(out) == {first: ["rc.add", "rc.hold"], second: ["rc.add", "rc.hold"]}
    # Nobody left to answer: said so, with status 1.
    code, out, err = await _aioqueue(amqp_url, "inspect", "ping", "-t", "1")
    assert code == 1
    assert "No nodes replied" in out


async def test_aioqueue_api_and_cli_control_a_celery_worker(app: App, amqp_url: str) -> None:
    hostname = f"cc-{uuid.uuid4().hex[:8]}@test"
    worker = await celery_control_worker(amqp_url, hostname, f"cc-{uuid.uuid4().hex[:8]}")
    try:
        pong: dict[str, Any] = {}

        async def answers() -> bool:
            pong.update(await app.control.ping(timeout=1, destination=[hostname]))
            return bool(pong)

        await eventually(answers, timeout=120)
        assert pong == {hostname: {"ok": "pong"}}
        registered = await app.control.registered(timeout=5, destination=[hostname])
        assert "cc.add" in registered[hostname]
        stats = await app.control.stats(timeout=5, destination=[hostname])
        assert stats[hostname]["pid"] == worker.pid
        code, out, err = await _aioqueue(amqp_url, "inspect", "ping", "-t", "5", "-j")
        assert code == 0, err
        assert json.loads(out) == {hostname: {"ok": "pong"}}
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), timeout=60)
