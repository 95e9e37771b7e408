"""Body codecs keyed by content type. JSON always; pickle only when explicitly enabled.

JSON follows kombu's conventions so Celery peers read the same values: ``json.dumps``
with its default separators, and datetimes, UUIDs, decimals and bytes as
``{"__type__": ..., "__value__": ...}`` objects.
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

from .exceptions import ContentTypeError, DecodeError, EncodeError

__all__ = ("JSON", "PICKLE", "Codec")

JSON = "application/json"
PICKLE = "application/x-python-serialize"

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
        decode = _DECODERS.get(obj["__type__"])
        if decode is not None:
            return decode(obj["__value__"])
    return obj


# One of each, built once: json.dumps/loads with a hook build a new one per call.
_ENCODER = json.JSONEncoder(default=_default)
_DECODER = json.JSONDecoder(object_hook=_object_hook)


class Codec:
    """Encodes and decodes message bodies.

    :param accept_pickle: also accept and decode ``application/x-python-serialize``
        bodies. Unpickling runs arbitrary code from whoever can publish to the broker,
        so this warns once when enabled; aioqueue itself always sends JSON.
    """

    def __init__(self, *, accept_pickle: bool = False) -> None:
        self.accept_pickle = accept_pickle
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
