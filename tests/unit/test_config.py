"""URL helpers: which transport, and what the banner and logs may show."""

from __future__ import annotations

import pytest

from aioqueue import App
from aioqueue.config import amqp_url, broker_scheme, mask_url, result_backend_scheme
from aioqueue.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@localhost:5672//", "amqp://guest:****@localhost:5672//"),
        ("amqp://user:s3cr%2Ft@rabbit/vhost", "amqp://user:****@rabbit/vhost"),
        ("amqps://u:p@host:5671/v?heartbeat=30", "amqps://u:****@host:5671/v?heartbeat=30"),
        ("amqp://:only-password@host/", "amqp://:****@host/"),
        ("amqp://guest@localhost/", "amqp://guest@localhost/"),
        ("amqp://localhost:5672/", "amqp://localhost:5672/"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_hides_a_password_equal_to_the_user() -> None:
    masked = mask_url("amqp://guest:guest@127.0.0.1:5672/aioqueue-test")
    assert masked.count("guest") == 1
    assert ":guest@" not in masked


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("amqp://h/", "amqp"),
        ("amqps://h/", "amqp"),
        ("pyamqp://h//", "amqp"),
        ("AMQP://h/", "amqp"),
        ("memory://", "memory"),
    ],
)
def test_broker_scheme(url: str, scheme: str) -> None:
    assert broker_scheme(url) == scheme


def test_unknown_broker_scheme_is_refused_without_showing_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        broker_scheme("redis://user:hunter2@host/0")
    assert "redis" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_result_backend_scheme() -> None:
    assert result_backend_scheme("rpc://") == "rpc"
    assert result_backend_scheme(None) == "disabled"
    with pytest.raises(ConfigurationError, match="redis"):
        result_backend_scheme("redis://localhost")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("pyamqp://guest:guest@localhost:5672//", "amqp://guest:guest@localhost:5672/%2F"),
        ("amqp://h:5672//", "amqp://h:5672/%2F"),
        ("amqp://h:5672/vhost", "amqp://h:5672/vhost"),
        ("amqps://h/", "amqps://h/"),
    ],
)
def test_amqp_url_spellings(url: str, expected: str) -> None:
    assert amqp_url(url) == expected


@pytest.mark.parametrize("option", ["publish_timeout", "chord_expires", "result_expires"])
def test_durations_must_be_positive(option: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{option} must be positive"):
        App("bad", **{option: 0})


def test_a_heartbeat_is_asked_for_unless_the_url_names_one() -> None:
    assert amqp_url("amqp://h//", 10) == "amqp://h/%2F?heartbeat=10"
    assert amqp_url("amqp://h/v?x=1", 10) == "amqp://h/v?x=1&heartbeat=10"
    assert amqp_url("amqp://h/v?heartbeat=2", 10) == "amqp://h/v?heartbeat=2"
    assert amqp_url("amqp://h/v") == "amqp://h/v"
