"""Body codecs keyed by content type. JSON always; pickle only when explicitly enabled.

JSON follows kombu's conventions so Celery peers read the same values: ``json.dumps``
with its default separators, and datetimes, UUIDs, decimals and bytes as
``{"__type__": ..., "__value__": ...}`` objects.

:meth:`Codec.admit` is what a worker checks before it decodes anything: the body's
size against ``max_message_size``, its content encoding, and that it is not compressed
(kombu's ``compression`` header; aioqueue does not inflate bodies, so no zip bomb can
grow past the bound).
"""

from __future__ import annotations

import json
import pickle
import uuid
import warnings
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from .exceptions import ConfigurationError, ContentTypeError, DecodeError, EncodeError

__all__ = ("DEFAULT_MAX_MESSAGE_SIZE", "JSON", "PICKLE", "Codec")

JSON = "application/json"
PICKLE = "application/x-python-serialize"

#: The largest body a worker decodes by default (10 MiB): well above what task arguments
#: need, well below what RabbitMQ accepts (16 MiB by default from 4.0, 128 MiB before).
DEFAULT_MAX_MESSAGE_SIZE = 10 * 2**20

# Content encodings of a body that is bytes as they are: none given, kombu's "utf-8"
# for JSON and "binary" for pickle and raw bytes.
_PLAIN_ENCODINGS = frozenset({"", "utf-8", "utf8", "binary"})

_ENCODERS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    datetime: ("datetime", datetime.isoformat),
    date: ("date", date.isoformat),
    time: ("time", time.isoformat),
    uuid.UUID: ("uuid", str),
    Decimal: ("decimal", str),
    bytes: ("bytes", lambda b: b.decode("utf-8")),
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": Decimal,
    "bytes": lambda s: s.encode("utf-8"),
}


def _default(value: Any) -> Any:
    entry = _ENCODERS.get(type(value))
    if entry is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    name, encode = entry
    return {"__type__": name, "__value__": encode(value)}


def _object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        name = obj["__type__"]
        decode = _DECODERS.get(name) if isinstance(name, str) else None
        if decode is not None:
            try:
                return decode(obj["__value__"])
            except (TypeError, ValueError, ArithmeticError, AttributeError):
                # Each constructor fails its own way (Decimal with InvalidOperation,
                # UUID with AttributeError); the decoder turns ValueError into its error.
                raise ValueError(f"not a valid {name} value: {obj['__value__']!r:.80}") from None
    return obj


# One of each, built once: json.dumps/loads with a hook build a new one per call.
_ENCODER = json.JSONEncoder(default=_default)
_DECODER = json.JSONDecoder(object_hook=_object_hook)


class Codec:
    """Encodes and decodes message bodies.

    :param accept_pickle: also accept and decode ``application/x-python-serialize``
        bodies. Unpickling runs arbitrary code from whoever can publish to the broker,
        so this warns once when enabled; aioqueue itself always sends JSON.
    :param max_message_size: the largest body, in bytes, :meth:`admit` lets a worker
        decode.
    :raises ConfigurationError: ``max_message_size`` is not a positive integer.
    """

    def __init__(
        self, *, accept_pickle: bool = False, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        if (
            not isinstance(max_message_size, int)
            or isinstance(max_message_size, bool)
            or max_message_size < 1
        ):
            raise ConfigurationError(
                f"max_message_size must be a positive number of bytes, got {max_message_size!r}"
            )
        self.accept_pickle = accept_pickle
        self.max_message_size = max_message_size
        if accept_pickle:
            warnings.warn(
                "pickle bodies are accepted: anyone who can publish to the broker can run "
                "code on this process",
                RuntimeWarning,
                stacklevel=2,
            )

    content_type = JSON
    content_encoding = "utf-8"

    def encode(self, value: Any) -> bytes:
        """Serialise ``value`` to JSON bytes.

        :raises EncodeError: the value (or something inside it) is not serialisable.
        """
        try:
            return _ENCODER.encode(value).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise EncodeError(str(exc)) from None
        except RecursionError:
            raise EncodeError("the value is nested too deeply to serialise") from None

    def admit(self, body: bytes, content_encoding: str | None, compression: Any = None) -> None:
        """Check that a worker may decode ``body`` at all, before anything reads it.

        :param compression: kombu's ``compression`` header, if the message has one.
        :raises DecodeError: the body is larger than ``max_message_size``.
        :raises ContentTypeError: the body is compressed or in an unknown encoding.
        """
        if len(body) > self.max_message_size:
            raise DecodeError(
                f"message of {len(body):,} bytes exceeds max_message_size {self.max_message_size:,}"
            )
        if compression is not None:
            raise ContentTypeError(
                f"the body is compressed ({compression!r}); compressed bodies are not accepted"
            )
        if content_encoding and content_encoding.lower() not in _PLAIN_ENCODINGS:
            raise ContentTypeError(
                f"content encoding {content_encoding!r} is not accepted (accepted: utf-8, binary)"
            )

    def decode(self, body: bytes, content_type: str | None) -> Any:
        """Deserialise a body according to its content type.

        :raises ContentTypeError: the content type is not accepted.
        :raises DecodeError: the body is not valid for its content type.
        """
        if content_type in (JSON, None, ""):
            try:
                text = body.decode("utf-8") if isinstance(body, bytes | bytearray) else body
                return _DECODER.decode(text)
            except (UnicodeDecodeError, ValueError) as exc:
                raise DecodeError(f"body is not valid JSON: {exc}") from None
            except RecursionError:
                # Python's JSON parser recurses once per level: a hostile body must not
                # take the worker's stack.
                raise DecodeError("body is not valid JSON: nested too deeply") from None
        if content_type == PICKLE and self.accept_pickle:
            try:
                return pickle.loads(body)  # opted in explicitly, warned above
            except Exception as exc:
                raise DecodeError(f"body is not a valid pickle: {exc}") from None
        raise ContentTypeError(
            f"content type {content_type!r} is not accepted (accepted: {JSON}"
            + (f", {PICKLE}" if self.accept_pickle else "")
            + ")"
        )
