"""A chord whose members carry no chord_size (as Celery clients send them) fails
the chord's promise with a clear error instead of leaving it waiting."""

from __future__ import annotations

import pytest

from aioqueue import App, AsyncResult, MalformedMessageError, chord
from aioqueue.canvas import freeze, plan

pytestmark = pytest.mark.anyio


async def test_chord_without_chord_size_fails_its_promise(queue_name: str) -> None:
    app = App("sizeless", default_queue=queue_name)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    async with app, app.worker(concurrency=4):
        assert app._rpc is not None
        await app._rpc.start()
        node = freeze(chord([double.s(1), double.s(2)], total.s()).to_dict(), app._rpc.reply_to)
        body_id = node["kwargs"]["body"]["options"]["task_id"]
        for outgoing in plan(node).messages:
            embedded = dict(outgoing.message.chord or {})
            embedded["options"] = {
                k: v for k, v in embedded["options"].items() if k != "chord_size"
            }
            await app.publish(outgoing.message.model_copy(update={"chord": embedded}))
        with pytest.raises(MalformedMessageError, match="chord_size"):
            await AsyncResult(body_id, app.results).get(timeout=10)
        # The worker still serves.
        assert await (await double.delay(21)).get(timeout=10) == 42
