"""Calling tasks on both brokers: arguments checked before sending, partials completed
when sent, STARTED for tracked tasks; and a vhost RabbitMQ does not have."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from aioqueue import App, ArgumentsError, BrokerConnectionError, State, chain, group
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

TIMEOUT = 20


async def test_wrong_arguments_fail_at_call_time_and_send_nothing(make_app: MakeApp) -> None:
    app = make_app("calls")
    calls: list[tuple[int, int]] = []

    @app.task(name="calls.add")
    async def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    async with app, app.worker():
        with pytest.raises(TypeError, match="task 'calls.add': missing a required argument"):
            await add.delay(1)  # type: ignore[call-arg]
        with pytest.raises(ArgumentsError, match="calls.add"):
            await add.apply_async((1, 2, 3))
        assert await (await add.delay(1, 2)).get(timeout=TIMEOUT) == 3
    # Only the call that fits reached the worker.
    assert calls == [(1, 2)]


async def test_a_partial_is_completed_when_sent(make_app: MakeApp) -> None:
    app = make_app("calls")

    @app.task(name="calls.echo")
    async def echo(*args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    async with app, app.worker():
        first = await echo.s(1).delay(2)
        second = await echo.s(1, a=1, b=2).apply_async((2, 3), {"b": 20}, priority=3)
        third = await echo.si(1).delay(2, c=3)
        assert await first.get(timeout=TIMEOUT) == [[2, 1], {}]
        assert await second.get(timeout=TIMEOUT) == [[2, 3, 1], {"a": 1, "b": 20}]
        assert await third.get(timeout=TIMEOUT) == [[1], {}]


async def test_a_sent_partial_is_checked_where_its_arguments_are_complete(
    make_app: MakeApp,
) -> None:
    app = make_app("calls")
    calls: list[tuple[int, int]] = []

    @app.task(name="calls.pair")
    async def pair(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    async with app, app.worker():
        with pytest.raises(ArgumentsError, match="task 'calls.pair': too many positional"):
            await pair.s(1).delay(2, 3)
        with pytest.raises(ArgumentsError, match="task 'calls.pair': missing a required"):
            await pair.s().apply_async((1,))
        with pytest.raises(ArgumentsError, match="calls.pair"):
            await group(pair.s(1, 2), pair.s(1)).delay()
        with pytest.raises(ArgumentsError, match="calls.pair"):
            await chain(pair.s(1), pair.s(2)).delay()
        # A later step gets the previous result as well: only the first is checked.
        steps = await chain(pair.s(1, 2), pair.s(10)).delay()
        assert await steps.get(timeout=TIMEOUT) == 13
    assert calls == [(1, 2), (3, 10)]


async def test_a_tracked_task_is_started_while_it_runs(make_app: MakeApp) -> None:
    app = make_app("calls")
    release = asyncio.Event()

    @app.task(name="calls.tracked", track_started=True)
    async def tracked(x: int) -> int:
        await release.wait()
        return x

    @app.task(name="calls.untracked")
    async def untracked(x: int) -> int:
        await release.wait()
        return x

    async with app, app.worker(hostname="calls@here") as worker:
        on = await tracked.delay(5)
        off = await untracked.delay(6)

        async def started() -> bool:
            return await on.status() is State.STARTED

        await eventually(started)
        seen = app.results.state(on.id)
        assert seen is not None
        assert seen.result == {"pid": os.getpid(), "hostname": worker.hostname}
        assert await off.status() is State.PENDING  # off by default: nothing until done
        release.set()
        assert await on.get(timeout=TIMEOUT) == 5
        assert await off.get(timeout=TIMEOUT) == 6
        assert await on.status() is State.SUCCESS


async def test_an_app_tracks_every_task(make_app: MakeApp) -> None:
    app = make_app("calls", track_started=True)
    release = asyncio.Event()

    @app.task(name="calls.slow")
    async def slow() -> None:
        await release.wait()

    async with app, app.worker():
        result = await slow.delay()

        async def started() -> bool:
            return await result.status() is State.STARTED

        await eventually(started)
        release.set()
        await result.get(timeout=TIMEOUT)


@pytest.mark.amqp
async def test_a_vhost_the_broker_does_not_have(amqp_url: str) -> None:
    missing = f"aioqueue-missing-{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(amqp_url)._replace(path=f"/{missing}"))
    app = App("calls", broker=url)
    with pytest.raises(BrokerConnectionError) as raised:
        await app.connect()
    text = str(raised.value)
    assert f"virtual host {missing!r}" in text
    assert "does not exist, or this user is not permitted to use it" in text
    assert "guest:guest" not in text  # the password stays masked
    await app.aclose()
