"""An app's settings, and broker and result-backend URLs: parsing, validation, display.

Nothing here reads ``os.environ`` itself: the callers at the edge (``cli.py``,
:meth:`App.from_env <aioqueue.App.from_env>` and an ``App`` left without a broker) pass
the environment in, and :func:`broker_from_env` / :func:`result_backend_from_env` say
what it holds (the ``AIOQUEUE_`` variables, documented in the README).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from .exceptions import ConfigurationError

__all__ = (
    "BROKER_URL_VARIABLE",
    "RESULT_BACKEND_VARIABLE",
    "TLS",
    "TlsOption",
    "tls_settings",
    "AppConfig",
    "BrokerScheme",
    "amqp_url",
    "broker_from_env",
    "broker_nodes",
    "broker_scheme",
    "check_connect_budget",
    "describe_node",
    "mask_url",
    "normalize_broker_url",
    "result_backend_from_env",
    "result_backend_scheme",
)

#: The broker of an ``App`` made without ``broker=`` (and of ``App.from_env``).
BROKER_URL_VARIABLE = "AIOQUEUE_BROKER_URL"
#: The result backend of ``App.from_env``: ``rpc://``, or empty / ``disabled``.
RESULT_BACKEND_VARIABLE = "AIOQUEUE_RESULT_BACKEND"
_DEFAULT_BROKER = "memory://"
_DISABLED = ("", "none", "disabled")


@dataclass(frozen=True, slots=True, kw_only=True)
class TLS:
    """TLS for ``amqps://`` brokers: whom to trust, who the client is, whom it expects.

    :param ca: PEM file of the CA certificates that may sign the broker's certificate
        (default: the system's).
    :param cert: PEM file of the client certificate, for a broker that asks for one.
    :param key: PEM file of its private key (default: inside ``cert``).
    :param server_hostname: the name the broker's certificate must hold (default: the
        host of the broker URL).
    :param verify: check the broker's certificate and name; ``False`` only for tests.
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_hostname: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """An SSL context for these settings (reads the files).

        :raises ConfigurationError: a file is missing or is not what it should be.
        """
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            if self.cert is not None:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"TLS settings cannot be loaded: {exc}") from None
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


#: What ``App(ssl=...)`` accepts: a ready context, :class:`TLS`, or the same as a mapping.
TlsOption = ssl.SSLContext | TLS | Mapping[str, str | bool]


def tls_settings(option: TlsOption | None) -> tuple[ssl.SSLContext, str | None] | None:
    """The SSL context and server name ``option`` means (``None``: the defaults).

    :raises ConfigurationError: a mapping with an unknown key, or unloadable files.
    """
    if option is None:
        return None
    if isinstance(option, ssl.SSLContext):
        return option, None
    if not isinstance(option, TLS):
        unknown = set(option) - {"ca", "cert", "key", "server_hostname", "verify"}
        if unknown:
            raise ConfigurationError(
                f"ssl: unknown TLS settings {sorted(unknown)}; known are ca, cert, key, "
                "server_hostname and verify"
            )
        option = TLS(**option)  # type: ignore[arg-type]
    return option.context(), option.server_hostname


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    """What an :class:`~aioqueue.App` was configured with, checked at construction.

    :raises ConfigurationError: a value is out of range or a URL is unsupported.
    """

    name: str
    broker_url: str | None  # None: the app was given a transport object
    result_backend: str | None
    default_queue: str
    publish_timeout: float
    chord_expires: float
    result_expires: float
    connect_timeout: float = 30.0
    connect_retries: int = 3

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("an app needs a name")
        if not self.default_queue:
            raise ConfigurationError("default_queue must not be empty")
        for name in ("publish_timeout", "chord_expires", "result_expires"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        check_connect_budget(self.connect_timeout, self.connect_retries)
        if self.broker_url is not None:
            broker_nodes(self.broker_url)
        result_backend_scheme(self.result_backend)


BrokerScheme = Literal["amqp", "memory"]


def broker_scheme(url: str) -> BrokerScheme:
    """Which transport serves ``url``.

    :raises ConfigurationError: the scheme is not ``amqp``, ``amqps`` or ``memory``.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("amqp", "amqps", "pyamqp"):
        return "amqp"
    if scheme == "memory":
        return "memory"
    raise ConfigurationError(
        f"broker URL {mask_url(url)!r}: unsupported scheme {scheme!r} "
        "(use amqp://, amqps:// or memory://)"
    )


def result_backend_scheme(url: str | None) -> Literal["rpc", "disabled"]:
    """Which result store serves ``url`` (``None`` disables results).

    :raises ConfigurationError: the scheme is not ``rpc``.
    """
    if url is None:
        return "disabled"
    scheme = urlsplit(url).scheme.lower()
    if scheme == "rpc":
        return "rpc"
    raise ConfigurationError(
        f"result backend {url!r}: unsupported scheme {scheme!r} (use rpc:// or None)"
    )


def check_connect_budget(timeout: float, retries: int) -> None:
    """Check a connect budget: ``timeout`` seconds for the first connection, within
    which it is tried again ``retries`` times.

    :raises ConfigurationError: ``timeout`` is not positive or ``retries`` is negative.
    """
    if not timeout > 0:
        raise ConfigurationError(f"connect_timeout must be positive, got {timeout}")
    if retries < 0:
        raise ConfigurationError(f"connect_retries must be 0 or more, got {retries}")


def broker_nodes(broker: str | Sequence[str]) -> tuple[str, ...]:
    """Every node of a broker, each as a URL of its own, in the order given.

    ``broker`` is one URL, several hosts in one URL (``amqp://user:pass@h1:5672,h2:5673/vhost``:
    they share the credentials, vhost and query), several full URLs separated by ``;``
    (Celery's and kombu's spelling), or a list of any of these.

    >>> broker_nodes("amqp://u:p@h1,h2:5673/v")
    ('amqp://u:p@h1/v', 'amqp://u:p@h2:5673/v')

    :raises ConfigurationError: there is no node, a node has an unsupported scheme, no
        host or a port that is not a number, or ``memory://`` is one of several nodes.
    """
    urls = [broker] if isinstance(broker, str) else list(broker)
    nodes = tuple(
        node
        for url in urls
        for part in url.split(";")
        if part.strip()
        for node in _split_hosts(part.strip())
    )
    if not nodes:
        raise ConfigurationError("the broker names no node: give at least one URL")
    schemes = {broker_scheme(node) for node in nodes}
    if "memory" in schemes and len(nodes) > 1:
        raise ConfigurationError(
            "memory:// cannot be one of several broker nodes: it lives inside one process"
        )
    return nodes


def _split_hosts(url: str) -> list[str]:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    nodes = []
    for host in hosts.split(","):
        host = host.strip()
        node = urlunsplit((parts.scheme, f"{userinfo}{at}{host}", parts.path, parts.query, ""))
        if broker_scheme(node) == "amqp":
            if not host and "," in hosts:
                raise ConfigurationError(f"broker URL {mask_url(url)!r}: an empty host in its list")
            try:
                urlsplit(node).port  # noqa: B018 - it raises for a port that is not a number
            except ValueError:
                raise ConfigurationError(
                    f"broker URL {mask_url(url)!r}: {host!r} has a port that is not a number "
                    "from 0 to 65535"
                ) from None
        nodes.append(node if "," in hosts else url)
    return nodes


def normalize_broker_url(broker: str | Sequence[str]) -> str:
    """One string for ``broker`` (see :func:`broker_nodes`): a string as given, a list
    as one URL with several hosts when its nodes differ only by host, else as its URLs
    joined by ``;``.

    :raises ConfigurationError: as :func:`broker_nodes`.
    """
    nodes = broker_nodes(broker)
    if isinstance(broker, str):
        return broker
    split = [urlsplit(node) for node in nodes]
    first = split[0]
    userinfo = first.netloc.rpartition("@")[0]
    if all(
        (p.scheme, p.netloc.rpartition("@")[0], p.path, p.query)
        == (first.scheme, userinfo, first.path, first.query)
        for p in split
    ):
        at = "@" if "@" in first.netloc else ""
        hosts = ",".join(p.netloc.rpartition("@")[2] for p in split)
        return urlunsplit((first.scheme, f"{userinfo}{at}{hosts}", first.path, first.query, ""))
    return ";".join(nodes)


def describe_node(url: str) -> str:
    """One broker node for an error message: its host, port and vhost, then its URL
    with the password masked.

    >>> describe_node("amqp://guest:secret@rabbit//")
    "host rabbit, port 5672, vhost '/' (amqp://guest:****@rabbit//)"
    """
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    vhost = unquote(parts.path[1:]) or "/"
    host = parts.hostname or "localhost"
    # The heartbeat is usually the one the app asked for, not the user's: noise here.
    query = "&".join(
        pair for pair in parts.query.split("&") if pair.partition("=")[0] != "heartbeat"
    )
    shown = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return f"host {host}, port {port}, vhost {vhost!r} ({mask_url(shown)})"


def amqp_url(url: str, heartbeat: int | None = None) -> str:
    """``url`` as the AMQP library expects it (Celery's ``pyamqp://`` and ``//`` vhost
    spelling), asking for ``heartbeat`` seconds unless the URL names its own; each of
    ``;``-separated URLs alike."""
    if ";" in url:
        return ";".join(amqp_url(part, heartbeat) for part in url.split(";") if part.strip())
    parts = urlsplit(url)
    scheme = "amqp" if parts.scheme == "pyamqp" else parts.scheme
    path = "/%2F" if parts.path in ("//",) else parts.path
    query = parts.query
    if heartbeat is not None and "heartbeat" not in parse_qs(query):
        query = f"{query}&heartbeat={heartbeat}" if query else f"heartbeat={heartbeat}"
    return urlunsplit((scheme, parts.netloc, path, query, parts.fragment))


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``****``, for logs and the banner; every
    node's, for several (``h1,h2`` hosts or ``;``-separated URLs)."""
    if ";" in url:
        return ";".join(mask_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    netloc = f"{userinfo.partition(':')[0]}:****{at}{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def broker_from_env(environ: Mapping[str, str]) -> str:
    """The broker URL ``environ`` names in ``AIOQUEUE_BROKER_URL``, else ``memory://``.

    :raises ConfigurationError: the URL's scheme is unsupported (the variable is named).
    """
    url = environ.get(BROKER_URL_VARIABLE, "").strip()
    if not url:
        return _DEFAULT_BROKER
    try:
        broker_scheme(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{BROKER_URL_VARIABLE}: {exc}") from None
    return url


def result_backend_from_env(environ: Mapping[str, str], default: str | None) -> str | None:
    """The result backend ``environ`` names in ``AIOQUEUE_RESULT_BACKEND`` (``None``
    for an empty value, ``none`` or ``disabled``), else ``default``.

    :raises ConfigurationError: the URL's scheme is unsupported (the variable is named).
    """
    if RESULT_BACKEND_VARIABLE not in environ:
        return default
    url = environ[RESULT_BACKEND_VARIABLE].strip()
    if url.lower() in _DISABLED:
        return None
    try:
        result_backend_scheme(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{RESULT_BACKEND_VARIABLE}: {exc}") from None
    return url
