"""Helpers for the transport tests: broker administration and a TCP proxy that can freeze."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest

from aioqueue.transport.amqp import AmqpTransport
from tests.helpers import close_connections, eventually

needs_rabbitmqctl = pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"
)


def vhost_of(amqp_url: str) -> str:
    return urlsplit(amqp_url).path.lstrip("/") or "/"


def connection_names(amqp_url: str) -> list[str]:
    """The ``connection_name`` client property of each connection to the test vhost."""
    out = subprocess.run(
        [
            "rabbitmqctl",
            "list_connections",
            "-q",
            "--no-table-headers",
            "vhost",
            "client_properties",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    vhost = vhost_of(amqp_url)
    names = []
    for line in out.splitlines():
        host, _, properties = line.partition("\t")
        found = re.search(r'\{"connection_name","([^"]*)"\}', properties)
        if host == vhost and found:
            names.append(found.group(1))
    return names


class Proxy:
    """A TCP forwarder to the broker that can freeze (hold every byte) and drop connections."""

    def __init__(self, amqp_url: str) -> None:
        parts = urlsplit(amqp_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._parts = parts
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        netloc = f"{self._parts.username}:{self._parts.password}@127.0.0.1:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    async def refuse(self) -> None:
        """Drop every connection and stop accepting new ones (until :meth:`start`)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def aclose(self) -> None:
        await self.refuse()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        except RuntimeError:
            # uvloop's write to a connection dropped while the data was held.
            if not sink.transport.is_closing():
                raise
        finally:
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.transport.abort()


def queue_names(amqp_url: str) -> set[str]:
    """The queues of the test vhost, as the broker lists them."""
    return set(consumer_counts(amqp_url))


def consumer_counts(amqp_url: str) -> dict[str, int]:
    """How many consumers each queue of the test vhost has, as the broker lists them."""
    out = subprocess.run(
        [
            "rabbitmqctl",
            "list_queues",
            "-q",
            "--no-table-headers",
            "-p",
            vhost_of(amqp_url),
            "name",
            "consumers",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = (line.split() for line in out.splitlines() if line.strip())
    return {row[0]: int(row[1]) for row in rows}


async def reconnected(amqp_url: str, transport: AmqpTransport) -> None:
    """Make the broker drop every connection of the vhost; return once ``transport``
    has connected again."""
    generation = transport.generation
    await asyncio.to_thread(close_connections, amqp_url)
    await eventually(lambda: transport.generation > generation)
