"""The aioqueue side of the interoperability tests: the twin of ``celery_app``.

Its worker runs as ``aioqueue worker -A tests.interop.aioqueue_app``; its broker comes
from ``AIOQUEUE_BROKER_URL`` and its queues from the same variables as the Celery app's
(``INTEROP_AIOQUEUE_QUEUE`` its own, ``INTEROP_CELERY_QUEUE`` where the Celery tasks,
``ci.*``, are routed), so either side can send the other's tasks by name alone.
``aq.note`` leaves what it was given in ``INTEROP_NOTES``; ``INTEROP_ROUTES=0`` leaves
the routes out. :func:`client` makes the
tests' own aioqueue client, which also knows the Celery tasks (stubs with their
parameters, as aioqueue code calling a Celery worker would declare them).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aioqueue import App, current_request

CELERY_QUEUE = os.environ.get("INTEROP_CELERY_QUEUE", "interop.celery")
AIOQUEUE_QUEUE = os.environ.get("INTEROP_AIOQUEUE_QUEUE", "interop.aioqueue")
NOTES = Path(os.environ.get("INTEROP_NOTES", "."))


def make_app(
    name: str,
    broker: str | None,
    celery_queue: str,
    aioqueue_queue: str,
    *,
    routes: bool = True,
    **settings: Any,
) -> App:
    """The aioqueue app with its tasks (``aq.*``), routed as the module docstring says.

    :param routes: without them, a task goes to ``aioqueue_queue`` unless its call (or
        its step in a workflow) names a queue.
    :param settings: more :class:`~aioqueue.App` arguments.
    """
    task_routes = {"ci.*": {"queue": celery_queue}, "aq.*": {"queue": aioqueue_queue}}
    application = App(
        name,
        broker=broker,
        default_queue=aioqueue_queue,
        task_routes=task_routes if routes else None,
        **settings,
    )
    _tasks(application)
    return application


def client(
    broker: str, celery_queue: str, aioqueue_queue: str, *, routes: bool = True, **settings: Any
) -> App:
    """An aioqueue client: :func:`make_app` plus stubs of the Celery tasks (``ci.*``)."""
    application = make_app(
        "interop_client", broker, celery_queue, aioqueue_queue, routes=routes, **settings
    )

    @application.task(name="ci.add")
    def add(x: int, y: int) -> int:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.mul")
    def mul(x: int, y: int) -> int:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.fail")
    def fail(text: str) -> None:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.missing")
    def missing(*keys: Any) -> None:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.append")
    def append(trail: list[str], item: str) -> list[str]:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.request")
    def request() -> dict[str, Any]:
        raise NotImplementedError("Celery workers run this task")

    @application.task(name="ci.note")
    def note(value: Any, *, key: str) -> Any:
        raise NotImplementedError("Celery workers run this task")

    return application


def _tasks(application: App) -> None:
    @application.task(name="aq.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @application.task(name="aq.mul")
    def mul(x: int, y: int) -> int:  # a sync task: runs in the worker's threads
        return x * y

    @application.task(name="aq.fail")
    async def fail(text: str) -> None:
        raise ValueError(text)

    @application.task(name="aq.missing")
    async def missing(*keys: Any) -> None:
        raise KeyError(*keys)

    @application.task(name="aq.append")
    async def append(trail: list[str], item: str) -> list[str]:
        """``trail`` with ``"aq:<item>"`` added: shows which side ran each step."""
        return [*trail, f"aq:{item}"]

    @application.task(name="aq.request")
    async def request() -> dict[str, Any]:
        """What this task was sent with, as the aioqueue worker read it."""
        req = current_request()
        return {
            "id": req.id,
            "root_id": req.root_id,
            "parent_id": req.parent_id,
            "group": req.group,
            "group_index": req.group_index,
            "eta": req.eta.isoformat() if req.eta else None,
            "expires": req.expires.isoformat() if req.expires else None,
            "retries": req.retries,
            "priority": req.priority,
            "tenant": req.headers.get("x-tenant"),
            "ran_at": datetime.now(UTC).isoformat(),
        }

    @application.task(name="aq.note")
    async def note(value: Any, *, key: str) -> Any:
        """Leave ``value`` in ``<INTEROP_NOTES>/<key>.<n>.json``; return it."""
        path = NOTES / f"{key}.{uuid.uuid4().hex}"
        path.write_text(json.dumps(value))
        path.rename(path.with_name(path.name + ".json"))  # whole when the tests see it
        return value


#: What ``aioqueue worker -A tests.interop.aioqueue_app`` runs.
app = make_app(
    "interop_aioqueue",
    None,
    CELERY_QUEUE,
    AIOQUEUE_QUEUE,
    routes=os.environ.get("INTEROP_ROUTES", "1") == "1",
)
