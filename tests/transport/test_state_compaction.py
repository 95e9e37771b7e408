"""What a state read keeps and what it drops (pure)."""

from __future__ import annotations

import pytest

from aioqueue.transport.amqp import _compact_state, _StateRecord

NOW = 10**18
OLD = NOW - 3600 * 10**9  # an hour ago: past the tombstone's keeping time


def put(key: str, version: int, value: bytes = b"", writer: str = "w") -> _StateRecord:
    return _StateRecord(key, version, writer, False, value or str(version).encode())


def tombstone(key: str, version: int, writer: str = "w") -> _StateRecord:
    return _StateRecord(key, version, writer, True, b"")


@pytest.mark.parametrize(
    ("records", "values", "garbage"),
    [
        pytest.param([], {}, [], id="empty"),
        pytest.param([put("a", NOW)], {"a": str(NOW).encode()}, [], id="one"),
        pytest.param(
            [put("a", NOW - 2, b"old"), put("a", NOW - 1, b"new")],
            {"a": b"new"},
            [0],
            id="older-version-dropped",
        ),
        pytest.param(
            # Queue order does not decide: a compaction puts live records back behind
            # puts that arrived meanwhile.
            [put("a", NOW - 1, b"new"), put("a", NOW - 2, b"late-but-older")],
            {"a": b"new"},
            [1],
            id="version-not-queue-order",
        ),
        pytest.param(
            [put("a", NOW, b"x", writer="w1"), put("a", NOW, b"y", writer="w2")],
            {"a": b"y"},
            [0],
            id="tie-broken-by-writer",
        ),
        pytest.param(
            [put("a", NOW - 2), tombstone("a", NOW - 1)],
            {},
            [0],
            id="recent-tombstone-kept",
        ),
        pytest.param(
            [put("a", OLD - 1), tombstone("a", OLD)],
            {},
            [0, 1],
            id="old-tombstone-dropped",
        ),
        pytest.param(
            [tombstone("a", NOW - 2), put("a", NOW - 1, b"back")],
            {"a": b"back"},
            [0],
            id="put-after-delete",
        ),
        pytest.param(
            [_StateRecord(None, 0, "", False, b"foreign"), put("b", NOW, b"v")],
            {"b": b"v"},
            [],
            id="foreign-message-left-alone",
        ),
    ],
)
def test_compaction(
    records: list[_StateRecord], values: dict[str, bytes], garbage: list[int]
) -> None:
    assert _compact_state(records, now_ns=NOW) == (values, garbage)
