"""``inspect reserved|scheduled`` and ``control shutdown|add_consumer|cancel_consumer|
rate_limit`` on RabbitMQ: aioqueue workers answer Celery's client and CLI, and aioqueue's
API and CLI drive Celery workers, each answer in Celery's shape."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from celery import Celery

from aioqueue import App
from aioqueue.task import Task
from tests.celery_vectors import VECTORS_DIR
from tests.helpers import eventually
from tests.interop.processes import celery_control_worker

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # generous: the machine is shared
# The event that lets cc.hold end; one per test, made on the test's event loop.
RELEASE: list[asyncio.Event] = []
# What Celery's workers put in a request they describe (its captured inspect reply).
CELERY_REQUEST_KEYS = set(
    json.loads(
        (VECTORS_DIR / "control" / "control_inspect_active-03-control-reply.json").read_text()
    )["body_json"]["celery@vm"][0]
)


class Tasks:
    def __init__(self, app: App) -> None:
        @app.task(name="cc.add")
        async def add(x: int, y: int) -> int:
            return x + y

        @app.task(name="cc.hold")
        async def hold() -> str:
            await RELEASE[0].wait()
            return "released"

        self.add: Task[Any, int] = add
        self.hold: Task[Any, str] = hold


@pytest.fixture
async def app(amqp_url: str) -> AsyncIterator[App]:
    application = App("cc", broker=amqp_url, default_queue=_name("cc"))
    RELEASE[:] = [asyncio.Event()]
    async with application:
        yield application


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _celery(amqp_url: str, *args: str) -> tuple[int, str, str]:
    return await _run(sys.executable, "-m", "celery", "-b", amqp_url, *args)


async def _aioqueue(amqp_url: str, *args: str) -> tuple[int, str, str]:
    return await _run(
        sys.executable,
        "-m",
        "aioqueue.cli",
        *args,
        "-A",
        "tests.interop.control_commands_app:app",
        env={"AIOQUEUE_BROKER_URL": amqp_url},
    )


def _json(result: tuple[int, str, str]) -> Any:
    code, out, err = result
    assert code == 0, (out, err)
    return json.loads(out)


async def _celery_call(amqp_url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """Celery's own client API (``app.control.<method>(..., reply=True)``), in a thread."""

    def call() -> Any:
        client = Celery("cc-client", broker=amqp_url)
        try:
            return getattr(client.control, method)(*args, reply=True, timeout=5, **kwargs)
        finally:
            client.close()

    return await asyncio.to_thread(call)


async def _consumers(app: App, queue: str) -> int:
    state = await app.transport.inspect_queue(queue)
    return -1 if state is None else state.consumers


# -- inspect reserved | scheduled ---------------------------------------------------------


async def test_reserved_lists_received_tasks_waiting_for_a_slot(app: App, amqp_url: str) -> None:
    tasks, host = Tasks(app), _name("cc") + "@test"
    async with app.worker(hostname=host, concurrency=1, prefetch=3):
        held = await tasks.hold.delay()
        await eventually(
            lambda: _ids(app.control.active(timeout=2, destination=[host]), host, [held.id]),
            TIMEOUT,
        )
        waiting = [await tasks.add.delay(1, 2), await tasks.add.delay(3, 4)]
        ids = [r.id for r in waiting]
        await eventually(
            lambda: _ids(app.control.reserved(timeout=2, destination=[host]), host, ids),
            TIMEOUT,
        )
        (reserved, scheduled) = await asyncio.gather(
            _celery(amqp_url, "inspect", "reserved", "-j", "-t", "5", "-d", host),
            _celery(amqp_url, "inspect", "scheduled", "-j", "-t", "5", "-d", host),
        )
        requests = _json(reserved)[host]
        assert sorted(r["id"] for r in requests) == sorted(ids)
        for request in requests:
            assert set(request) == CELERY_REQUEST_KEYS
            assert request["name"] == "cc.add" and request["hostname"] == host
            assert request["acknowledged"] is False and request["time_start"] is None
            assert request["delivery_info"]["routing_key"] == app.config.default_queue
        # Countdowns and etas wait in the broker, not here.
        assert _json(scheduled) == {host: []}
        RELEASE[0].set()
        assert [await r.get(timeout=TIMEOUT) for r in waiting] == [3, 7]
        assert await app.control.reserved(timeout=2, destination=[host]) == {host: []}


async def _ids(asking: Any, host: str, ids: list[str]) -> bool:
    replies = await asking
    return sorted(r["id"] for r in replies.get(host, [])) == sorted(ids)


# -- add_consumer | cancel_consumer --------------------------------------------------------


async def _queue_names(app: App, host: str) -> list[str]:
    replies = await app.control.active_queues(timeout=2, destination=[host])
    return sorted(queue["name"] for queue in replies[host])


async def test_add_and_cancel_consumer_from_aioqueue_and_celery(app: App, amqp_url: str) -> None:
    Tasks(app)
    host, added, by_celery = _name("cc") + "@test", _name("added"), _name("by-celery")
    async with app.worker(hostname=host, concurrency=2):
        answer = await app.control.add_consumer(added, destination=[host])
        assert answer == {host: {"ok": f"add consumer {added}"}}
        result = await app.send_task("cc.add", args=[1, 2], queue=added)
        assert await result.get(timeout=TIMEOUT) == 3
        # Consumed already: left as it is, answered as Celery does.
        assert await app.control.add_consumer(added, destination=[host]) == answer
        assert await _consumers(app, added) == 1
        assert await _queue_names(app, host) == sorted([app.config.default_queue, added])
        cancelled = await app.control.cancel_consumer(added, destination=[host])
        assert cancelled == {host: {"ok": f"no longer consuming from {added}"}}
        assert await _consumers(app, added) == 0
        assert await _queue_names(app, host) == [app.config.default_queue]
        again = await app.control.cancel_consumer(added, destination=[host])
        assert f"does not consume {added!r}" in again[host]["error"]
        bad = await app.control.add_consumer(
            added, exchange="x", exchange_type="sideways", destination=[host]
        )
        assert "sideways" in bad[host]["error"]

        # Celery's client sends its own arguments (exchange_type "direct", ...).
        [celery_added] = await _celery_call(amqp_url, "add_consumer", by_celery, destination=[host])
        assert celery_added == {host: {"ok": f"add consumer {by_celery}"}}
        result = await app.send_task("cc.add", args=[2, 2], queue=by_celery)
        assert await result.get(timeout=TIMEOUT) == 4
        [celery_cancelled] = await _celery_call(
            amqp_url, "cancel_consumer", by_celery, destination=[host]
        )
        assert celery_cancelled == {host: {"ok": f"no longer consuming from {by_celery}"}}
        assert await _consumers(app, by_celery) == 0


async def test_celery_cli_controls_an_aioqueue_worker(app: App, amqp_url: str) -> None:
    tasks, host, queue = Tasks(app), _name("cc") + "@test", _name("cli")
    async with app.worker(hostname=host) as worker:
        added, limited = await asyncio.gather(
            _celery(amqp_url, "control", "add_consumer", queue, "-j", "-t", "5", "-d", host),
            _celery(
                amqp_url, "control", "rate_limit", "cc.add", "5/s", "-j", "-t", "5", "-d", host
            ),
        )
        # celery control -j prints the list of replies.
        assert _json(added) == [{host: {"ok": f"add consumer {queue}"}}]
        assert _json(limited) == [{host: {"ok": "new rate limit set successfully"}}]
        assert tasks.add.rate_limit == 5.0
        cancelled = await _celery(
            amqp_url, "control", "cancel_consumer", queue, "-j", "-t", "5", "-d", host
        )
        assert _json(cancelled) == [{host: {"ok": f"no longer consuming from {queue}"}}]
        stopped = await _celery(amqp_url, "control", "shutdown", "-j", "-t", "5", "-d", host)
        assert _json(stopped) == [{host: {"ok": "shutdown"}}]
        await asyncio.wait_for(worker.wait_stopped(), TIMEOUT)


# -- rate_limit ---------------------------------------------------------------------------


async def test_rate_limit_changes_the_task_and_refuses_bad_input(app: App) -> None:
    tasks, host = Tasks(app), _name("cc") + "@test"
    async with app.worker(hostname=host):
        answer = await app.control.rate_limit("cc.add", "30/m", destination=[host])
        assert answer == {host: {"ok": "new rate limit set successfully"}}
        assert tasks.add.rate_limit == 0.5
        unknown = await app.control.rate_limit("cc.nope", "1/s", destination=[host])
        assert unknown == {host: {"error": "unknown task 'cc.nope': not registered on this worker"}}
        bad = await app.control.rate_limit("cc.add", "fast", destination=[host])
        assert bad[host]["error"].startswith("Invalid rate limit string: rate_limit 'fast'")
        assert tasks.add.rate_limit == 0.5  # unchanged by the bad one
        off = await app.control.rate_limit("cc.add", None, destination=[host])
        assert off == {host: {"ok": "rate limit disabled successfully"}}
        assert tasks.add.rate_limit is None
        assert await (await tasks.add.delay(2, 3)).get(timeout=TIMEOUT) == 5


async def test_unknown_and_bad_commands_get_an_error_reply(app: App) -> None:
    Tasks(app)
    host = _name("cc") + "@test"
    async with app.worker(hostname=host):
        answer = await app.control.broadcast("autoscale", {"max": 2}, destination=[host])
        assert answer == {
            host: {"error": "control command 'autoscale' is not served by aioqueue workers"}
        }
        revoke = await app.control.broadcast("revoke", {"task_id": 7}, destination=[host])
        assert "'task_id' must be a task id" in revoke[host]["error"]
        add = await app.control.broadcast("add_consumer", {}, destination=[host])
        assert "'queue' must be a queue name" in add[host]["error"]
        # Celery workers' start-up sync gets no answer (no neighbour to sync with).
        assert await app.control.broadcast("hello", {"from_node": "x"}, timeout=0.5) == {}
        assert await app.control.ping(destination=[host]) == {host: {"ok": "pong"}}


# -- shutdown -----------------------------------------------------------------------------


async def test_shutdown_stops_an_embedded_worker_after_its_running_tasks(app: App) -> None:
    tasks, host = Tasks(app), _name("cc") + "@test"
    queue = app.config.default_queue
    async with app.worker(hostname=host, concurrency=2) as worker:
        held = await tasks.hold.delay()
        await eventually(
            lambda: _ids(app.control.active(timeout=2, destination=[host]), host, [held.id]),
            TIMEOUT,
        )
        answer = await app.control.shutdown(destination=[host])
        assert answer == {host: {"ok": "shutdown"}}
        await asyncio.wait_for(worker.wait_shutdown(), TIMEOUT)

        async def not_consuming() -> bool:
            return await _consumers(app, queue) == 0

        await eventually(not_consuming, TIMEOUT)
        RELEASE[0].set()
        # The running task ends and is reported before the worker is gone.
        assert await held.get(timeout=TIMEOUT) == "released"
        await asyncio.wait_for(worker.wait_stopped(), TIMEOUT)
    assert await app.control.ping(timeout=0.5, destination=[host]) == {}


async def test_aioqueue_cli_controls_an_aioqueue_worker_process(amqp_url: str) -> None:
    host, queue, extra = _name("ccp") + "@test", _name("ccp"), _name("ccp-extra")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioqueue.cli",
        "worker",
        "-A",
        "tests.interop.control_commands_app:app",
        "-n",
        host,
        "-Q",
        queue,
        env={**os.environ, "AIOQUEUE_BROKER_URL": amqp_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = App("ccp-client", broker=amqp_url)
    try:
        async with client:

            async def answers() -> bool:
                return bool(await client.control.ping(timeout=1, destination=[host]))

            await eventually(answers, timeout=120)
        task_id = str(uuid.uuid4())
        added, not_consumed, bad_rate, revoked, addressed = await asyncio.gather(
            _aioqueue(amqp_url, "control", "add-consumer", extra, "-d", host, "-t", "5", "-j"),
            _aioqueue(amqp_url, "control", "cancel-consumer", "nothing", "-d", host, "-t", "5"),
            _aioqueue(amqp_url, "control", "rate-limit", "ccx.add", "x/s", "-d", host, "-t", "5"),
            _aioqueue(amqp_url, "control", "revoke", task_id, "-t", "5", "-j"),
            _aioqueue(amqp_url, "control", "revoke", task_id, "-d", host),
        )
        assert _json(added) == {host: {"ok": f"add consumer {extra}"}}
        assert _json(revoked)[host] == {"ok": f"tasks {{'{task_id}'}} flagged as revoked"}
        # A revocation is for every worker: addressing one is refused, with the reason.
        code, _, err = addressed
        assert code == 1 and "--destination does not apply" in err
        code, out, _ = not_consumed
        assert code == 1 and out.startswith(f"->  {host}: ERROR ") and "'nothing'" in out
        code, out, _ = bad_rate
        assert code == 1 and "Invalid rate limit string" in out
        stopped = await _aioqueue(amqp_url, "control", "shutdown", "-d", host, "-t", "5")
        code, out, err = stopped
        assert code == 0, err
        assert out.splitlines()[0] == f"->  {host}: OK shutdown"
        # Stopped as on SIGTERM: status 0.
        assert await asyncio.wait_for(worker.wait(), TIMEOUT) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def test_aioqueue_cli_controls_a_celery_worker(amqp_url: str) -> None:
    host, queue, extra = _name("ccc") + "@test", _name("ccc"), _name("ccc-extra")
    worker = await celery_control_worker(amqp_url, host, queue)
    client = App("ccc-client", broker=amqp_url)
    try:
        async with client:

            async def answers() -> bool:
                return bool(await client.control.ping(timeout=1, destination=[host]))

            await eventually(answers, timeout=120)
        added, limited, unknown, reserved, scheduled = await asyncio.gather(
            _aioqueue(amqp_url, "control", "add-consumer", extra, "-d", host, "-t", "5", "-j"),
            _aioqueue(amqp_url, "control", "rate-limit", "cc.add", "10/s", "-d", host, "-j"),
            _aioqueue(amqp_url, "control", "rate-limit", "cc.nope", "1/s", "-d", host, "-j"),
            _aioqueue(amqp_url, "inspect", "reserved", "-d", host, "-t", "5", "-j"),
            _aioqueue(amqp_url, "inspect", "scheduled", "-d", host, "-t", "5", "-j"),
        )
        assert _json(added) == {host: {"ok": f"add consumer {extra}"}}
        assert _json(limited) == {host: {"ok": "new rate limit set successfully"}}
        code, out, _ = unknown
        assert code == 1 and json.loads(out) == {host: {"error": "unknown task"}}
        assert _json(reserved) == {host: []}
        assert _json(scheduled) == {host: []}
        cancelled = await _aioqueue(
            amqp_url, "control", "cancel-consumer", extra, "-d", host, "-t", "5", "-j"
        )
        assert _json(cancelled) == {host: {"ok": f"no longer consuming from {extra}"}}
        # A Celery worker stops without answering; the command still succeeds.
        code, out, err = await _aioqueue(amqp_url, "control", "shutdown", "-d", host, "-t", "2")
        assert code == 0, err
        assert "no worker replied" in out
        assert await asyncio.wait_for(worker.wait(), TIMEOUT) == 0
    finally:
        if worker.returncode is None:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=60)
