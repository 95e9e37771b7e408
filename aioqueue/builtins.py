"""Celery's built-in tasks ``celery.map``, ``celery.starmap`` and ``celery.chunks``.

Every app registers them, so ``task.map(...)``/``task.starmap(...)`` from aioqueue or
Celery clients run on aioqueue workers. Each calls the named task in this process, once
per item, in order (as Celery does), and returns the list of results.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from .exceptions import UnknownTaskError
from .task import Task

__all__ = ("builtin_tasks",)

Builtin = Callable[..., Coroutine[Any, Any, list[Any]]]


def builtin_tasks(tasks: Mapping[str, Task[Any, Any]]) -> dict[str, Builtin]:
    """The built-in task functions by name, calling tasks from ``tasks``."""

    def resolve(signature: dict[str, Any]) -> tuple[Task[Any, Any], list[Any], dict[str, Any]]:
        name = signature.get("task")
        task = tasks.get(name) if isinstance(name, str) else None
        if task is None:
            raise UnknownTaskError(f"task {name!r} is not registered on this worker")
        return task, list(signature.get("args") or []), dict(signature.get("kwargs") or {})

    async def map_(task: dict[str, Any], it: list[Any]) -> list[Any]:
        target, args, kwargs = resolve(task)
        return [await target(item, *args, **kwargs) for item in it]

    async def starmap(task: dict[str, Any], it: list[list[Any]]) -> list[Any]:
        target, args, kwargs = resolve(task)
        return [await target(*item, *args, **kwargs) for item in it]

    async def chunks(task: dict[str, Any], it: list[list[Any]], n: int) -> list[list[Any]]:
        batches = [it[i : i + n] for i in range(0, len(it), n)]
        return [await starmap(task, batch) for batch in batches]

    return {"celery.map": map_, "celery.starmap": starmap, "celery.chunks": chunks}
