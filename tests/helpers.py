"""Small helpers shared by the test suites."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

__all__ = ("eventually",)


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 20) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds (only against hangs).

    For state that has no event to wait on (a counter, a result's status, files).
    """
    with anyio.fail_after(timeout):
        while True:
            outcome = check()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await anyio.sleep(0.01)
