"""A chain step whose result cannot be serialised fails the chain with EncodeError;
the worker goes on serving."""

from __future__ import annotations

import pytest

from aioqueue import App, EncodeError

pytestmark = pytest.mark.anyio


async def test_unserialisable_step_fails_the_chain(queue_name: str) -> None:
    app = App("unserialisable", default_queue=queue_name)

    @app.task
    async def make_object(x: int) -> object:
        return object()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, app.worker(concurrency=4):
        result = await (make_object.s(1) | add.s(1)).delay()
        with pytest.raises(EncodeError, match="make_object"):
            await result.get(timeout=10)
        assert await (await add.delay(1, 2)).get(timeout=10) == 3
