"""The task registry: tasks by name, and which exception types may travel back.

The worker looks tasks up here and never needs the app: :class:`Registry` is what
``App`` fills with ``@app.task`` and what ``App.worker()`` hands to the worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .exceptions import ConfigurationError, UnknownTaskError
from .result import DEFAULT_EXCEPTION_MODULES
from .task import Task

__all__ = ("Registry",)


class Registry(Mapping[str, Task[Any, Any]]):
    """Registered tasks by name (a read-only mapping), plus the exception allow-list.

    :param exception_modules: modules whose exception types a failed task raises again
        on the caller as themselves; builtins, asyncio and aioqueue's own always are,
        as are the modules that define the registered tasks.
    """

    def __init__(self, exception_modules: Iterable[str] = ()) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._exception_modules = frozenset(exception_modules) | DEFAULT_EXCEPTION_MODULES

    def __getitem__(self, name: str) -> Task[Any, Any]:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task[Any, Any]) -> None:
        """Register ``task`` under its name.

        :raises ConfigurationError: another function is registered under that name.
        """
        existing = self._tasks.get(task.name)
        if existing is not None and existing.fn is not task.fn:
            raise ConfigurationError(f"a task named {task.name!r} is already registered")
        self._tasks[task.name] = task

    def lookup(self, name: str) -> Task[Any, Any]:
        """The task registered as ``name``.

        :raises UnknownTaskError: none is.
        """
        task = self._tasks.get(name)
        if task is None:
            raise UnknownTaskError(f"task {name!r} is not registered on this worker")
        return task

    def user_tasks(self) -> list[str]:
        """The registered names without Celery's built-ins (``celery.map``, ...), sorted."""
        return sorted(n for n in self._tasks if not n.startswith("celery."))

    def exception_modules(self) -> frozenset[str]:
        """Modules whose exception types are rebuilt on the caller (see the class doc)."""
        return self._exception_modules | {t.fn.__module__ for t in self._tasks.values()}
