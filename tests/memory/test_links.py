"""``apply_async(link=..., link_error=...)``: callbacks with the result, errbacks with the id."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue import App

pytestmark = pytest.mark.anyio


async def test_apply_async_links(queue_name: str) -> None:
    app = App("links", default_queue=queue_name)
    seen: list[tuple[str, object]] = []
    done = asyncio.Event()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def fail(x: int) -> int:
        raise ValueError(x)

    @app.task
    async def record(value: object, label: str) -> None:
        seen.append((label, value))
        if len(seen) == 3:
            done.set()

    async with app, app.worker(concurrency=4):
        ok = await add.apply_async(
            (1, 2), link=[record.s("first"), record.s("second")], link_error=record.s("never")
        )
        assert await ok.get(timeout=10) == 3
        failed = await fail.apply_async((5,), link=record.s("never"), link_error=record.s("error"))
        with pytest.raises(ValueError):
            await failed.get(timeout=10)
        await asyncio.wait_for(done.wait(), 10)
    assert sorted(seen, key=lambda s: s[0]) == [
        ("error", failed.id),
        ("first", 3),
        ("second", 3),
    ]
