"""Task controls on both brokers: the current request, retries (asked for and
automatic), soft and hard time limits, expiry, acks_late, rate limits."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from aioqueue import (
    MaxRetriesExceededError,
    Request,
    SoftTimeLimitExceeded,
    State,
    Task,
    TaskExpiredError,
    TimeLimitExceeded,
    current_request,
)
from aioqueue.message import utc_now
from aioqueue.routing import delay_bucket_ms
from aioqueue.topology import DELAY_PREFIX
from tests.e2e.conftest import MakeApp
from tests.helpers import eventually

pytestmark = pytest.mark.anyio

TIMEOUT = 20


async def test_the_request_of_an_async_and_a_sync_task(make_app: MakeApp, queue_name: str) -> None:
    app = make_app("request")
    seen: list[Request] = []

    @app.task(name="c.async", bind=True)
    async def bound(self: Task[Any, Any], x: int) -> int:
        seen.append(self.request)
        assert current_request() == self.request
        return x

    @app.task(name="c.sync")
    def plain(x: int) -> int:
        seen.append(current_request())  # a sync task's thread sees its request too
        return x

    with pytest.raises(LookupError, match="only available inside a task"):
        current_request()
    async with app, app.worker():
        first = await bound.delay(1)
        assert await first.get(timeout=TIMEOUT) == 1
        second = await plain.apply_async((2,), expires=3600)
        assert await second.get(timeout=TIMEOUT) == 2
    # A task called here and now (no worker) gets the task too when bound.
    with pytest.raises(LookupError):
        await bound(3)
    one, two = seen
    assert (one.id, one.task, one.args, one.retries) == (first.id, "c.async", (1,), 0)
    assert one.root_id == first.id and one.parent_id is None
    assert one.delivery_info is not None and one.delivery_info.queue == queue_name
    assert (two.id, two.task, two.args) == (second.id, "c.sync", (2,))
    assert two.expires is not None and two.expires > utc_now()


async def test_autoretry_fails_twice_then_succeeds(make_app: MakeApp) -> None:
    app = make_app("autoretry")
    runs: list[int] = []
    release = anyio.Event()

    @app.task(name="c.flaky", autoretry_for=(OSError,), max_retries=5, default_retry_delay=0.05)
    async def flaky() -> str:
        runs.append(current_request().retries)
        if len(runs) < 3:
            raise OSError("not yet")
        await release.wait()
        return "done"

    async with app, app.worker():
        result = await flaky.delay()
        # The caller sees RETRY while the third attempt runs.
        await eventually(lambda: len(runs) == 3)
        assert await result.status() is State.RETRY
        release.set()
        assert await result.get(timeout=TIMEOUT) == "done"
    assert runs == [0, 1, 2]


async def test_retry_with_a_countdown_lands_that_much_later(make_app: MakeApp) -> None:
    app = make_app("retry-countdown")
    times: list[float] = []
    etas: list[datetime | None] = []

    @app.task(name="c.later", bind=True)
    async def later(self: Task[Any, Any]) -> int:
        times.append(time.time())  # the eta is a wall-clock time
        etas.append(self.request.eta)
        if self.request.retries == 0:
            raise self.retry(countdown=2)
        return self.request.retries

    async with app, app.worker():
        assert await (await later.delay()).get(timeout=TIMEOUT) == 1
    eta = etas[1]
    assert eta is not None
    # Set two seconds after the first run, and the second run not before it.
    assert eta.timestamp() - times[0] >= 2.0, (times, etas)
    assert times[1] >= eta.timestamp(), (times, etas)


async def test_retries_exhausted_raise_the_original_error(make_app: MakeApp) -> None:
    app = make_app("exhausted")
    runs: list[int] = []

    @app.task(name="c.always", autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0)
    async def always() -> None:
        runs.append(1)
        raise KeyError("still missing")

    @app.task(name="c.asks", bind=True, max_retries=1, default_retry_delay=0)
    async def asks(self: Task[Any, Any]) -> None:
        raise self.retry()

    async with app, app.worker():
        with pytest.raises(KeyError, match="still missing"):
            await (await always.delay()).get(timeout=TIMEOUT)
        with pytest.raises(MaxRetriesExceededError, match=r"Can't retry c.asks\["):
            await (await asks.delay()).get(timeout=TIMEOUT)
    assert len(runs) == 3  # the first run and two retries


async def test_a_long_retry_waits_in_the_broker_not_in_the_worker(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("long-retry")

    @app.task(name="c.tomorrow", bind=True)
    async def tomorrow(self: Task[Any, Any]) -> None:
        raise self.retry(countdown=7200)

    bucket = f"{DELAY_PREFIX}{delay_bucket_ms(7200 * 1000 - 5000)}"
    async with app:
        async with app.worker():
            result = await tomorrow.delay()

            async def retried() -> bool:
                return await result.status() is State.RETRY

            await eventually(retried)
            await eventually(lambda: app.transport.inspect_queue(bucket), timeout=5)
        # The worker stopped: nothing came back to the queue, the attempt waits in its bucket.
        state = await app.transport.inspect_queue(queue_name)
        waiting = await app.transport.inspect_queue(bucket)
        assert state is not None and state.messages == 0
        assert waiting is not None and waiting.messages == 1
        await app.transport.purge_queue(bucket)


async def test_soft_limit_caught_inside_the_task(make_app: MakeApp) -> None:
    app = make_app("soft")

    @app.task(name="c.soft", soft_time_limit=0.1, time_limit=5)
    async def soft() -> str:
        try:
            await asyncio.sleep(5)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "slept"

    @app.task(name="c.soft_uncaught")
    async def uncaught() -> None:
        await asyncio.sleep(5)

    async with app, app.worker():
        assert await (await soft.delay()).get(timeout=TIMEOUT) == "cleaned up"
        # Per call, as Celery's soft_time_limit option.
        result = await uncaught.apply_async(soft_time_limit=0.1)
        with pytest.raises(SoftTimeLimitExceeded):
            await result.get(timeout=TIMEOUT)


async def test_hard_limits_of_async_and_sync_tasks(make_app: MakeApp) -> None:
    app = make_app("hard")
    finished = anyio.Event()

    @app.task(name="c.async_slow", time_limit=0.2)
    async def async_slow() -> None:
        await asyncio.sleep(5)

    @app.task(name="c.sync_slow")
    def sync_slow(seconds: float) -> str:
        time.sleep(seconds)
        return "late"

    @app.task(name="c.quick")
    def quick() -> str:
        return "quick"

    async with app, app.worker(concurrency=2):
        with pytest.raises(TimeLimitExceeded, match="c.async_slow"):
            await (await async_slow.delay()).get(timeout=TIMEOUT)
        late = await sync_slow.apply_async((1.0,), time_limit=0.2)
        with pytest.raises(TimeLimitExceeded, match="c.sync_slow"):
            await late.get(timeout=TIMEOUT)
        # The worker stays healthy: other tasks run, the late result is dropped.
        assert await (await quick.delay()).get(timeout=TIMEOUT) == "quick"
        finished.set()


async def test_an_expired_task_says_when_it_expired(make_app: MakeApp) -> None:
    app = make_app("expiry")
    runs: list[int] = []

    @app.task(name="c.record")
    async def record(x: int) -> int:
        runs.append(x)
        return x

    async with app:
        past = utc_now() - timedelta(seconds=1)
        stale = await record.apply_async((1,), expires=past)
        # Expires before its countdown ends: dropped when it comes due, the caller told.
        delayed = await record.apply_async((2,), countdown=0.3, expires=0.1)
        async with app.worker():
            with pytest.raises(TaskExpiredError, match=re.escape(f"expired at {past.isoformat()}")):
                await stale.get(timeout=TIMEOUT)
            with pytest.raises(TaskExpiredError, match="expired at"):
                await delayed.get(timeout=TIMEOUT)
            assert await (await record.delay(3)).get(timeout=TIMEOUT) == 3
    assert runs == [3]


async def test_acks_late_false_acks_before_the_task_runs(
    make_app: MakeApp, queue_name: str
) -> None:
    app = make_app("acks")
    started = anyio.Event()

    @app.task(name="c.early", acks_late=False)
    async def early() -> None:
        started.set()
        await asyncio.sleep(30)

    @app.task(name="c.late")
    async def late() -> None:
        started.set()
        await asyncio.sleep(30)

    async with app:
        for task, left in ((early, 0), (late, 1)):
            started = anyio.Event()
            worker = app.worker(shutdown_timeout=0.1)
            await worker.start()
            await task.apply_async(ignore_result=True)
            await started.wait()
            await worker.stop()  # cancels the running task
            state = await app.transport.inspect_queue(queue_name)
            assert state is not None and state.messages == left, task.name
            await app.transport.purge_queue(queue_name)


async def test_rate_limit_spaces_the_tasks_of_a_worker(make_app: MakeApp) -> None:
    app = make_app("rate")
    starts: list[float] = []

    @app.task(name="c.limited", rate_limit="10/s")
    async def limited() -> None:
        starts.append(time.monotonic())

    async with app, app.worker():
        results = [await limited.delay() for _ in range(20)]
        for result in results:
            await result.get(timeout=TIMEOUT)
    # A second's burst (10), then 10 per second.
    assert starts[-1] - starts[0] >= 0.9
