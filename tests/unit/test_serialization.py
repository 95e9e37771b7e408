"""The JSON codec: kombu's conventions, pickle refused by default, clear decode errors."""

from __future__ import annotations

import json
import pickle
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from aioqueue.exceptions import ContentTypeError, DecodeError, EncodeError
from aioqueue.serialization import JSON, PICKLE, Codec

ID = uuid.UUID("455f5ef9-5df2-4428-b6b2-30e63d19efef")
WHEN = datetime(2026, 11, 24, 12, 32, 38, 353601, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (WHEN, {"__type__": "datetime", "__value__": "2026-11-24T12:32:38.353601+00:00"}),
        (
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            {"__type__": "datetime", "__value__": "2026-01-02T03:04:05+02:00"},
        ),
        (date(2026, 1, 2), {"__type__": "date", "__value__": "2026-01-02"}),
        (time(3, 4, 5), {"__type__": "time", "__value__": "03:04:05"}),
        (ID, {"__type__": "uuid", "__value__": str(ID)}),
        (
            Decimal("3.14159265358979323846"),
            {"__type__": "decimal", "__value__": "3.14159265358979323846"},
        ),
        (b"bytes", {"__type__": "bytes", "__value__": "bytes"}),
    ],
)
def test_kombu_typed_values_round_trip(value: Any, wire: dict[str, str]) -> None:
    codec = Codec()

    encoded = codec.encode({"v": value, "nested": [value]})

    assert json.loads(encoded) == {"v": wire, "nested": [wire]}
    decoded = codec.decode(encoded, JSON)
    assert decoded == {"v": value, "nested": [value]}
    assert type(decoded["v"]) is type(value)


def test_decimal_keeps_every_digit() -> None:
    value = Decimal("0.1000000000000000000000000001")
    assert Codec().decode(Codec().encode(value), JSON) == value


def test_plain_json_uses_json_dumps_defaults() -> None:
    assert Codec().encode([[3, 4], {}, {"chain": None}]) == b'[[3, 4], {}, {"chain": null}]'


def test_objects_that_only_look_typed_are_left_alone() -> None:
    codec = Codec()
    unknown = {"__type__": "spaceship", "__value__": "x"}
    extra = {"__type__": "uuid", "__value__": str(ID), "more": 1}
    assert codec.decode(codec.encode([unknown, extra]), JSON) == [unknown, extra]


@pytest.mark.parametrize("value", [object(), {1, 2}, {"x": complex(1, 2)}, [Codec]])
def test_unserialisable_value_raises_encode_error(value: Any) -> None:
    with pytest.raises(EncodeError, match="not JSON serializable"):
        Codec().encode(value)


@pytest.mark.parametrize("content_type", [JSON, None, ""])
def test_json_is_the_default_content_type(content_type: str | None) -> None:
    assert Codec().decode(b'{"a": [1]}', content_type) == {"a": [1]}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2", b'{"a": 1} trailing'],
)
def test_undecodable_json_raises_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="body is not valid JSON"):
        Codec().decode(body, JSON)


def test_pickle_is_refused_by_default() -> None:
    body = pickle.dumps([[3, 4], {}, {}])
    with pytest.raises(ContentTypeError) as caught:
        Codec().decode(body, PICKLE)
    assert PICKLE in str(caught.value)
    assert "not accepted" in str(caught.value)


@pytest.mark.parametrize(
    "content_type", ["application/x-yaml", "application/x-msgpack", "text/plain"]
)
def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(ContentTypeError, match=content_type):
        Codec(accept_pickle=False).decode(b"[]", content_type)


def test_pickle_accepted_only_when_enabled_and_warns() -> None:
    with pytest.warns(RuntimeWarning, match="pickle"):
        codec = Codec(accept_pickle=True)
    value = [[3, 4], {"when": WHEN}, {}]
    assert codec.decode(pickle.dumps(value), PICKLE) == value
    with pytest.raises(DecodeError, match="not a valid pickle"):
        codec.decode(b"not a pickle", PICKLE)
    # Sending stays JSON.
    assert codec.content_type == JSON
    assert json.loads(codec.encode([1])) == [1]
