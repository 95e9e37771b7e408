"""A beat leader whose network goes away (not killed: its connections go silent)."""

from __future__ import annotations

import time
import uuid

import pytest

from aioqueue import App
from tests.helpers import eventually
from tests.transport._support import Proxy

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


@pytest.mark.timeout(60)
async def test_a_standby_takes_over_within_5_s_when_the_leaders_network_goes(
    amqp_url: str, queue_name: str
) -> None:
    proxy = Proxy(amqp_url)
    await proxy.start()
    name = f"beat-network-{uuid.uuid4().hex[:8]}"
    leader = App(name, broker=proxy.url, default_queue=queue_name)
    standby = App(name, broker=amqp_url, default_queue=queue_name)
    try:
        await leader.beat.start()
        await standby.beat.start()
        assert (leader.beat.role, standby.beat.role) == ("leader", "standby")
        proxy.freeze()  # every byte held: RabbitMQ hears nothing more from the leader
        frozen = time.monotonic()
        await eventually(lambda: standby.beat.role == "leader", 20)
        took = time.monotonic() - frozen
        assert took < 5, f"the standby led {took:.1f} s after the leader went silent"
    finally:
        await proxy.aclose()  # the silent connections end here, the old leader steps down
        await standby.beat.stop()
        await leader.beat.stop()
        await standby.aclose()
        await leader.aclose()
