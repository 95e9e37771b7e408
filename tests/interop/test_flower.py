"""Flower, run against the broker, shows an aioqueue worker (``events=True``) and its tasks."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aioqueue import App

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

TIMEOUT = 60  # generous: the machine is shared

if os.environ.get("CI") != "true":
    pytest.importorskip("flower")
else:
    import flower  # noqa: F401  (CI must have it: fail, do not skip)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def _api(url: str) -> Any:
    return await asyncio.to_thread(_get, url)


async def _until_api(url: str, check: Any) -> Any:
    last: Any = None
    for _ in range(TIMEOUT * 2):
        try:
            last = await _api(url)
            if check(last):
                return last
        except OSError:
            pass  # not listening yet
        await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never answered as expected; last answer: {last!r}")


@pytest.fixture
async def flower_url(amqp_url: str, tmp_path: Any) -> AsyncIterator[str]:
    port = _free_port()
    log = (tmp_path / "flower.log").open("w")
    process = await anyio.open_process(
        [
            sys.executable,
            "-m",
            "celery",
            "--broker",
            amqp_url,
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        stdout=log,
        stderr=log,
        # Flower 2 refuses its HTTP API without authentication unless told otherwise.
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await _until_api(f"{url}/api/workers?refresh=false", lambda answer: True)
        yield url
    finally:
        process.terminate()
        with anyio.fail_after(TIMEOUT):
            await process.wait()
        log.close()


async def test_flower_shows_the_worker_and_task_states(amqp_url: str, flower_url: str) -> None:
    queue = f"fl-{uuid.uuid4().hex[:8]}"
    hostname = f"fl-{uuid.uuid4().hex[:8]}@test"
    app = App("fl", broker=amqp_url, default_queue=queue)

    @app.task(name="fl.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="fl.fail")
    async def fail() -> None:
        raise ValueError("boom")

    async with app, app.worker(hostname=hostname, concurrency=2, events=True):
        ok = await app.send_task("fl.add", args=[2, 2])
        assert await ok.get(timeout=TIMEOUT) == 4
        bad = await app.send_task("fl.fail")
        with pytest.raises(Exception, match="boom"):
            await bad.get(timeout=TIMEOUT)

        def states(answer: Any) -> bool:
            return (
                answer.get(ok.id, {}).get("state") == "SUCCESS"
                and answer.get(bad.id, {}).get("state") == "FAILURE"
            )

        tasks = await _until_api(f"{flower_url}/api/tasks", states)
        assert tasks[ok.id]["name"] == "fl.add"
        assert tasks[ok.id]["result"] == "4"
        assert tasks[ok.id]["worker"] == hostname
        assert tasks[bad.id]["exception"] == "ValueError('boom')"
        # Flower's worker status comes from the events alone (heartbeats keep it alive).
        alive = await _until_api(
            f"{flower_url}/api/workers?status=true", lambda answer: hostname in answer
        )
        assert alive[hostname] is True
