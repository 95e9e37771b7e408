"""The environment's settings: ``AIOQUEUE_BROKER_URL``, ``AIOQUEUE_RESULT_BACKEND``,
an ``App`` left without a broker, and ``App.from_env``."""

from __future__ import annotations

import pytest

from aioqueue import App
from aioqueue.config import broker_from_env, result_backend_from_env
from aioqueue.exceptions import ConfigurationError
from aioqueue.transport.memory import MemoryTransport

URL = "amqp://guest:secret@127.0.0.1:5672/v"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "memory://"),
        ({"AIOQUEUE_BROKER_URL": ""}, "memory://"),
        ({"AIOQUEUE_BROKER_URL": URL}, URL),
    ],
)
def test_broker_from_env(environ: dict[str, str], expected: str) -> None:
    assert broker_from_env(environ) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "rpc://"),
        ({"AIOQUEUE_RESULT_BACKEND": "rpc://"}, "rpc://"),
        ({"AIOQUEUE_RESULT_BACKEND": ""}, None),
        ({"AIOQUEUE_RESULT_BACKEND": "disabled"}, None),
        ({"AIOQUEUE_RESULT_BACKEND": "None"}, None),
    ],
)
def test_result_backend_from_env(environ: dict[str, str], expected: str | None) -> None:
    assert result_backend_from_env(environ, "rpc://") == expected


def test_bad_urls_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="AIOQUEUE_BROKER_URL: .*redis"):
        broker_from_env({"AIOQUEUE_BROKER_URL": "redis://localhost"})
    with pytest.raises(ConfigurationError, match="AIOQUEUE_RESULT_BACKEND: .*redis"):
        result_backend_from_env({"AIOQUEUE_RESULT_BACKEND": "redis://localhost"}, None)


def test_an_app_without_a_broker_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOQUEUE_BROKER_URL", raising=False)
    assert App("a").broker_url == "memory://"
    monkeypatch.setenv("AIOQUEUE_BROKER_URL", URL)
    assert App("a").broker_url == URL
    # Given explicitly, the broker wins over the environment.
    assert App("a", broker="memory://").broker_url == "memory://"
    assert isinstance(App("a", broker=MemoryTransport()).transport, MemoryTransport)


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOQUEUE_BROKER_URL", URL)
    monkeypatch.setenv("AIOQUEUE_RESULT_BACKEND", "disabled")
    app = App.from_env("a", default_queue="q")
    assert (app.broker_url, app.result_backend_url, app.default_queue) == (URL, None, "q")
    app = App.from_env("a", broker="memory://", result_backend="rpc://")
    assert (app.broker_url, app.result_backend_url) == ("memory://", "rpc://")
    monkeypatch.delenv("AIOQUEUE_RESULT_BACKEND")
    assert App.from_env("a").result_backend_url == "rpc://"
