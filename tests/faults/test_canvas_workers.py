"""Canvas across worker processes on a real RabbitMQ.

Two (sometimes three) worker processes consume the same queue (``cluster``, see
``conftest.py``). The run log tells the test which workers took part and how many times
something ran: above all, that a chord's body runs exactly once, also when a worker is
SIGKILLed in the middle of the chord.
"""

from __future__ import annotations

import pytest

from aioqueue import GroupResult, chain, chord, group
from aioqueue.canvas import freeze, plan
from tests.faults.conftest import Cluster
from tests.helpers import eventually
from tests.processes import ONE_LOOP

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

TIMEOUT = 60  # generous: only there so that a broken test fails instead of hanging
WORKER = ("-c", "10", "--shutdown-timeout", "10")  # the workers' options


async def test_twenty_step_chain_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2, *WORKER)
    add = cluster.task("add")
    canvas = add.si(0, 0)
    for i in range(1, 20):
        canvas = canvas | add.s(i)

    result = await canvas.delay()

    assert await result.get(timeout=TIMEOUT) == sum(range(20))
    runs = cluster.runs("add")
    assert len(runs) == 20
    assert {pid for pid, _ in runs} == {first.pid, second.pid}
    # Each step ran once, in order, wherever it landed.
    assert [detail for _, detail in runs] == ["0,0"] + [
        f"{sum(range(i))},{i}" for i in range(1, 20)
    ]


async def test_group_of_fifty_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2, *WORKER)
    slow_add = cluster.task("slow_add")

    result = await group(slow_add.s(i, i, 0.01) for i in range(50)).delay()

    assert isinstance(result, GroupResult)
    assert await result.get(timeout=TIMEOUT) == [2 * i for i in range(50)]
    done = cluster.runs("done")
    assert sorted(int(x) for _, x in done) == list(range(50))
    assert {pid for pid, _ in done} == {first.pid, second.pid}


async def test_chord_of_a_hundred_across_two_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2, *WORKER)
    add, xsum = cluster.task("add"), cluster.task("xsum")

    result = await chord((add.s(i, i) for i in range(100)), xsum.s()).delay()
    cluster.chords.append(result.parent.id)

    assert await result.get(timeout=TIMEOUT) == sum(2 * i for i in range(100))
    assert len(cluster.runs("add")) == 100
    assert cluster.pids("add") == {first.pid, second.pid}
    await cluster.quiet()
    assert [detail for _, detail in cluster.runs("xsum")] == ["100"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kill_after", [30, 85], ids=["early", "late"])
async def test_chord_fires_once_when_a_worker_is_killed_mid_chord(
    cluster: Cluster, kill_after: int
) -> None:
    doomed, survivor = await cluster.start_many(2, *WORKER)
    slow_add, xsum = cluster.task("slow_add"), cluster.task("xsum")
    n = 100

    result = await chord((slow_add.s(i, i, 0.1) for i in range(n)), xsum.s()).delay()
    cluster.chords.append(result.parent.id)

    # Kill one worker once a good part of the header is done, while it runs members.
    await eventually(lambda: len(cluster.runs("done")) >= kill_after, TIMEOUT)
    await doomed.kill()
    replacement = await cluster.start(*WORKER)

    assert await result.get(timeout=TIMEOUT) == sum(2 * i for i in range(n))
    await cluster.quiet()
    # Drain the workers: whatever they hold finishes; then look for stray bodies.
    assert await survivor.stop() == 0, survivor.stderr()
    assert await replacement.stop() == 0, replacement.stderr()
    assert "faults.xsum" not in await cluster.leftover_tasks()

    assert [detail for _, detail in cluster.runs("xsum")] == [str(n)]
    survivors = {survivor.pid, replacement.pid}
    assert cluster.pids("start") <= {doomed.pid, *survivors}
    started = {(pid, int(x)) for pid, x in cluster.runs("start")}
    finished = {(pid, int(x)) for pid, x in cluster.runs("done")}
    on_doomed = {x for pid, x in started if pid == doomed.pid}
    # What the killed worker held unacked came back and ran again on the others.
    redelivered = on_doomed & {x for pid, x in started if pid in survivors}
    assert redelivered, "the killed worker held no member: the kill tested nothing"
    interrupted = on_doomed - {x for pid, x in finished if pid == doomed.pid}
    assert interrupted <= {x for pid, x in finished if pid in survivors}
    assert {x for _, x in finished} == set(range(n))


async def test_members_delivered_again_after_the_chord_fired_do_not_fire_it_again(
    cluster: Cluster,
) -> None:
    """What RabbitMQ does to members whose worker died after the chord fired but before
    it acked them: deliver them again. The same member messages are published again."""
    await cluster.start_many(2, *WORKER)
    slow_add, xsum = cluster.task("slow_add"), cluster.task("xsum")
    node = freeze(chord([slow_add.s(1, 1, 0), slow_add.s(2, 2, 0)], xsum.s()).to_dict(), None)
    members = plan(node)
    cluster.chords.extend(members.chords)

    await cluster.client.broker.publish_plan(members)
    await eventually(lambda: len(cluster.runs("xsum")) == 1, TIMEOUT)
    for outgoing in members.messages:
        await cluster.client.broker.publish_task(outgoing.message, outgoing.options)
    await eventually(lambda: len(cluster.runs("done")) == 4, TIMEOUT)
    await cluster.quiet()
    for worker in cluster.processes.started:
        assert await worker.stop() == 0, worker.stderr()

    assert "faults.xsum" not in await cluster.leftover_tasks()
    assert [detail for _, detail in cluster.runs("xsum")] == ["2"]


async def test_failing_step_stops_a_chain_across_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2, *WORKER)
    add, boom = cluster.task("add"), cluster.task("boom")

    canvas = chain(add.s(1, 1), add.s(1), boom.s(), add.s(100), add.s(1000))
    result = await canvas.apply_async(intermediate_results=True)

    with pytest.raises(ValueError, match="boom 3") as caught:
        await result.get(timeout=TIMEOUT)
    assert caught.value.args == ("boom 3",)
    failed = result.parent.parent
    with pytest.raises(ValueError, match="boom 3"):
        await failed.get(timeout=TIMEOUT)
    assert await failed.parent.get(timeout=TIMEOUT) == 3
    with pytest.raises(ValueError, match="boom 3"):
        await result.parent.get(timeout=TIMEOUT)
    await cluster.quiet(for_checks=2)
    assert [d for _, d in cluster.runs("add")] == ["1,1", "2,1"]
    assert [d for _, d in cluster.runs("boom")] == ["3"]
    assert cluster.pids("add") | cluster.pids("boom") == {first.pid, second.pid}


async def test_nested_canvas_across_workers(cluster: Cluster) -> None:
    first, second = await cluster.start_many(2, *WORKER)
    add, xsum = cluster.task("add"), cluster.task("xsum")

    in_chain = await chain(
        add.s(1, 1), chord([add.s(i) for i in range(10)], xsum.s()), add.s(100)
    ).delay()
    cluster.chords.append(in_chain.parent.parent.id)
    of_chains = await group(chain(add.s(i, i), add.s(1)) for i in range(10)).delay()
    chord_of_chains = await chord(
        [chain(add.s(i, 0), add.s(i)) for i in range(10)], xsum.s()
    ).delay()
    cluster.chords.append(chord_of_chains.parent.id)

    assert await in_chain.get(timeout=TIMEOUT) == 2 * 10 + sum(range(10)) + 100
    assert await of_chains.get(timeout=TIMEOUT) == [2 * i + 1 for i in range(10)]
    assert await chord_of_chains.get(timeout=TIMEOUT) == sum(2 * i for i in range(10))
    await cluster.quiet(for_checks=2)
    assert len(cluster.runs("xsum")) == 2
    assert cluster.pids("add") == {first.pid, second.pid}
