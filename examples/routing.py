"""Routing: task_routes to two queues, a topic exchange with a pattern, a broadcast.

    python -m examples.routing          # RabbitMQ on localhost if it answers, else memory://
    AIOQUEUE_BROKER=memory:// python -m examples.routing

Two workers run embedded in this program: one consumes ``routing.emails``, the other
``routing.reports`` and ``routing.audit``; both consume the ``routing.reload`` broadcast.
In production each is a process of its own::

    aioqueue worker -A examples.routing:app -Q routing.emails,routing.reload
    aioqueue topology -A examples.routing:app --live    # what is declared, what waits
"""

from __future__ import annotations

import asyncio
import os
import socket

from aioqueue import App, Binding, Broadcast, Exchange, Queue, UnroutableError

LOCAL_RABBITMQ = "amqp://guest:guest@localhost:5672//"


def choose_broker() -> str:
    """``AIOQUEUE_BROKER`` if set, else RabbitMQ on localhost if it answers, else memory."""
    if "AIOQUEUE_BROKER" in os.environ:
        return os.environ["AIOQUEUE_BROKER"]
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            if sock.recv(8):
                return LOCAL_RABBITMQ
    except OSError:
        pass
    return "memory://"


BROKER = choose_broker()

emails = Queue("routing.emails")
reports = Queue("routing.reports", max_priority=10)  # priority=... is honoured here
# A topic exchange: the audit queue receives every "order.<anything>" event.
events = Exchange("routing.events", "topic")
audit = Queue("routing.audit", bindings=[Binding(events, "order.*")])
reload = Broadcast("routing.reload")  # every worker consuming it runs each message once

app = App(
    "routing",
    broker=BROKER,
    default_queue="routing.default",
    queues=[emails, reports, audit, reload],
    task_routes={
        "routing.send_email": emails.name,
        "routing.report.*": {"queue": reports.name},  # a glob: every report task
        "routing.reload_config": reload.name,
    },
)
WORKERS = 2  # both consume the broadcast
reloads: list[str] = []
reloaded = asyncio.Event()  # set once every worker ran reload_config


@app.task(name="routing.send_email")
async def send_email(to: str) -> str:
    return f"mail sent to {to}"


@app.task(name="routing.report.daily")
async def daily_report(day: str) -> str:
    return f"report for {day}"


@app.task(name="routing.audit")
async def record_event(key: str) -> str:
    return f"audited {key}"


@app.task(name="routing.reload_config", ignore_result=True)
async def reload_config(version: int) -> None:
    reloads.append(f"v{version}")
    if len(reloads) == WORKERS:
        reloaded.set()


async def main() -> None:
    where = "RabbitMQ at localhost" if BROKER.startswith("amqp") else "the in-process memory://"
    print(f"broker: {where} ({BROKER.split('@')[-1]})")
    async with app:
        mail_worker = app.worker(queues=[emails.name, reload.name])
        report_worker = app.worker(queues=[reports.name, audit.name, reload.name])
        async with mail_worker, report_worker:
            await tour()
        # Everything this example declared was its own: remove it.
        for queue in (emails, reports, audit):
            await app.transport.delete_queue(queue.name)
            await app.transport.delete_queue(queue.dlq)
            await app.transport.delete_exchange(queue.name)
        await app.transport.delete_queue(reload.dlq)
        for exchange in (events.name, reload.name):
            await app.transport.delete_exchange(exchange)
    print("routing example finished")


async def tour() -> None:
    # task_routes: each task to its queue, each queue to the worker consuming it.
    mail = await send_email.delay("ada@example.com")
    print(f"send_email -> {emails.name}: {await mail.get(timeout=10)}")
    report = await daily_report.apply_async(("monday",), priority=9)
    print(f"daily_report -> {reports.name}: {await report.get(timeout=10)}")

    # Through the topic exchange: "order.*" matches order.created, not invoice.paid.
    event = await record_event.apply_async(
        ("order.created",), exchange=events.name, routing_key="order.created"
    )
    print(f"routing_key 'order.created' -> {audit.name}: {await event.get(timeout=10)}")
    try:
        await record_event.apply_async(
            ("invoice.paid",), exchange=events.name, routing_key="invoice.paid"
        )
    except UnroutableError as exc:
        print(f"routing_key 'invoice.paid' -> UnroutableError: {exc}")

    # A broadcast runs once on every worker consuming it.
    await reload_config.delay(2)
    async with asyncio.timeout(10):
        await reloaded.wait()
    print(f"reload_config(2) -> {reload.name}: ran {len(reloads)} times, once per worker")


if __name__ == "__main__":
    asyncio.run(main())
