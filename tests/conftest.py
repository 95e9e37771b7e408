"""Shared fixtures: the anyio backends, a RabbitMQ vhost of our own per session, test
queues, and worker subprocesses.

AMQP tests skip when no broker answers on 127.0.0.1:5672, except with ``CI=true``,
where they fail: CI must never pass by skipping the broker.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import delete_topology, fresh_vhost
from tests.processes import WorkerProcesses


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(
            ("asyncio", {"use_uvloop": True}),
            id="uvloop",
            # uvloop is optional: without it, the suite runs on asyncio's own loop only.
            marks=pytest.mark.skipif(
                importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
            ),
        ),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The URL of a fresh vhost on the local RabbitMQ, deleted after the session."""
    with fresh_vhost("aioqueue-test") as url:
        yield url


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return f"test.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def amqp_queue(amqp_url: str, queue_name: str) -> AsyncIterator[str]:
    """``queue_name``, whose topology (queue, ``.dlq``, exchange) is removed at teardown."""
    yield queue_name
    await delete_topology(amqp_url, queue_name)


@pytest.fixture
async def worker_processes(tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Starts worker subprocesses (``await worker_processes.start("module:app", ...)``);
    those still running when the test ends are killed."""
    processes = WorkerProcesses(tmp_path)
    try:
        yield processes
    finally:
        await processes.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying why the drift checks skipped, on a clone without ``../shared``."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple)
        and report.longrepr[2].endswith("../shared/celery-vectors is not here")
    ]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} drift checks against ../shared/celery-vectors skipped: that"
            " folder is not in this checkout; the wire tests still run, against the copies"
            " in tests/vectors"
        )
