"""A RabbitMQ node of a test's own: started, restarted and stopped by the test.

The shared broker on 5672 cannot be restarted or given TLS listeners by one test, so
:func:`start_node` runs another node of the installed RabbitMQ beside it, with its own
node name, data, logs and listeners (ports 5711-5719, distribution ports 25711-25719;
the cluster test's three nodes use 5701-5703 and 25701-25703).
The machine's ``rabbitmq.conf`` pins 5672, which is why the node gets a config file of
its own. :func:`make_certs` makes a CA, a server certificate for ``localhost`` and a
client certificate with the ``openssl`` command, for a node with a TLS listener that
asks every client for a certificate.

A node that cannot be started makes the test skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ("Certs", "Node", "make_certs", "node_or_skip", "start_node")

# Starting an Erlang node on a busy machine can take a while.
STARTUP_TIMEOUT = 120


@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server certificate (CN and SAN ``localhost``) and its key, a
    client certificate and its key, all signed by the CA; and a second CA that signed
    none of them."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


@dataclass
class Node:
    """A running RabbitMQ node of the test's own."""

    name: str
    base: Path
    tcp_port: int
    ssl_port: int | None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@localhost:{self.tcp_port}/"

    @property
    def amqps_url(self) -> str:
        assert self.ssl_port is not None, "this node has no TLS listener"
        return f"amqps://guest:guest@localhost:{self.ssl_port}/"

    def ctl(self, *args: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """``rabbitmqctl -n <node> <args>``; its output (fails the test on an error)."""
        out = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}"
        return out.stdout

    def restart_app(self) -> None:
        """Stop and start RabbitMQ on the node: every connection drops, transient
        messages are lost, durable queues and persistent messages come back."""
        self.ctl("stop_app")
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", str(STARTUP_TIMEOUT))

    def messages(self, queue: str) -> int:
        """How many messages ``queue`` holds (ready and unacknowledged)."""
        for line in self.ctl(
            "list_queues", "-q", "--no-table-headers", "name", "messages"
        ).splitlines():
            name, _, count = line.partition("\t")
            if name == queue:
                return int(count)
        raise AssertionError(f"queue {queue!r} does not exist on {self.name}")

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.name, "stop"],
            capture_output=True,
            timeout=STARTUP_TIMEOUT,
        )


def _openssl(*args: str | Path, cwd: Path) -> None:
    out = subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"openssl {args[0]}: {out.stderr}"


def make_certs(directory: Path) -> Certs:
    """A CA and the certificates it signs, in ``directory`` (see :class:`Certs`)."""
    directory.mkdir(parents=True, exist_ok=True)

    def ca(name: str) -> None:
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=aioqueue test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem",
            cwd=directory,
        )  # fmt: skip

    def signed(name: str, extensions: str) -> None:
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", f"{name}.key", "-out", f"{name}.csr",
            cwd=directory,
        )  # fmt: skip
        (directory / f"{name}.ext").write_text(extensions)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=directory,
        )  # fmt: skip

    ca("ca")
    ca("other-ca")
    signed("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    signed("client", "extendedKeyUsage=clientAuth\n")
    for path in directory.iterdir():
        path.chmod(0o644)  # the node runs as another user, and these are throwaway keys
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
    )


def _config(tcp_port: int, ssl_port: int | None, certs: Certs | None) -> str:
    lines = [
        f"listeners.tcp.default = {tcp_port}",
        "loopback_users = none",
        # A throwaway node: no disk alarm on a small test disk.
        "disk_free_limit.absolute = 1MB",
    ]
    if ssl_port is not None and certs is not None:
        lines += [
            f"listeners.ssl.default = {ssl_port}",
            f"ssl_options.cacertfile = {certs.ca}",
            f"ssl_options.certfile = {certs.server_cert}",
            f"ssl_options.keyfile = {certs.server_key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = true",
        ]
    return "\n".join(lines) + "\n"


def start_node(
    label: str,
    *,
    tcp_port: int,
    dist_port: int,
    ssl_port: int | None = None,
    certs: Certs | None = None,
) -> Node:
    """Start a node named ``aioq-<label>-<random>@localhost`` and wait until it runs.

    :raises RuntimeError: RabbitMQ is not installed or the node did not start.
    """
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        raise RuntimeError("RabbitMQ is not installed (no rabbitmq-server, rabbitmqctl)")
    base = Path(tempfile.mkdtemp(prefix=f"aioq-{label}-"))
    for sub in ("mnesia", "log"):
        (base / sub).mkdir()
    # RabbitMQ may run as its own user (the packaged scripts switch to it).
    for directory in (base, base / "mnesia", base / "log"):
        directory.chmod(0o777)
    (base / "rabbitmq.conf").write_text(_config(tcp_port, ssl_port, certs))
    (base / "enabled_plugins").write_text("[].\n")
    for path in (base / "rabbitmq.conf", base / "enabled_plugins"):
        path.chmod(0o644)
    name = f"aioq-{label}-{uuid.uuid4().hex[:6]}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_PORT": str(tcp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_PID_FILE": str(base / "node.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
    }
    node = Node(name, base, tcp_port, ssl_port)
    started = subprocess.run(
        ["rabbitmq-server", "-detached"],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    if started.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"rabbitmq-server did not start: {started.stderr.strip()}")
    # ``wait`` waits for the node to appear (``await_startup`` alone fails at once
    # while the Erlang node is still booting), then for RabbitMQ to run on it.
    waited = subprocess.run(
        [
            "rabbitmqctl",
            "-n",
            name,
            "wait",
            str(base / "node.pid"),
            "--timeout",
            str(STARTUP_TIMEOUT),
        ],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT + 30,
    )
    if waited.returncode != 0:
        node.stop()
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in (base / "log").glob("*.log"))
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"node {name} did not start: {waited.stderr.strip()} {logs}")
    return node


@contextmanager
def node_or_skip(
    label: str,
    *,
    tcp_port: int,
    dist_port: int,
    ssl_port: int | None = None,
    certs: Certs | None = None,
) -> Iterator[Node]:
    """:func:`start_node` for a fixture: skip when it cannot start (fail under
    ``CI=true``), stop the node and remove its files at the end."""
    try:
        node = start_node(
            label, tcp_port=tcp_port, dist_port=dist_port, ssl_port=ssl_port, certs=certs
        )
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: these tests must run)")
        pytest.skip(str(exc))
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(node.base, ignore_errors=True)
