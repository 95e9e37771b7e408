"""Configuration at the command line: the environment, a memory:// app refused by
``aioqueue worker``, and ``-A`` spelled as a file. Each through the real CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aioqueue import App
from tests.processes import ONE_LOOP, WorkerProcesses, error_line, run_cli

# Left without a broker: AIOQUEUE_BROKER_URL decides (memory:// when it is unset).
app = App("cli-config", default_queue=os.environ.get("AIOQUEUE_TEST_QUEUE", "cli.config"))
# Set explicitly: the environment never overrides it.
explicit = App("cli-config-explicit", broker="memory://")

pytestmark = pytest.mark.anyio


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIOQUEUE_")}
    return run_cli(*args, env={**environment, **env})


def test_worker_refuses_a_memory_broker() -> None:
    out = _cli("worker", "-A", "tests.test_cli_config:app")
    assert out.returncode == 2
    line = error_line(out)
    assert "memory://" in line
    assert 'App(broker="amqp://...")' in line
    assert "AIOQUEUE_BROKER_URL" in line


@pytest.mark.parametrize("value", ["-1", "many"])
def test_finished_records_must_be_a_count(value: str) -> None:
    out = _cli("worker", "-A", "tests.test_cli_config:explicit", f"--finished-records={value}")
    assert out.returncode == 2
    assert f"{value!r} is not a whole number of 0 or more" in out.stderr


def test_the_environment_does_not_override_an_explicit_broker(amqp_url: str) -> None:
    out = _cli("worker", "-A", "tests.test_cli_config:explicit", AIOQUEUE_BROKER_URL=amqp_url)
    assert out.returncode == 2
    assert "memory://" in error_line(out)


@ONE_LOOP
async def test_a_worker_takes_its_broker_from_the_environment(
    amqp_url: str, amqp_queue: str, worker_processes: WorkerProcesses
) -> None:
    env = {"AIOQUEUE_BROKER_URL": amqp_url, "AIOQUEUE_TEST_QUEUE": amqp_queue}
    worker = await worker_processes.start("tests.test_cli_config:app", "-Q", amqp_queue, env=env)
    masked = amqp_url.replace("guest:guest@", "guest:****@")
    assert masked in worker.banner
    assert await worker.stop() == 0
    assert f"aioqueue.app] app cli-config: connected to broker {masked}" in worker.stderr()
    assert "guest:guest" not in worker.stderr()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AIOQUEUE_CONCURRENCY", "0", "'0' is not a positive integer"),
        ("AIOQUEUE_CONCURRENCY", "many", "'many' is not a positive integer"),
        ("AIOQUEUE_LOGLEVEL", "loud", "AIOQUEUE_LOGLEVEL='loud'"),
    ],
)
def test_bad_worker_settings_in_the_environment(variable: str, value: str, expected: str) -> None:
    out = _cli("worker", "-A", "tests.test_cli_config:app", **{variable: value})
    assert out.returncode == 2
    assert expected in out.stderr.strip().splitlines()[-1]


def test_worker_settings_from_the_environment_reach_the_worker() -> None:
    # Accepted (upper case too) and then refused for the memory:// broker: parsed first.
    out = _cli(
        "worker",
        "-A",
        "tests.test_cli_config:app",
        AIOQUEUE_CONCURRENCY="7",
        AIOQUEUE_LOGLEVEL="WARNING",
    )
    assert out.returncode == 2
    assert "memory://" in error_line(out)


@pytest.mark.parametrize(
    ("spec", "meant"),
    [
        ("tests/test_cli_config.py:app", "tests.test_cli_config:app"),
        ("myapp.py", "myapp:app"),
    ],
)
def test_a_file_name_gets_a_hint(spec: str, meant: str) -> None:
    out = _cli("worker", "-A", spec)
    assert out.returncode == 2
    assert f"did you mean `{meant}`?" in error_line(out)


def test_help_says_what_a_bare_module_means() -> None:
    out = _cli("worker", "--help")
    assert out.returncode == 0
    assert "-A myapp means myapp:app" in " ".join(out.stdout.split())
    assert "AIOQUEUE_CONCURRENCY" in out.stdout


def test_an_unwritable_logfile_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = f"{tmp_path}/no-such-dir/worker.log"
    out = _cli("worker", "-A", "tests.test_cli_config:explicit", "--logfile", missing)
    assert out.returncode == 2
    line = error_line(out)
    assert line.startswith(f"error: cannot write --logfile {missing!r}: ")
    assert "No such file or directory" in line
