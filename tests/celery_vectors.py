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

__all__ = (
    "RESULT_CASES",
    "SHARED_DIR",
    "TASK_CASES",
    "VECTORS_DIR",
    "body_bytes",
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
