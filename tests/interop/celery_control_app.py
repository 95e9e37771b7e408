"""A tiny Celery app for the remote-control tests; its broker is ``CELERY_TEST_BROKER``."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("celery_control_app", broker=os.environ.get("CELERY_TEST_BROKER", "memory://"))
app.conf.update(task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False)


@app.task(name="cc.add")
def add(x: int, y: int) -> int:
    return x + y
