"""Broker URLs with several nodes, their masked display, the connect budget's checks,
and the reconnection backoff's bounds (all pure)."""

from __future__ import annotations

import random

import pytest

from aioqueue import App, ConfigurationError
from aioqueue.config import (
    amqp_url,
    broker_nodes,
    check_connect_budget,
    describe_node,
    mask_url,
    normalize_broker_url,
)
from aioqueue.transport.backoff import ReconnectBackoff


@pytest.mark.parametrize(
    ("broker", "nodes"),
    [
        ("amqp://u:p@h1:5672/v", ("amqp://u:p@h1:5672/v",)),
        ("memory://", ("memory://",)),
        (
            "amqp://u:p@h1:5672,h2:5673/v?heartbeat=5",
            ("amqp://u:p@h1:5672/v?heartbeat=5", "amqp://u:p@h2:5673/v?heartbeat=5"),
        ),
        ("amqp://h1, h2//", ("amqp://h1//", "amqp://h2//")),
        (
            "amqp://a:1@h1/v;amqps://b:2@h2:5671/w",
            ("amqp://a:1@h1/v", "amqps://b:2@h2:5671/w"),
        ),
        (
            ["amqp://u:p@h1/v", "amqp://u:p@h2,h3/v"],
            ("amqp://u:p@h1/v", "amqp://u:p@h2/v", "amqp://u:p@h3/v"),
        ),
        ("pyamqp://h1;", ("pyamqp://h1",)),
    ],
)
def test_nodes_in_order(broker: str | list[str], nodes: tuple[str, ...]) -> None:
    assert broker_nodes(broker) == nodes


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ([], "names no node"),
        (";", "names no node"),
        ("amqp://h1,,h2/", "an empty host"),
        ("amqp://u:secret@h1:56x2,h2/", "'h1:56x2' has a port that is not a number"),
        ("amqp://h1:70000/", "has a port that is not a number"),
        ("amqp://h1/;redis://h2/", "unsupported scheme 'redis'"),
        (["memory://", "amqp://h1/"], "memory:// cannot be one of several"),
    ],
)
def test_invalid_nodes(broker: str | list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        broker_nodes(broker)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@h1:5672/v", "amqp://guest:****@h1:5672/v"),
        ("amqp://guest@h1/v", "amqp://guest@h1/v"),
        ("amqp://h1/v", "amqp://h1/v"),
        ("amqp://u:p@ss@h1/v", "amqp://u:****@h1/v"),
        ("amqp://u:pw@h1:5672,h2:5673/v", "amqp://u:****@h1:5672,h2:5673/v"),
        ("amqp://a:x@h1/v;amqp://b:y@h2/v", "amqp://a:****@h1/v;amqp://b:****@h2/v"),
    ],
)
def test_every_node_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("broker", "url"),
    [
        ("amqp://u:p@h1,h2/v", "amqp://u:p@h1,h2/v"),
        (["amqp://u:p@h1:5701/", "amqp://u:p@h2:5702/"], "amqp://u:p@h1:5701,h2:5702/"),
        (("amqp://h1//", "amqp://h2//"), "amqp://h1,h2//"),
        (["amqp://a:1@h1/v", "amqp://b:2@h2/v"], "amqp://a:1@h1/v;amqp://b:2@h2/v"),
        (["amqp://u:p@h1/v", "amqp://u:p@h2/w"], "amqp://u:p@h1/v;amqp://u:p@h2/w"),
    ],
)
def test_a_list_as_one_url(broker: str | list[str], url: str) -> None:
    assert normalize_broker_url(broker) == url
    assert broker_nodes(url) == broker_nodes(broker)


def test_describe_node_names_host_port_vhost_and_hides_the_password() -> None:
    assert describe_node("amqp://guest:secret@rabbit//") == (
        "host rabbit, port 5672, vhost '/' (amqp://guest:****@rabbit//)"
    )
    assert describe_node("amqps://u:p@h:1234/a%2Fb") == (
        "host h, port 1234, vhost 'a/b' (amqps://u:****@h:1234/a%2Fb)"
    )
    assert describe_node("amqps://h/") == "host h, port 5671, vhost '/' (amqps://h/)"


def test_describe_node_leaves_out_the_heartbeat_but_keeps_other_options() -> None:
    assert describe_node("amqp://h/v?heartbeat=10") == "host h, port 5672, vhost 'v' (amqp://h/v)"
    assert describe_node("amqp://h/v?x=1&heartbeat=10&y=a%20b") == (
        "host h, port 5672, vhost 'v' (amqp://h/v?x=1&y=a%20b)"
    )


def test_amqp_url_of_several_urls_converts_each() -> None:
    assert amqp_url("pyamqp://h1//;amqp://h2/v", heartbeat=3) == (
        "amqp://h1/%2F?heartbeat=3;amqp://h2/v?heartbeat=3"
    )
    assert amqp_url("amqp://u:p@h1,h2//", heartbeat=3) == "amqp://u:p@h1,h2/%2F?heartbeat=3"


def test_app_takes_a_list_of_nodes() -> None:
    app = App("nodes", broker=["amqp://u:secret@h1:5701/v", "amqp://u:secret@h2:5702/v"])
    assert app.broker_url == "amqp://u:secret@h1:5701,h2:5702/v"
    assert "secret" not in repr(app)
    assert app.broker_node is None  # not connected


@pytest.mark.parametrize(
    ("timeout", "retries", "message"),
    [(0, 3, "connect_timeout must be positive"), (5, -1, "connect_retries must be 0 or more")],
)
def test_connect_budget_checked(timeout: float, retries: int, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_connect_budget(timeout, retries)
    with pytest.raises(ConfigurationError, match=message):
        App("budget", broker="amqp://h1/", connect_timeout=timeout, connect_retries=retries)
    app = App("budget", broker="amqp://h1/")
    with pytest.raises(ConfigurationError, match=message):
        app.set_connect_budget(timeout=timeout, retries=retries)
    assert (app.config.connect_timeout, app.config.connect_retries) == (30.0, 3)


def test_set_connect_budget_keeps_what_is_not_given() -> None:
    app = App("budget", broker="amqp://h1/", connect_timeout=7, connect_retries=1)
    app.set_connect_budget(retries=5)
    assert (app.config.connect_timeout, app.config.connect_retries) == (7, 5)
    app.set_connect_budget(timeout=2.5)
    assert (app.config.connect_timeout, app.config.connect_retries) == (2.5, 5)


# -- the reconnection backoff --------------------------------------------------------


def test_backoff_ceilings_grow_to_the_cap() -> None:
    backoff = ReconnectBackoff(first=0.5, factor=2, longest=3)
    assert [backoff.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.ceiling(10_000) == 3  # no overflow however long it failed


@pytest.mark.parametrize("jitter", [0.0, 0.3, 1.0])
def test_backoff_delays_stay_within_their_bounds(jitter: float) -> None:
    backoff = ReconnectBackoff(first=0.2, factor=3, longest=10, jitter=jitter)
    rng = random.Random(7)
    for failures in range(12):
        ceiling = backoff.ceiling(failures)
        for draw in (0.0, 0.999999, *(rng.random() for _ in range(50))):
            delay = backoff.delay(failures, draw)
            assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling <= 10


def test_backoff_jitter_spreads_the_delays() -> None:
    backoff = ReconnectBackoff(first=1, longest=1, jitter=0.5)
    rng = random.Random(1)
    delays = {round(backoff.delay(0, rng.random()), 3) for _ in range(20)}
    assert len(delays) > 10  # not in lockstep
    assert backoff.delay(0, 0.0) == 1.0 and backoff.delay(0, 0.5) == 0.75


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": 0}, "first reconnection pause must be positive"),
        ({"factor": 0.5}, "factor must be 1 or more"),
        ({"first": 2, "longest": 1}, "shorter than the first"),
        ({"jitter": 1.5}, "jitter must be from 0 to 1"),
    ],
)
def test_backoff_values_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ReconnectBackoff(**kwargs)
