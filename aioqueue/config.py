"""Broker and result-backend URLs: parsing, validation and display.

Nothing here reads the environment; ``cli.py`` does that and passes values in.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from .exceptions import ConfigurationError

__all__ = ("BrokerScheme", "amqp_url", "broker_scheme", "mask_url", "result_backend_scheme")

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


def amqp_url(url: str) -> str:
    """``url`` as aio-pika expects it (Celery's ``pyamqp://`` and ``//`` vhost spelling)."""
    parts = urlsplit(url)
    scheme = "amqp" if parts.scheme == "pyamqp" else parts.scheme
    path = "/%2F" if parts.path in ("//",) else parts.path
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


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
