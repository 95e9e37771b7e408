"""Events from an aioqueue worker (``events=True``, as ``-E``), read by Celery's own
``celery.events.EventReceiver`` on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aioqueue import App
from aioqueue.transport.base import Envelope
from tests.processes import CLI, ROOT

pytestmark = pytest.mark.anyio

celery = pytest.importorskip("celery")

TIMEOUT = 60  # generous: the machine is shared


@pytest.fixture
async def app(amqp_url: str) -> AsyncIterator[App]:
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    application = App("ev", broker=amqp_url, default_queue=queue)

    @application.task(name="ev.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @application.task(name="ev.fail")
    async def fail() -> None:
        raise ValueError("boom")

    async with application:
        yield application


class Capture:
    """Celery's receiver in a thread, keeping every event until told to stop."""

    def __init__(self, amqp_url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.stop = threading.Event()
        self._app = celery.Celery(broker=amqp_url)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._app.connection() as connection:
            receiver = self._app.events.Receiver(connection, handlers={"*": self.events.append})
            self.ready.set()
            # capture() returns after each timeout; loop until the test is done.
            while not self.stop.is_set():
                try:
                    for _ in receiver.consume(limit=None, timeout=1, wakeup=False):
                        if self.stop.is_set():
                            break
                except TimeoutError:
                    continue

    def __enter__(self) -> Capture:
        self._thread.start()
        assert self.ready.wait(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(TIMEOUT)

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(self.events)
            if e["type"] == kind and all(e.get(k) == v for k, v in match.items())
        ]


async def _until(condition: Any) -> None:
    for _ in range(TIMEOUT * 10):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the events did not arrive in time")


async def test_celery_receiver_sees_the_worker_and_its_tasks(app: App, amqp_url: str) -> None:
    hostname = f"ev-{uuid.uuid4().hex[:8]}@test"
    with Capture(amqp_url) as seen:
        async with app.worker(hostname=hostname, concurrency=2, events=True):
            await _until(lambda: seen.of("worker-online", hostname=hostname))
            ok = await app.send_task("ev.add", args=[3, 4])
            assert await ok.get(timeout=TIMEOUT) == 7
            bad = await app.send_task("ev.fail")
            with pytest.raises(Exception, match="boom"):
                await bad.get(timeout=TIMEOUT)
            await _until(lambda: seen.of("task-failed", uuid=bad.id))
            await _until(lambda: seen.of("worker-heartbeat", hostname=hostname))
        await _until(lambda: seen.of("worker-offline", hostname=hostname))

    received = seen.of("task-received", uuid=ok.id)[0]
    assert received["name"] == "ev.add"
    assert received["args"] == "(3, 4)"
    assert received["kwargs"] == "{}"
    assert received["hostname"] == hostname
    assert seen.of("task-started", uuid=ok.id)
    succeeded = seen.of("task-succeeded", uuid=ok.id)[0]
    assert succeeded["result"] == "7"
    assert succeeded["runtime"] >= 0
    failed = seen.of("task-failed", uuid=bad.id)[0]
    assert failed["exception"] == "ValueError('boom')"
    assert "ValueError: boom" in failed["traceback"]
    heartbeat = seen.of("worker-heartbeat", hostname=hostname)[0]
    assert heartbeat["freq"] == 2.0
    assert heartbeat["sw_ident"] == "py-aioqueue"
    assert len(heartbeat["loadavg"]) == 3
    # The Lamport clock rises through one worker's events.
    clocks = [e["clock"] for e in seen.events if e.get("hostname") == hostname]
    assert clocks == sorted(clocks)


async def test_no_events_without_the_option(app: App, amqp_url: str) -> None:
    hostname = f"ev-{uuid.uuid4().hex[:8]}@test"
    with Capture(amqp_url) as seen:
        async with app.worker(hostname=hostname, concurrency=2):
            ok = await app.send_task("ev.add", args=[1, 1])
            assert await ok.get(timeout=TIMEOUT) == 2
            await asyncio.sleep(3)  # past a heartbeat period
    assert [e for e in seen.events if e.get("hostname") == hostname] == []


APP = "tests.interop.events_app:app"


async def test_worker_subprocess_with_e_and_the_events_command(
    amqp_url: str, worker_processes: Any, tmp_path: Any
) -> None:
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    hostname = f"evp-{uuid.uuid4().hex[:8]}@test"
    env = {"AIOQUEUE_TEST_BROKER": amqp_url, "AIOQUEUE_TEST_QUEUE": queue}
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = tmp_path / "events.jsonl"
    with out.open("w") as sink:
        watcher = await anyio.open_process(
            [sys.executable, *CLI, "events", "-A", APP, "--json", "--timeout", "60"],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            # Its queue exists once RabbitMQ lists a celeryev.* queue bound for it.
            await asyncio.sleep(3)
            worker = await worker_processes.start(APP, "-E", "-n", hostname, env=env)
            client = App("c", broker=amqp_url, default_queue=queue)
            async with client:
                result = await client.send_task("ev.add", args=[2, 3])
                assert await result.get(timeout=TIMEOUT) == 5

            def lines() -> list[dict[str, Any]]:
                return [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]

            await _until(
                lambda: any(
                    e["type"] == "task-succeeded" and e.get("uuid") == result.id for e in lines()
                )
            )
            await worker.stop()
            await _until(
                lambda: any(
                    e["type"] == "worker-offline" and e["hostname"] == hostname for e in lines()
                )
            )
        finally:
            watcher.terminate()
            with anyio.fail_after(TIMEOUT):
                await watcher.wait()
    mine = [e for e in lines() if e.get("hostname") == hostname]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "worker-online"
    for kind in ("task-received", "task-started", "task-succeeded"):
        assert kind in kinds
    assert kinds[-1] == "worker-offline"


async def test_celery_receiver_sees_task_sent(amqp_url: str) -> None:
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    with Capture(amqp_url) as seen:
        async with App("sent", broker=amqp_url, default_queue=queue) as quiet:
            unseen = await quiet.send_task("ev.add", args=[1, 2])
        async with App(
            "sent", broker=amqp_url, default_queue=queue, send_sent_event=True
        ) as client:
            result = await client.send_task("ev.add", args=[3, 4], countdown=60)
            later = await client.send_task("ev.add", kwargs={"x": 1, "y": 2})
            await _until(lambda: seen.of("task-sent", uuid=later.id))
        await asyncio.sleep(0.5)  # anything the quiet client sent would be here by now
    assert seen.of("task-sent", uuid=unseen.id) == []
    sent = seen.of("task-sent", uuid=result.id)[0]
    # Celery's own field order for a client's task-sent (tests/vectors/events/task-sent.json).
    vector = json.loads((ROOT / "tests" / "vectors" / "events" / "task-sent.json").read_text())
    # Celery's receiver adds local_received to what was sent.
    assert [k for k in sent if k != "local_received"] == list(vector["body_json"])
    assert sent["name"] == "ev.add"
    assert sent["args"] == "(3, 4)"
    assert sent["root_id"] == result.id and sent["parent_id"] is None
    assert sent["eta"] is not None and sent["expires"] is None
    assert (sent["queue"], sent["routing_key"]) == (queue, queue)
    assert sent["hostname"].startswith("gen") and "@" in sent["hostname"]
    assert seen.of("task-sent", uuid=later.id)[0]["kwargs"] == "{'x': 1, 'y': 2}"


async def test_celery_receiver_sees_task_rejected(app: App, amqp_url: str) -> None:
    hostname = f"ev-{uuid.uuid4().hex[:8]}@test"
    garbled = str(uuid.uuid4())
    with Capture(amqp_url) as seen:
        async with app.worker(hostname=hostname, concurrency=2, events=True):
            await _until(lambda: seen.of("worker-online", hostname=hostname))
            unknown = await app.send_task("ev.not_registered", args=[1])
            with pytest.raises(Exception, match="not_registered"):
                await unknown.get(timeout=TIMEOUT)
            # Bad input that does not even decode: rejected by its header id.
            await app.transport.publish(
                Envelope(
                    body=b"{not json",
                    headers={"task": "ev.add", "id": garbled},
                    correlation_id=garbled,
                ),
                routing_key=app.broker.default_queue,
            )
            await _until(lambda: seen.of("task-rejected", uuid=garbled))
            await _until(lambda: seen.of("task-failed", uuid=unknown.id))
    rejected = seen.of("task-rejected", uuid=unknown.id, hostname=hostname)[0]
    assert rejected["requeue"] is False
    failed = seen.of("task-failed", uuid=unknown.id)[0]
    assert "not_registered" in failed["exception"]
    assert seen.of("task-rejected", uuid=garbled)[0]["requeue"] is False
    assert seen.of("task-failed", uuid=garbled) == []  # it never was a task here


async def test_events_command_with_a_broker_url(amqp_url: str, tmp_path: Any) -> None:
    """``aioqueue events -b URL`` (no -A) shows the events on that broker."""
    queue = f"ev-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "events.jsonl"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("AIOQUEUE_BROKER_URL", None)
    with out.open("w") as sink:
        watcher = await anyio.open_process(
            [sys.executable, *CLI, "events", "-b", amqp_url, "--json", "--limit", "1"],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            sent = []
            async with App(
                "c", broker=amqp_url, default_queue=queue, send_sent_event=True
            ) as client:
                # Until the watcher has one: it may take a while to bind its queue.
                with anyio.fail_after(TIMEOUT):
                    while watcher.returncode is None:
                        sent.append((await client.send_task("ev.add", args=[2, 3])).id)
                        with anyio.move_on_after(0.5):
                            await watcher.wait()
            assert watcher.returncode == 0
        finally:
            if watcher.returncode is None:
                watcher.terminate()
                await watcher.wait()
    (line,) = out.read_text().splitlines()
    event = json.loads(line)
    assert (event["type"], event["name"]) == ("task-sent", "ev.add")
    assert event["uuid"] in sent
