"""Revocations across worker processes and restarts, and from a real Celery client.

The workers are ``aioqueue worker`` subprocesses (``cluster``); Celery's client is
Celery itself (``celery.Celery(broker=...).control.revoke``), which sends the command to
the pidbox only: the aioqueue worker that receives it writes it to the store.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from aioqueue import TaskRevokedError
from aioqueue.control import revocation_key
from aioqueue.topology import REVOKED_STATE
from tests.faults.conftest import Cluster
from tests.helpers import eventually
from tests.processes import ONE_LOOP, TIMEOUT

pytestmark = [pytest.mark.anyio, pytest.mark.amqp, ONE_LOOP]

celery = pytest.importorskip("celery")


@pytest.fixture
def celery_client(amqp_url: str) -> Iterator[Any]:
    """A Celery client app on the test's vhost."""
    client = celery.Celery("revoker", broker=amqp_url)
    try:
        yield client
    finally:
        client.close()


async def _celery_revoke(client: Any, task_id: str, **options: Any) -> list[dict[str, Any]]:
    """``client.control.revoke`` (blocking) in a thread."""

    def attempt() -> list[dict[str, Any]]:
        with client.connection_for_write() as connection:
            return client.control.revoke(task_id, connection=connection, **options) or []

    def revoke() -> list[dict[str, Any]]:
        try:
            return attempt()
        except ConnectionError:
            # Celery does not retry a broadcast: a connection the broker reset as it
            # opened (seen in CI) gets one more try, on a new one. A revoke is idempotent.
            return attempt()

    return await anyio.to_thread.run_sync(revoke)


async def test_a_revocation_made_while_no_worker_runs_is_honoured_later(
    cluster: Cluster,
) -> None:
    add = cluster.task("add")
    revoked = await add.delay(1, 2)
    kept = await add.delay(3, 4)
    await cluster.client.control.revoke(revoked.id)
    await cluster.start()
    with pytest.raises(TaskRevokedError):
        await revoked.get(timeout=TIMEOUT)
    assert await kept.get(timeout=TIMEOUT) == 7
    assert cluster.counts("add") == {"3,4": 1}


async def test_a_celery_clients_revoke_survives_a_worker_restart(
    cluster: Cluster, celery_client: Any
) -> None:
    first = await cluster.start()
    add = cluster.task("add")
    # Waits in the broker's delay queues meanwhile: no worker holds it.
    delayed = await add.apply_async((1, 2), countdown=4)
    replies = await _celery_revoke(celery_client, delayed.id, reply=True, timeout=TIMEOUT, limit=1)
    (answer,) = (next(iter(r.values())) for r in replies)
    assert answer == {"ok": f"tasks {{'{delayed.id}'}} flagged as revoked"}
    # Replied once it was stored, for workers to come.
    stored = await cluster.client.transport.state_read(REVOKED_STATE)
    assert revocation_key([delayed.id]) in stored
    await first.kill()
    await cluster.start()
    with pytest.raises(TaskRevokedError):
        await delayed.get(timeout=TIMEOUT)
    assert await (await add.delay(5, 5)).get(timeout=TIMEOUT) == 10
    assert cluster.counts("add") == {"5,5": 1}


async def test_a_celery_client_terminates_a_running_task(
    cluster: Cluster, celery_client: Any
) -> None:
    await cluster.start()
    running = await cluster.task("slow_add").delay(1, 1, 60)
    await eventually(lambda: bool(cluster.runs("start")))
    await _celery_revoke(celery_client, running.id, terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        await running.get(timeout=TIMEOUT)
    assert cluster.runs("done") == []
    assert await (await cluster.task("add").delay(2, 2)).get(timeout=TIMEOUT) == 4


async def test_a_revoke_reaches_every_worker_process(cluster: Cluster) -> None:
    workers = await cluster.start_many(2)
    replies = await cluster.client.control.revoke(
        "00000000-0000-4000-8000-00000000beef", reply=True, limit=2, timeout=TIMEOUT
    )
    names = sorted(name for reply in replies for name in reply)
    assert len(names) == 2 and names[0] != names[1]
    assert all(w.returncode is None for w in workers)


async def test_celerys_command_line_revokes_on_an_aioqueue_worker(cluster: Cluster) -> None:
    await cluster.start()
    delayed = await cluster.task("add").apply_async((1, 2), countdown=4)
    celery_cli = [sys.executable, "-m", "celery", "-b", cluster.amqp_url]
    done = await anyio.run_process(
        [*celery_cli, "control", "-t", "3", "revoke", delayed.id], check=False
    )
    output = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert f"tasks {{'{delayed.id}'}} flagged as revoked" in output
    with pytest.raises(TaskRevokedError):
        await delayed.get(timeout=TIMEOUT)
    assert cluster.counts("add") == {}
