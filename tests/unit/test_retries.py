"""Retry countdowns, rate-limit buckets (pure), and the soft/hard limits of async tasks."""

from __future__ import annotations

import asyncio

import pytest

from aioqueue.exceptions import ConfigurationError, SoftTimeLimitExceeded, TimeLimitExceeded
from aioqueue.ratelimit import TokenBucket, parse_rate
from aioqueue.retries import RetryPolicy
from aioqueue.worker.timeouts import run_with_limits


def _top(a: float, b: float) -> float:
    return b  # the largest a jittered countdown can be


def _bottom(a: float, b: float) -> float:
    return a


@pytest.mark.parametrize(
    ("policy", "retries", "countdown"),
    [
        (RetryPolicy(), 0, 180.0),  # Celery's default_retry_delay
        (RetryPolicy(default_retry_delay=3), 7, 3.0),
        (RetryPolicy(retry_backoff=True, retry_jitter=False), 0, 1.0),
        (RetryPolicy(retry_backoff=True, retry_jitter=False), 3, 8.0),
        (RetryPolicy(retry_backoff=2, retry_jitter=False), 3, 16.0),
        (RetryPolicy(retry_backoff=True, retry_jitter=False), 20, 600.0),  # capped
        (RetryPolicy(retry_backoff=True, retry_backoff_max=5, retry_jitter=False), 9, 5.0),
        (RetryPolicy(retry_backoff=True, retry_jitter=False), 10_000, 600.0),  # no overflow
    ],
)
def test_countdown(policy: RetryPolicy, retries: int, countdown: float) -> None:
    assert policy.countdown(retries) == countdown


@pytest.mark.parametrize("retries", [0, 1, 5, 12, 40])
def test_jitter_stays_within_zero_and_the_backoff(retries: int) -> None:
    policy = RetryPolicy(retry_backoff=True, retry_backoff_max=100)
    plain = RetryPolicy(retry_backoff=True, retry_backoff_max=100, retry_jitter=False)
    assert policy.countdown(retries, _top) == plain.countdown(retries)
    assert policy.countdown(retries, _bottom) == 0.0
    for _ in range(200):
        assert 0.0 <= policy.countdown(retries) <= plain.countdown(retries)


@pytest.mark.parametrize(
    ("max_retries", "override", "retries", "left"),
    [
        (3, None, 2, True),
        (3, None, 3, False),
        (None, None, 10**6, True),
        (3, 5, 4, True),
        (0, None, 0, False),
    ],
)
def test_retries_left(
    max_retries: int | None, override: int | None, retries: int, left: bool
) -> None:
    assert RetryPolicy(max_retries=max_retries).retries_left(retries, override) is left


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_retries": -1}, "max_retries must be >= 0"),
        ({"default_retry_delay": -1}, "default_retry_delay must be >= 0"),
        ({"autoretry_for": (IOError, "x")}, "autoretry_for takes exception types"),
    ],
)
def test_bad_policies(options: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        RetryPolicy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("10/s", 10.0), ("120/m", 2.0), ("36/h", 0.01), ("5", 5.0), (2.5, 2.5), (" 3 / s ", 3.0)],
)
def test_parse_rate(rate: str | float, per_second: float) -> None:
    assert parse_rate(rate) == pytest.approx(per_second)


@pytest.mark.parametrize("rate", ["fast", "10/d", "0/s", -1, "/s"])
def test_parse_rate_refuses(rate: str | float) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        parse_rate(rate)


def test_token_bucket_allows_a_second_of_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0)
    waits = [bucket.take(0.0) for _ in range(5)]
    assert waits == [0.0, 0.0, pytest.approx(0.5), pytest.approx(1.0), pytest.approx(1.5)]
    # Later, tokens are back, up to the capacity only.
    bucket = TokenBucket(rate=2.0)
    bucket.take(0.0)
    assert bucket.wait(100.0) == 0.0
    assert bucket.tokens == 2.0


def test_token_bucket_below_one_per_second_holds_one_token() -> None:
    bucket = TokenBucket(rate=0.5)
    assert bucket.take(0.0) == 0.0
    assert bucket.wait(0.0) == pytest.approx(2.0)  # wait takes nothing
    assert bucket.wait(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0) == 0.0


async def _sleeper(cleanup: list[str], seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        cleanup.append("soft")
        await asyncio.sleep(0.01)  # it may still await things while it cleans up
        return "cleaned"
    return "slept"


@pytest.mark.anyio
async def test_soft_limit_is_raised_inside_and_can_be_caught() -> None:
    cleanup: list[str] = []
    result = await run_with_limits(_sleeper(cleanup, 5), soft=0.05, hard=2, what="t")
    assert result == "cleaned" and cleanup == ["soft"]
    # The task was not left cancelled.
    await asyncio.sleep(0)


@pytest.mark.anyio
async def test_soft_limit_uncaught_fails_with_it() -> None:
    with pytest.raises(SoftTimeLimitExceeded, match="t exceeded its soft time limit of 0.05 s"):
        await run_with_limits(asyncio.sleep(5), soft=0.05, hard=None, what="t")


@pytest.mark.anyio
async def test_hard_limit_cancels_even_a_task_that_catches_the_soft_one() -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(5)
            except SoftTimeLimitExceeded:
                continue

    with pytest.raises(TimeLimitExceeded, match="t exceeded its time limit of 0.2 s"):
        await run_with_limits(stubborn(), soft=0.05, hard=0.2, what="t")


@pytest.mark.anyio
async def test_a_task_within_its_limits_is_untouched_and_outer_cancellation_passes() -> None:
    assert await run_with_limits(_sleeper([], 0.01), soft=1, hard=2, what="t") == "slept"
    task = asyncio.ensure_future(run_with_limits(asyncio.sleep(5), soft=1, hard=2, what="t"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.anyio
async def test_the_tasks_own_timeout_error_is_not_a_time_limit() -> None:
    async def own() -> None:
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine"):
        await run_with_limits(own(), soft=None, hard=5, what="t")
