"""The app of the cluster failover test, for its worker process and its client.

Tasks go to a quorum queue and results wait in a quorum reply queue
(``result_persistent=True``): what a deployment on a RabbitMQ cluster uses. The
module-level ``app`` (``-A tests.faults.cluster_app``) is configured from the
environment: ``AIOQUEUE_TEST_BROKER`` (the nodes), ``AIOQUEUE_TEST_QUEUE`` and
``AIOQUEUE_TEST_LOG`` (where every run of ``cluster.record`` appends a line, see
:func:`tests.faults.worker_app.log`).
"""

from __future__ import annotations

import os

from aioqueue import App, Queue
from tests.faults.worker_app import log


def create_app(broker: str, queue: str) -> App:
    app = App(
        "cluster",
        broker=broker,
        default_queue=queue,
        queues=[Queue(queue, queue_type="quorum")],
        result_persistent=True,
    )

    @app.task(name="cluster.record")
    async def record(i: int) -> int:
        log("record", i)
        return i

    return app


app = create_app(
    os.environ.get("AIOQUEUE_TEST_BROKER", "memory://"),
    os.environ.get("AIOQUEUE_TEST_QUEUE", "celery"),
)
