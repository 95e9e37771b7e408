"""The record of tasks a worker finished: what a redelivery of one finds."""

from __future__ import annotations

import pytest

from aioqueue.exceptions import ConfigurationError
from aioqueue.message import ResultMessage, State
from aioqueue.worker.finished import DEFAULT_CAPACITY, Finished, FinishedTasks


def state(task_id: str, value: int = 0) -> ResultMessage:
    return ResultMessage(task_id=task_id, status=State.SUCCESS, result=value)


def test_a_recorded_task_is_found_with_its_outcome_and_confirmation() -> None:
    record = FinishedTasks(4)
    record.record("a", state("a", 1), confirmed=True)
    record.record("b", state("b", 2), confirmed=False)
    assert record.get("a") == Finished(state("a", 1), confirmed=True)
    assert record.get("b") == Finished(state("b", 2), confirmed=False)
    assert record.get("c") is None
    assert "a" in record and "c" not in record


def test_recording_again_replaces_the_outcome() -> None:
    record = FinishedTasks(4)
    record.record("a", state("a", 1), confirmed=False)
    # The redelivery published the outcome: confirmed now.
    record.record("a", state("a", 1), confirmed=True)
    found = record.get("a")
    assert found is not None and found.confirmed
    assert len(record) == 1


def test_the_least_recently_used_id_is_forgotten_first() -> None:
    record = FinishedTasks(3)
    for task_id in "abc":
        record.record(task_id, state(task_id), confirmed=True)
    assert record.get("a") is not None  # used: now the newest
    record.record("d", state("d"), confirmed=True)
    assert len(record) == 3
    assert record.get("b") is None
    assert [t for t in "acd" if record.get(t) is not None] == ["a", "c", "d"]


def test_the_bound_holds_under_many_tasks() -> None:
    record = FinishedTasks(100)
    for i in range(1_000):
        record.record(str(i), state(str(i), i), confirmed=True)
    assert len(record) == 100
    assert record.get("899") is None
    found = record.get("999")
    assert found is not None and found.state.result == 999


def test_capacity_zero_remembers_nothing() -> None:
    record = FinishedTasks(0)
    record.record("a", state("a"), confirmed=True)
    assert record.get("a") is None
    assert len(record) == 0


def test_default_capacity_and_a_negative_one() -> None:
    assert FinishedTasks().capacity == DEFAULT_CAPACITY == 10_000
    with pytest.raises(ConfigurationError, match="finished_records must be 0 or more, got -1"):
        FinishedTasks(-1)
