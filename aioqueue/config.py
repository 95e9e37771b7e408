"""An app's settings, and broker and result-backend URLs: parsing, validation, display.

Nothing here reads ``os.environ`` itself: the callers at the edge (``cli.py``,
:meth:`App.from_env <aioqueue.App.from_env>` and an ``App`` left without a broker) pass
the environment in, and :func:`broker_from_env` / :func:`result_backend_from_env` say
what it holds (the ``AIOQUEUE_`` variables, documented in the README).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .exceptions import ConfigurationError

__all__ = (
    "BROKER_URL_VARIABLE",
    "RESULT_BACKEND_VARIABLE",
    "AppConfig",
    "BrokerScheme",
    "amqp_url",
    "broker_from_env",
    "broker_scheme",
    "mask_url",
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

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("an app needs a name")
        if not self.default_queue:
            raise ConfigurationError("default_queue must not be empty")
        for name in ("publish_timeout", "chord_expires", "result_expires"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.broker_url is not None:
            broker_scheme(self.broker_url)
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


def amqp_url(url: str, heartbeat: int | None = None) -> str:
    """``url`` as the AMQP library expects it (Celery's ``pyamqp://`` and ``//`` vhost
    spelling), asking for ``heartbeat`` seconds unless the URL names its own."""
    parts = urlsplit(url)
    scheme = "amqp" if parts.scheme == "pyamqp" else parts.scheme
    path = "/%2F" if parts.path in ("//",) else parts.path
    query = parts.query
    if heartbeat is not None and "heartbeat" not in parse_qs(query):
        query = f"{query}&heartbeat={heartbeat}" if query else f"heartbeat={heartbeat}"
    return urlunsplit((scheme, parts.netloc, path, query, parts.fragment))


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``****``, for logs and the banner."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:****@{host}"
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
