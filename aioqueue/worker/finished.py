"""The tasks a worker finished lately, so that a redelivery of one does not run it again.

A task that finishes after its channel died cannot be acked: RabbitMQ redelivers its
message, often to the same worker, which reconnected meanwhile. The worker keeps the
outcome of each task it concluded here (the state it published, or tried to) and
whether the broker confirmed that publication. A redelivery of a task found here is not
run: if its outcome was confirmed, it is only acked; if not, the outcome is published
(with what follows it in its workflow) and then acked.

Duplicates that can still happen (at-least-once, as the broker promises):

- the worker process dies after its outcome was published and before the ack: the
  record dies with it, and the task runs again wherever the message goes next;
- the redelivery reaches another worker, which has no record of it: it runs again
  there;
- the record is bounded (``capacity`` task ids, the oldest forgotten first): a
  redelivery of a task forgotten already runs again;
- an outcome published but not confirmed (the connection went while waiting for the
  confirm) is published again: the caller may receive its result twice (the rpc backend
  ignores a second one), and follow-ups (the next step of a chain, links) that had
  reached the broker go out a second time.

This module is a plain data structure; :mod:`aioqueue.worker.consumer` decides with it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..exceptions import ConfigurationError
from ..message import ResultMessage

__all__ = ("DEFAULT_CAPACITY", "Finished", "FinishedTasks")

#: Task ids a worker remembers by default.
DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class Finished:
    """A task concluded by this worker."""

    #: What it came to: the state published to the caller and down its workflow.
    state: ResultMessage
    #: Whether the broker confirmed every publication of that outcome.
    confirmed: bool


class FinishedTasks:
    """The last ``capacity`` task ids concluded here, with their outcome (an LRU).

    :param capacity: task ids kept; 0 keeps none (every redelivery runs again).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ConfigurationError(f"finished_records must be 0 or more, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, Finished] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def record(self, task_id: str, state: ResultMessage, *, confirmed: bool) -> None:
        """Remember that ``task_id`` came to ``state`` (newest first to be kept)."""
        if self.capacity == 0:
            return
        entries = self._entries
        entries[task_id] = Finished(state, confirmed)
        entries.move_to_end(task_id)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def get(self, task_id: str) -> Finished | None:
        """The outcome of ``task_id`` if it is remembered (it becomes the newest)."""
        found = self._entries.get(task_id)
        if found is not None:
            self._entries.move_to_end(task_id)
        return found
