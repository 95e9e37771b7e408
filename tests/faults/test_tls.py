"""TLS to RabbitMQ: a node of the test's own with a TLS listener that asks every client
for a certificate signed by the test's CA."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioqueue import App, BrokerConnectionError
from aioqueue.config import TLS, TlsOption
from aioqueue.exceptions import ConfigurationError
from tests.faults.rabbit_node import Certs, Node, make_certs, node_or_skip

pytestmark = [pytest.mark.anyio, pytest.mark.amqp]


@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    directory = Path(tempfile.mkdtemp(prefix="aioq-tls-certs-"))
    directory.chmod(0o755)  # read by the node, which may run as RabbitMQ's user
    try:
        yield make_certs(directory / "pem")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_node(certs: Certs) -> Iterator[Node]:
    with node_or_skip("tls", tcp_port=5711, dist_port=25711, ssl_port=5712, certs=certs) as node:
        yield node


def _app(node: Node, tls: TlsOption, queue: str = "tls") -> App:
    # A short budget: a TLS failure is final anyway, it is not retried.
    return App("tls", broker=node.amqps_url, default_queue=queue, connect_timeout=20, ssl=tls)


@pytest.mark.timeout(180)
async def test_round_trip_over_tls_with_a_client_certificate(tls_node: Node, certs: Certs) -> None:
    app = _app(
        tls_node, TLS(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key))
    )

    @app.task
    async def multiply(x: int, y: int) -> int:
        return x * y

    async with app, app.worker(concurrency=2):
        assert await (await multiply.delay(6, 7)).get(timeout=60) == 42
    # A ready context and a mapping work the same.
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    for option in (
        context,
        {"ca": str(certs.ca), "cert": str(certs.client_cert), "key": str(certs.client_key)},
    ):
        other = _app(tls_node, option)
        async with other:
            node = other.broker_node
            assert node is not None and node.startswith(tls_node.amqps_url)


@pytest.mark.timeout(180)
async def test_a_broker_certificate_from_another_ca_is_refused(
    tls_node: Node, certs: Certs
) -> None:
    app = _app(
        tls_node,
        TLS(ca=str(certs.other_ca), cert=str(certs.client_cert), key=str(certs.client_key)),
    )
    with pytest.raises(BrokerConnectionError) as caught:
        async with app:
            pass
    message = str(caught.value)
    assert "TLS handshake failed" in message and "certificate verify failed" in message


@pytest.mark.timeout(180)
async def test_a_server_name_the_certificate_does_not_hold_is_refused(
    tls_node: Node, certs: Certs
) -> None:
    app = _app(
        tls_node,
        TLS(
            ca=str(certs.ca),
            cert=str(certs.client_cert),
            key=str(certs.client_key),
            server_hostname="rabbit.example.org",
        ),
    )
    with pytest.raises(BrokerConnectionError) as caught:
        async with app:
            pass
    message = str(caught.value)
    assert "TLS handshake failed" in message and "Hostname mismatch" in message
    assert "rabbit.example.org" in message


@pytest.mark.timeout(180)
async def test_without_a_client_certificate_the_broker_refuses(
    tls_node: Node, certs: Certs
) -> None:
    app = _app(tls_node, TLS(ca=str(certs.ca)))
    with pytest.raises(BrokerConnectionError) as caught:
        async with app:
            pass
    message = str(caught.value)
    assert "TLS handshake failed" in message and "client certificate" in message


def test_tls_settings_are_checked_when_the_app_is_made(certs: Certs) -> None:
    with pytest.raises(ConfigurationError, match="not amqps://"):
        App("tls", broker="amqp://guest:guest@localhost:5711/", ssl=TLS(ca=str(certs.ca)))
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        App("tls", broker="amqps://localhost/", ssl=TLS(ca=str(certs.ca) + ".missing"))
    with pytest.raises(ConfigurationError, match="unknown TLS settings"):
        App("tls", broker="amqps://localhost/", ssl={"cafile": str(certs.ca)})
