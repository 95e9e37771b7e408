"""``apply_async(link=..., link_error=...)``: callbacks with the result, errbacks with the id."""

from __future__ import annotations

import anyio
import pytest

from tests.e2e.conftest import MakeApp

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # generous: only there so that a broken test fails instead of hanging


async def test_apply_async_links(make_app: MakeApp) -> None:
    app = make_app("links")
    seen: list[tuple[str, object]] = []
    done = anyio.Event()

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
        assert await ok.get(timeout=TIMEOUT) == 3
        failed = await fail.apply_async((5,), link=record.s("never"), link_error=record.s("error"))
        with pytest.raises(ValueError):
            await failed.get(timeout=TIMEOUT)
        with anyio.fail_after(TIMEOUT):
            await done.wait()
    assert sorted(seen, key=lambda s: s[0]) == [
        ("error", failed.id),
        ("first", 3),
        ("second", 3),
    ]
