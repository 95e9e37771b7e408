"""The :class:`ResultBackend` protocol: where task states arrive for the caller.

``rpc.py`` implements it over a per-client reply queue, ``disabled.py`` for an app
without results. An :class:`~aioqueue.AsyncResult` reads through it.
"""

from __future__ import annotations

from typing import Protocol

from ..message import ResultMessage

__all__ = ("ResultBackend",)


class ResultBackend(Protocol):
    """Where task states arrive for the caller."""

    @property
    def reply_to(self) -> str | None:
        """What task messages carry as ``reply_to`` (``None``: no results are sent)."""
        ...

    async def start(self) -> None:
        """Get ready to receive states (idempotent; again after :meth:`aclose`)."""

    async def aclose(self) -> None:
        """Stop receiving; pending waiters fail with ``BrokerConnectionError``."""

    def state(self, task_id: str) -> ResultMessage | None:
        """The latest state seen for ``task_id``, without waiting."""
        ...

    async def wait(self, task_id: str, timeout: float | None) -> ResultMessage:
        """Wait for the final state of ``task_id``.

        :raises ResultTimeoutError: no final state within ``timeout`` seconds.
        """
        ...

    def forget(self, task_id: str) -> None:
        """Drop what is kept for ``task_id``."""

    def rebuild(self, message: ResultMessage) -> BaseException:
        """The exception to raise for a FAILURE or REVOKED state."""
        ...
