"""Celery 5.7 wire captures, copied from ``../shared/celery-vectors`` into ``tests/vectors``.

CI runs on a fresh clone where ``../shared`` may not exist, so the tests read the copies.
Each vector holds the exchange, routing key, AMQP properties, headers, the exact body
bytes (base64) and the decoded body, and the ``volatile`` fields that change per run.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from aioqueue.transport.base import Envelope

__all__ = (
    "FOLDERS",
    "RESULT_CASES",
    "SHARED_DIR",
    "TASK_CASES",
    "VECTORS_DIR",
    "blank_volatile",
    "body_bytes",
    "envelope_of",
    "folder_vector",
    "folder_vectors",
    "load_vector",
    "volatile_headers",
)

VECTORS_DIR = Path(__file__).parent / "vectors"
# Where the vectors come from, beside the repository (absent on a fresh clone).
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared" / "celery-vectors"

TASK_CASES = (
    "task-delay",
    "task-send_task",
    "task-send_task_kwargs",
    "task-ignore_result",
    "task-apply_async_countdown",
    "task-apply_async_eta_expires_priority",
    "task-apply_async_queue_other",
    "task-apply_async_time_limits_headers",
)
RESULT_CASES = (
    "result-success",
    "result-failure",
    "result-kwargs-call",
    "result-retry",
    "result-after-retry",
)


def load_vector(case: str) -> dict[str, Any]:
    """The vector named ``case`` (e.g. ``"task-delay"``)."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / f"{case}.json").read_text("utf-8"))
    assert data["case"] == case, f"{case}.json holds {data['case']!r}"
    return data


def body_bytes(vector: dict[str, Any]) -> bytes:
    """The exact body bytes Celery published."""
    return base64.b64decode(vector["body_b64"])


def volatile_headers(vector: dict[str, Any]) -> frozenset[str]:
    """The header names whose values change from run to run."""
    return frozenset(
        entry.removeprefix("headers.")
        for entry in vector["volatile"]
        if entry.startswith("headers.")
    )


# The folders of message vectors (transcripts/ and topology/ hold no messages).
FOLDERS = ("client", "worker", "events", "beat", "chord")
PLACEHOLDER = "<volatile>"


def folder_vectors(folder: str) -> list[str]:
    """The message vectors copied from ``folder``, as ``folder/name`` (notes, whose names
    start with ``_``, left out)."""
    return sorted(
        f"{folder}/{path.stem}"
        for path in (VECTORS_DIR / folder).glob("*.json")
        if not path.name.startswith("_")
    )


def folder_vector(name: str) -> dict[str, Any]:
    """The vector ``folder/name`` (e.g. ``"client/delay"``)."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / f"{name}.json").read_text("utf-8"))
    return data


def envelope_of(vector: dict[str, Any]) -> Envelope:
    """The message as a worker receives it: body, headers and properties of the capture."""
    props = vector["properties"]
    return Envelope(
        body=body_bytes(vector),
        headers=dict(vector["headers"]),
        content_type=props.get("content_type", ""),
        content_encoding=props.get("content_encoding", ""),
        correlation_id=props.get("correlation_id"),
        reply_to=props.get("reply_to"),
        priority=props.get("priority"),
        persistent=props.get("delivery_mode") == 2,
    )


def blank_volatile(doc: Any, pointers: list[str]) -> Any:
    """A copy of ``doc`` with each JSON Pointer's value (or, with the suffix ``" (key)"``,
    member name) replaced by a placeholder; a pointer ``doc`` lacks is ignored."""
    doc = json.loads(json.dumps(doc))
    for pointer in pointers:
        is_key = pointer.endswith(" (key)")
        parts = [
            p.replace("~1", "/").replace("~0", "~")
            for p in pointer.removesuffix(" (key)").split("/")[1:]
        ]
        parent = doc
        for part in parts[:-1]:
            if isinstance(parent, list) and part.isdigit() and int(part) < len(parent):
                parent = parent[int(part)]
            elif isinstance(parent, dict) and part in parent:
                parent = parent[part]
            else:
                break
        else:
            last = parts[-1]
            if isinstance(parent, dict) and last in parent:
                if is_key:
                    parent[PLACEHOLDER] = parent.pop(last)
                else:
                    parent[last] = PLACEHOLDER
            elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
                parent[int(last)] = PLACEHOLDER
    return doc
