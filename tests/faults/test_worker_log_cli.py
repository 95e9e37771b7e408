"""The worker's log from the command line: ``--log-format json``, ``--logfile``, what
comes after the banner, and one line when the broker cannot be reached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.faults.conftest import APP, Cluster
from tests.helpers import eventually
from tests.processes import CLI, ONE_LOOP, ROOT, TIMEOUT

pytestmark = [pytest.mark.anyio, ONE_LOOP]


@pytest.mark.amqp
async def test_json_lines_in_the_logfile(cluster: Cluster, tmp_path: Path) -> None:
    logfile = tmp_path / "worker.log"
    worker = await cluster.start("-l", "info", "--log-format", "json", "--logfile", str(logfile))
    ok = await cluster.task("add").delay(2, 3)
    assert await ok.get(timeout=TIMEOUT) == 5
    bad = await cluster.task("boom").delay(7)
    with pytest.raises(ValueError, match="boom 7"):
        await bad.get(timeout=TIMEOUT)

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in logfile.read_text().splitlines()]

    await eventually(lambda: any(line.get("id") == bad.id for line in lines()), TIMEOUT)
    assert await worker.stop() == 0, worker.stderr()
    assert "Task" not in worker.stderr()  # the log went to the file
    events = {(line.get("id"), line.get("event")): line for line in lines()}
    received = events[(ok.id, "received")]
    assert received["level"] == "INFO" and received["logger"] == "aioqueue.worker"
    assert received["task"] == "faults.add"
    assert received["message"] == f"Task faults.add[{ok.id}] received"
    succeeded = events[(ok.id, "succeeded")]
    assert isinstance(succeeded["duration"], float) and succeeded["duration"] >= 0
    assert str(succeeded["message"]).endswith("s: 5")
    failed = events[(bad.id, "failed")]
    assert failed["level"] == "ERROR"
    assert failed["message"] == f"Task faults.boom[{bad.id}] raised ValueError: boom 7"
    assert "Traceback" in str(failed["exc_info"])
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines())


@pytest.mark.amqp
async def test_consuming_is_logged_after_the_banner(amqp_url: str, queue_name: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIOQUEUE_TEST_BROKER": amqp_url,
        "AIOQUEUE_TEST_QUEUE": queue_name,
    }
    argv = [sys.executable, *CLI, "worker", "-A", APP, "-Q", queue_name, "-l", "info"]
    # stdout and stderr in one pipe: the order of the banner and the log lines shows.
    process = await anyio.open_process(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = ""
    try:
        assert process.stdout is not None
        with anyio.fail_after(TIMEOUT):
            while "worker consuming" not in output:
                output += (await process.stdout.receive()).decode()
    finally:
        process.terminate()
        await process.wait()
    lines = output.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    consuming = next(i for i, line in enumerate(lines) if "worker consuming" in line)
    assert len(rules) == 2 and rules[1] < consuming, output
    assert queue_name in lines[consuming]


async def test_a_refused_connect_is_one_line() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIOQUEUE_TEST_BROKER": "amqp://guest:guest@127.0.0.1:5999/",
    }
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process(
            [sys.executable, *CLI, "worker", "-A", APP, "-l", "info"],
            cwd=ROOT,
            env=env,
            check=False,
        )
    assert done.returncode == 1
    assert done.stdout == b""
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith("error: connect to host 127.0.0.1, port 5999, vhost ")
    assert "Connection refused" in line
