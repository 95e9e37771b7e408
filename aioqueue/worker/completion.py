"""What follows a finished task: the next chain step, links, errbacks, chord parts.

:func:`followups` decides (pure) what to publish for a finished task; the consumer
publishes it together with the task's own result, and :func:`~aioqueue.worker.chord.
record_part` handles the chord, so all workflow continuation starts here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..canvas import NOTHING, Plan, Step, plan
from ..exceptions import AioQueueError
from ..message import ResultMessage, State, TaskMessage
from ..serialization import Codec
from ..transport.base import Publish
from .execute import failure_fanout

__all__ = ("Followups", "followups")


@dataclass(slots=True)
class Followups:
    """Messages to publish after a task finished."""

    tasks: Plan = field(default_factory=Plan)  # new task messages (next step, links)
    states: list[Publish] = field(default_factory=list)  # failures for steps never run
    # Chord members that will never run (a chain member failed before its last step):
    # their chord must record them as failed, else it would wait for them forever.
    chord_members: list[TaskMessage] = field(default_factory=list)

    def children(self) -> list[Any]:
        """The ``children`` field of the task's result, as Celery's: ``[[id, None], None]``
        for a task, ``[[group id, None], [its members' ...]]`` for a group."""
        out: list[Any] = []
        groups: dict[str, list[Any]] = {}
        for outgoing in self.tasks.messages:
            message = outgoing.message
            child = [[message.id, None], None]
            if message.group is None or message.chord is not None:
                out.append(child)
                continue
            if message.group not in groups:
                groups[message.group] = []
                out.append([[message.group, None], groups[message.group]])
            groups[message.group].append(child)
        return out


def followups(message: TaskMessage, state: ResultMessage, codec: Codec) -> Followups:
    """What ``message`` finishing in ``state`` sets in motion (pure)."""
    out = Followups()
    root_id = message.root_id or message.id
    if state.status is State.SUCCESS:
        if message.chain:
            step = Step(state.result, message.id, root_id, chain=message.chain[:-1])
            out.tasks.extend(plan(message.chain[-1], step))
        for callback in message.callbacks or ():
            out.tasks.extend(plan(callback, Step(state.result, message.id, root_id)))
        return out
    # Old-style errbacks, as Celery applies them: with the failed task's id.
    for errback in message.errbacks or ():
        out.tasks.extend(plan(errback, Step(message.id, message.id, root_id)))
    if message.chain:
        rest = {"subtask_type": "chain", "kwargs": {"tasks": message.chain}, "options": {}}
        out.states.extend(failure_fanout(codec, rest, state))
        for node in message.chain:
            if node.get("subtask_type") is None and (node.get("options") or {}).get("chord"):
                try:
                    member = plan(node, Step(NOTHING, message.id, root_id)).messages
                except AioQueueError:
                    continue
                out.chord_members.extend(o.message for o in member)
    return out
