"""An ``rpc://`` reply queue lost for good: deleted here, as a classic reply queue is
lost on a cluster whose node holding it is down (``tests/faults/test_cluster.py``).
The callers waiting on it are told at once instead of waiting for nothing, and the next
task sent gets a new reply queue."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue import BrokerConnectionError
from tests.e2e.conftest import MakeApp

pytestmark = pytest.mark.anyio

TIMEOUT = 30


async def test_a_lost_reply_queue_fails_its_waiters_and_a_new_one_follows(
    make_app: MakeApp,
) -> None:
    app = make_app("replies")

    @app.task(name="replies.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with app:
        pending = await add.delay(1, 2)  # no worker yet: it waits
        lost = app.results.reply_to
        waiting = asyncio.ensure_future(pending.get(timeout=TIMEOUT))
        await asyncio.sleep(0)  # the caller waits from here on
        await app.transport.delete_queue(lost)
        with pytest.raises(BrokerConnectionError, match=f"reply queue '{lost}' was lost"):
            await waiting
        async with app.worker():
            assert await (await add.delay(2, 3)).get(timeout=TIMEOUT) == 5
        assert app.results.reply_to != lost
