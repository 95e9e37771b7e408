"""The Celery side of the interoperability tests: a Celery app whose worker the tests
start as a subprocess, and whose client they call from their own process.

It is configured by the environment, as a deployed Celery app would be:
``INTEROP_BROKER`` (the broker URL), ``INTEROP_CELERY_QUEUE`` (the queue its tasks are
routed to and its worker consumes), ``INTEROP_AIOQUEUE_QUEUE`` (where the aioqueue tasks,
``aq.*``, are routed: Celery clients and workers send them there by name) and
``INTEROP_NOTES`` (a folder where ``ci.note`` leaves what it was given);
``INTEROP_ROUTES=0`` leaves the routes out. Results travel
over ``rpc://``, bodies are JSON. :func:`client` makes the tests' own Celery client, which
also knows the aioqueue tasks by name (stubs: Celery code calling them keeps its task
objects, ``.delay``, ``.s`` and ``.si`` included).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery

CELERY_QUEUE = os.environ.get("INTEROP_CELERY_QUEUE", "interop.celery")
AIOQUEUE_QUEUE = os.environ.get("INTEROP_AIOQUEUE_QUEUE", "interop.aioqueue")
NOTES = Path(os.environ.get("INTEROP_NOTES", "."))


def make_app(
    broker: str, celery_queue: str, aioqueue_queue: str, *, routes: bool = True, **conf: Any
) -> Celery:
    """The Celery app with its tasks (``ci.*``), routed as the module docstring says.

    :param routes: without them, a task goes to ``celery_queue`` unless its call (or
        its step in a workflow) names a queue.
    :param conf: more Celery settings (``result_backend=...``).
    """
    celery = Celery("interop_celery", broker=broker, backend="rpc://")
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=celery_queue,
        task_routes=_routes(celery_queue, aioqueue_queue) if routes else None,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        **conf,
    )
    _tasks(celery)
    return celery


def _routes(celery_queue: str, aioqueue_queue: str) -> dict[str, Any]:
    return {"ci.*": {"queue": celery_queue}, "aq.*": {"queue": aioqueue_queue}}


def client(
    broker: str, celery_queue: str, aioqueue_queue: str, *, routes: bool = True, **conf: Any
) -> Celery:
    """A Celery client: :func:`make_app` plus stubs of the aioqueue tasks (``aq.*``)."""
    celery = make_app(broker, celery_queue, aioqueue_queue, routes=routes, **conf)
    for name in ("add", "mul", "fail", "missing", "append", "request", "note"):
        celery.task(name=f"aq.{name}", shared=False)(_served_by_aioqueue)
    return celery


def close(celery: Celery) -> None:
    """Close a client: its ``rpc://`` result consumer (which ``Celery.close`` leaves
    open), then its connections."""
    consumer = getattr(celery.backend, "result_consumer", None)
    if consumer is not None and consumer._consumer is not None:
        consumer.stop()
    celery.close()


def _served_by_aioqueue(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedError("aioqueue workers run this task")


def _tasks(celery: Celery) -> None:
    @celery.task(name="ci.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @celery.task(name="ci.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @celery.task(name="ci.fail", shared=False)
    def fail(text: str) -> None:
        raise ValueError(text)

    @celery.task(name="ci.missing", shared=False)
    def missing(*keys: Any) -> None:
        raise KeyError(*keys)

    @celery.task(name="ci.append", shared=False)
    def append(trail: list[str], item: str) -> list[str]:
        """``trail`` with ``"ci:<item>"`` added: shows which side ran each step."""
        return [*trail, f"ci:{item}"]

    @celery.task(name="ci.request", bind=True, shared=False)
    def request(self: Any) -> dict[str, Any]:
        """What this task was sent with, as the Celery worker read it."""
        req = self.request
        return {
            "id": req.id,
            "root_id": req.root_id,
            "parent_id": req.parent_id,
            "group": req.group,
            "group_index": req.group_index,
            "eta": req.eta,
            "expires": req.expires,
            "retries": req.retries,
            "priority": (req.delivery_info or {}).get("priority"),
            "tenant": getattr(req, "x-tenant", None),
            "ran_at": datetime.now(UTC).isoformat(),
        }

    @celery.task(name="ci.note", shared=False)
    def note(value: Any, *, key: str) -> Any:
        """Leave ``value`` in ``<INTEROP_NOTES>/<key>.<n>.json``; return it.

        ``key`` is keyword-only: Celery runs an errback taking more than one positional
        parameter inside the worker, and publishes those taking one (the failed task's
        id).
        """
        path = NOTES / f"{key}.{uuid.uuid4().hex}"
        path.write_text(json.dumps(value))
        path.rename(path.with_name(path.name + ".json"))  # whole when the tests see it
        return value


#: What ``celery -A tests.interop.celery_app worker`` runs.
app = make_app(
    os.environ.get("INTEROP_BROKER", "memory://"),
    CELERY_QUEUE,
    AIOQUEUE_QUEUE,
    routes=os.environ.get("INTEROP_ROUTES", "1") == "1",
)
