"""The broker dropping every connection: worker and client reconnect, nothing is lost."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from aioqueue import App
from tests.helpers import close_connections, eventually

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
async def test_tasks_survive_dropped_connections(amqp_url: str, amqp_queue: str) -> None:
    app = App("reconnect", broker=amqp_url, default_queue=amqp_queue)
    started: list[int] = []
    done: list[int] = []

    @app.task
    async def slow_double(x: int) -> int:
        started.append(x)
        await asyncio.sleep(0.3)
        done.append(x)
        return 2 * x

    async with app, app.worker(concurrency=10):
        assert await (await slow_double.delay(1)).get(timeout=10) == 2
        results = [await slow_double.delay(i) for i in range(20)]
        # Some of them are running (0.3 s each), the others are queued.
        await eventually(lambda: len(started) > 1)
        await asyncio.to_thread(close_connections, amqp_url)
        values = await asyncio.gather(*(r.get(timeout=60) for r in results))
        assert values == [2 * i for i in range(20)]
        # Still serving after the reconnection, both ways.
        assert await (await slow_double.delay(21)).get(timeout=30) == 42
    # Tasks interrupted by the drop ran again (at least once), none was lost.
    assert set(range(20)) <= set(done)
