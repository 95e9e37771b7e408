"""A message that kills every worker it reaches ends in the ``.dlq`` after
``max_redeliveries`` (5) redeliveries, instead of looping forever."""

from __future__ import annotations

import anyio
import pytest

from aioqueue import MessageError
from aioqueue.topology import dlq_name
from tests.faults.conftest import Cluster
from tests.helpers import receive
from tests.processes import ONE_LOOP

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]


async def test_a_poison_message_is_dead_lettered_after_the_limit(cluster: Cluster) -> None:
    result = await cluster.task("die").delay(7)
    for _ in range(10):
        worker = await cluster.start("-c", "2")
        with anyio.fail_after(20):
            while worker.returncode is None:
                dlq = await cluster.client.transport.inspect_queue(dlq_name(cluster.queue))
                if dlq is not None and dlq.messages:
                    break
                await anyio.sleep(0.1)
        if worker.returncode is None:
            assert await worker.stop() == 0
            break
    else:
        pytest.fail("the poison message was never dead-lettered")
    # It ran once, then once after each of its 5 redeliveries; the 6th went to the dlq.
    assert cluster.counts("die") == {"7": 6}
    (parked,) = await receive(cluster.client.transport, dlq_name(cluster.queue))
    assert "redelivered 6 times" in parked.headers["x-aioqueue-error"]
    with pytest.raises(MessageError, match="max_redeliveries=5"):
        await result.get(timeout=10)
