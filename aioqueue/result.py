"""Promises for task outcomes: :class:`AsyncResult` and :class:`GroupResult`.

An :class:`AsyncResult` is awaitable: ``await result`` is ``await result.get()``. It
reads states through a ``ResultBackend`` (``results/base.py``; ``results/rpc.py`` reads
the reply queue).
A remote failure is raised again as its own exception type when that type is allowed
(:func:`rebuild_exception`), else as :class:`~aioqueue.exceptions.TaskError`; either way
the remote traceback is attached as a note.
"""

from __future__ import annotations

import asyncio
import builtins
import sys
from collections.abc import Generator, Iterable
from typing import Any, Generic, Protocol, TypeVar, cast

from .exceptions import (
    AioQueueError,
    ConfigurationError,
    MaxRetriesExceededError,
    ResultNotSentError,
    ResultTimeoutError,
    SoftTimeLimitExceeded,
    TaskError,
    TaskExpiredError,
    TaskRevokedError,
    TimeLimitExceeded,
    UnknownTaskError,
)
from .message import ResultMessage, State
from .results.base import ResultBackend

__all__ = (
    "DEFAULT_EXCEPTION_MODULES",
    "AsyncResult",
    "GroupResult",
    "Revoker",
    "attach_control",
    "rebuild_exception",
)

R = TypeVar("R")

# Exception types from these modules are rebuilt on the caller by default.
DEFAULT_EXCEPTION_MODULES = frozenset({"builtins", "asyncio.exceptions", "aioqueue.exceptions"})
# Where a revocation's TaskRevokedError comes from: Celery's module, which aioqueue's
# workers name too, or aioqueue's own (older aioqueue workers).
_REVOCATION_MODULES = frozenset({"celery.exceptions", "aioqueue.exceptions"})
# What a Celery worker's own failures are on an aioqueue caller: the same errors under
# aioqueue's names, so that one ``except`` serves both kinds of worker.
_CELERY_ERRORS: dict[str, type[AioQueueError]] = {
    "NotRegistered": UnknownTaskError,
    "MaxRetriesExceededError": MaxRetriesExceededError,
    "TimeLimitExceeded": TimeLimitExceeded,
    "SoftTimeLimitExceeded": SoftTimeLimitExceeded,
}


class Revoker(Protocol):
    """What a result revokes its task through: ``app.control``
    (:class:`aioqueue.control.Control`)."""

    async def revoke(self, task_id: str | Iterable[str], *, terminate: bool = False) -> object:
        """Revoke ``task_id`` on every worker (see ``Control.revoke``)."""
        ...


class AsyncResult(Generic[R]):
    """The promise of a task's result.

    :param task_id: the task's id.
    :param backend: where its states arrive.
    :param parent: the result of the previous step, for chains.
    :param control: what :meth:`revoke` goes through (the app's, for the results the
        app returns).
    :param sent: ``False`` for a step whose result no worker sends (a chain's earlier
        step, sent without ``intermediate_results``): :meth:`get` and :meth:`status`
        raise :class:`~aioqueue.exceptions.ResultNotSentError` instead of waiting.
    """

    __slots__ = ("_backend", "_control", "_final", "_sent", "id", "parent")

    def __init__(
        self,
        task_id: str,
        backend: ResultBackend,
        *,
        parent: AsyncResult[Any] | None = None,
        control: Revoker | None = None,
        sent: bool = True,
    ) -> None:
        self.id = task_id
        self.parent = parent
        self._backend = backend
        self._control = control
        self._sent = sent
        self._final: ResultMessage | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __await__(self) -> Generator[Any, None, R]:
        return self.get().__await__()

    async def get(self, timeout: float | None = None, *, propagate: bool = True) -> R:
        """Wait for the task to finish and return its result.

        :param timeout: seconds to wait; ``None`` waits forever.
        :param propagate: raise the task's exception on failure (else return it).
        :raises ResultTimeoutError: (a ``TimeoutError``) with the task id, on timeout.
        :raises TaskRevokedError: the task expired or was revoked.
        :raises ResultNotSentError: no worker sends this result (see ``sent``).
        :raises Exception: the task's own exception, or ``TaskError``.
        """
        if self._final is None:
            if not self._sent:
                raise ResultNotSentError(self.id)
            self._final = await self._backend.wait(self.id, timeout)
            self._backend.forget(self.id)
            self._claim_parents()
        final = self._final
        if final.status is State.SUCCESS:
            return cast(R, final.result)
        exc = self._backend.rebuild(final)
        if propagate:
            raise exc
        return cast(R, exc)

    def _claim_parents(self) -> None:
        # The steps before this one reported first: move their states from the backend
        # into their promises, so the backend does not keep what nobody may ask for.
        parent = self.parent
        while parent is not None:
            seen = self._backend.state(parent.id) if parent._final is None else None
            if seen is not None and seen.status.ready:
                parent._final = seen
                self._backend.forget(parent.id)
            parent = parent.parent

    async def status(self) -> State:
        """The latest known state: PENDING until the worker reports one.

        :raises ResultNotSentError: no worker sends this result (see ``sent``).
        """
        if self._final is not None:
            return self._final.status
        if not self._sent:
            raise ResultNotSentError(self.id)
        seen = self._backend.state(self.id)
        return seen.status if seen is not None else State.PENDING

    async def ready(self) -> bool:
        """True once the task has finished (success, failure or revoked)."""
        return (await self.status()).ready

    async def successful(self) -> bool:
        """True once the task has finished successfully."""
        return await self.status() is State.SUCCESS

    async def revoke(self, *, terminate: bool = False) -> None:
        """Revoke the task on every worker, now and for the app's ``revoke_expires``: if
        it has not run yet it will not, and :meth:`get` raises
        :class:`~aioqueue.exceptions.TaskRevokedError`.

        This revokes this task only, as Celery does; for a chain's promise (its last
        step) the steps before it still run. To stop a whole workflow, revoke its first
        step: ``await app.control.revoke(first.id)``.

        :param terminate: also cancel it where it runs now (see ``Control.revoke``).
        :raises ConfigurationError: this result was not made by an app.
        :raises BrokerError: the revocation could not be recorded or sent.
        """
        if self._control is None:
            raise ConfigurationError(
                f"{self!r} cannot be revoked: it was made without an app; "
                "use app.control.revoke(task_id)"
            )
        await self._control.revoke(self._revoked_ids(), terminate=terminate)

    def _revoked_ids(self) -> list[str]:
        return [self.id]


class GroupResult(AsyncResult[list[R]]):
    """The promise of a group: one result per member, in member order.

    ``await result.get()`` waits for every member (concurrently) and returns the list of
    their results. If members failed, the first failure in member order is raised by
    default; ``return_exceptions=True`` returns the exceptions in place instead.

    :param group_id: the group's id.
    :param results: the members' promises.
    """

    __slots__ = ("results",)

    def __init__(
        self,
        group_id: str,
        results: list[AsyncResult[Any]],
        backend: ResultBackend,
        *,
        parent: AsyncResult[Any] | None = None,
        control: Revoker | None = None,
    ) -> None:
        super().__init__(group_id, backend, parent=parent, control=control)
        self.results = results

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} ({len(self.results)} members)>"

    def __len__(self) -> int:
        return len(self.results)

    async def get(
        self,
        timeout: float | None = None,
        *,
        propagate: bool = True,
        return_exceptions: bool = False,
    ) -> list[R]:
        """Wait for every member; see the class docstring for failures.

        :raises ResultTimeoutError: not every member finished within ``timeout``.
        """
        try:
            async with asyncio.timeout(timeout):
                values = await asyncio.gather(*(r.get(propagate=False) for r in self.results))
        except TimeoutError:
            raise ResultTimeoutError(self.id, timeout or 0.0) from None
        if propagate and not return_exceptions:
            for value in values:
                if isinstance(value, BaseException):
                    raise value
        return values

    def _revoked_ids(self) -> list[str]:
        # The group's id stops its members on aioqueue workers; Celery's workers look at
        # task ids alone, so the members' are sent too.
        return [self.id, *(r.id for r in self.results)]

    async def completed_count(self) -> int:
        """How many members have finished (successfully or not)."""
        return sum([await r.ready() for r in self.results])

    async def status(self) -> State:
        """SUCCESS when every member succeeded, FAILURE when all finished and one failed,
        else PENDING."""
        states = [await r.status() for r in self.results]
        if all(s is State.SUCCESS for s in states):
            return State.SUCCESS
        if all(s.ready for s in states):
            return State.FAILURE
        return State.PENDING


def attach_control(result: AsyncResult[Any], control: Revoker) -> None:
    """Let ``result``, and the promises before it and inside it, revoke through
    ``control``."""
    todo: list[AsyncResult[Any]] = [result]
    while todo:
        current = todo.pop()
        current._control = control
        if current.parent is not None:
            todo.append(current.parent)
        if isinstance(current, GroupResult):
            todo.extend(current.results)


def rebuild_exception(message: ResultMessage, allowed_modules: Iterable[str]) -> BaseException:
    """The exception a FAILURE (or REVOKED) result stands for.

    The remote type is used only when its module is in ``allowed_modules`` and is already
    imported (nothing is imported on behalf of a message), it subclasses ``Exception``,
    and it can be built from ``exc_message``. A Celery worker's own errors
    (``celery.exceptions``: ``NotRegistered``, ``MaxRetriesExceededError``, the time
    limits) are raised as aioqueue's (:class:`~aioqueue.UnknownTaskError`, ...).
    Otherwise a :class:`TaskError` carries the type name, message and remote traceback.
    """
    info = message.result if isinstance(message.result, dict) else {}
    exc_type = str(info.get("exc_type", "Exception"))
    exc_module = info.get("exc_module")
    if message.status is State.REVOKED or (
        # A revocation passed on as a FAILURE (a chord whose header member was revoked).
        exc_type == "TaskRevokedError" and exc_module in _REVOCATION_MODULES
    ):
        return _revoked(message)
    raw_args = info.get("exc_message", [])
    args = list(raw_args) if isinstance(raw_args, list | tuple) else [raw_args]
    exc: BaseException | None = None
    allowed = set(allowed_modules)
    if exc_module == "celery.exceptions" and exc_type in _CELERY_ERRORS:
        exc = _from_celery(exc_type, args)
    elif exc_module in allowed:
        module = builtins if exc_module == "builtins" else sys.modules.get(str(exc_module))
        cls = getattr(module, exc_type, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                exc = cls(*args)
            except Exception:
                exc = None
    if exc is None:
        text = ", ".join(str(a) for a in args)
        exc = TaskError(exc_type, text, exc_module=exc_module, remote_traceback=message.traceback)
    if message.traceback:
        exc.add_note(f"Remote traceback (task {message.task_id}):\n{message.traceback}")
    return exc


def _from_celery(exc_type: str, args: list[Any]) -> AioQueueError:
    """aioqueue's twin of a Celery worker's own error, its text naming Celery's."""
    text = ", ".join(str(a) for a in args)
    if exc_type == "NotRegistered":
        text = f"task {text!r} is not registered on the worker"
    return _CELERY_ERRORS[exc_type](f"{text} (celery.exceptions.{exc_type})")


def _revoked(message: ResultMessage) -> TaskRevokedError:
    """Celery's REVOKED states read ``["revoked"]``, ``["terminated"]`` or
    ``["expired"]``; aioqueue's expired ones add the expiry time."""
    info = message.result if isinstance(message.result, dict) else {}
    reason = info.get("exc_message")
    words = [str(w) for w in reason] if isinstance(reason, list) else []
    if words[:1] == ["expired"]:
        when = f" at {words[1]}" if len(words) > 1 else ""
        return TaskExpiredError(f"task {message.task_id} expired{when}, not run")
    if words[:1] == ["terminated"]:
        return TaskRevokedError(f"task {message.task_id} was revoked and terminated while it ran")
    if words[:1] == ["revoked"]:
        return TaskRevokedError(f"task {message.task_id} was revoked")
    return TaskRevokedError(f"task {message.task_id} was revoked: {message.result}")
