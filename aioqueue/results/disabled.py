"""The result backend of an app created with ``result_backend=None``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..exceptions import ConfigurationError
from ..message import ResultMessage
from ..result import rebuild_exception

__all__ = ("DisabledBackend",)


class DisabledBackend:
    """Knows no states; waiting for a result is a configuration error."""

    def __init__(self, exception_modules: Callable[[], Iterable[str]]) -> None:
        self._exception_modules = exception_modules

    @property
    def reply_to(self) -> None:
        """Task messages name no reply queue: nobody receives their results."""
        return None

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def state(self, task_id: str) -> ResultMessage | None:
        return None

    async def wait(self, task_id: str, timeout: float | None) -> ResultMessage:
        raise ConfigurationError(
            f"cannot wait for task {task_id}: the app has no result backend "
            "(create it with result_backend='rpc://')"
        )

    def forget(self, task_id: str) -> None:
        pass

    def rebuild(self, message: ResultMessage) -> BaseException:
        return rebuild_exception(message, self._exception_modules())
