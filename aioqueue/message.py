"""Wire models: Celery task message protocol v2 and the ``rpc://`` result body.

A task message is three things on the wire (see CELERY_PROTOCOL.md): AMQP properties
(``correlation_id`` = task id, ``reply_to``, ``priority``), about twenty headers that are
always present (``null`` where unset), and a JSON body ``[args, kwargs, embed]``.
:class:`TaskMessage` holds all of it as one frozen model; :meth:`TaskMessage.headers`
and :meth:`TaskMessage.body` produce the wire form, :meth:`TaskMessage.from_wire` reads
it back and raises :class:`~aioqueue.exceptions.MalformedMessageError` naming the problem.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .exceptions import MalformedMessageError

__all__ = ("ResultMessage", "State", "TaskMessage", "full_headers", "new_id")

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"

# Protocol v2's headers in Celery's order, with the value a worker reads when one is
# missing (task and id are never missing).
_PROTOCOL_DEFAULTS: dict[str, Any] = {
    "lang": "py",
    "task": None,
    "id": None,
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "root_id": None,
    "parent_id": None,
    "argsrepr": None,
    "kwargsrepr": None,
    "origin": None,
    "ignore_result": False,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}


# The headers of protocol v2; anything else is a user header.
_KNOWN_HEADERS = frozenset(_PROTOCOL_DEFAULTS)


def new_id() -> str:
    """Return a fresh task id (a UUID4 string, as Celery uses)."""
    return str(uuid.uuid4())


class State(StrEnum):
    """Task states as Celery names them."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"

    @property
    def ready(self) -> bool:
        """True for the final states (the task will not change state again)."""
        return self in (State.SUCCESS, State.FAILURE, State.REVOKED)


Embed = dict[str, Any]


def full_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """A task message's ``headers`` with the protocol v2 keys it leaves out at their
    defaults, every key in Celery's order: the table a Celery client sends."""
    return {**_PROTOCOL_DEFAULTS, "timelimit": [None, None], "stamps": {}, **headers}


class TaskMessage(BaseModel):
    """One task invocation, exactly as Celery protocol v2 carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    callbacks: list[Embed] | None = None
    errbacks: list[Embed] | None = None
    chain: list[Embed] | None = None
    chord: Embed | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    shadow: str | None = None
    eta: datetime | None = None
    expires: datetime | None = None
    retries: int = 0
    # int | float keeps Celery's integers integers on the wire ([30, 20], not [30.0, 20.0]).
    timelimit: tuple[int | float | None, int | float | None] = (None, None)
    origin: str = _ORIGIN
    ignore_result: bool = False
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    replaced_task_nesting: int = 0
    stamped_headers: list[str] | None = None
    stamps: dict[str, Any] = Field(default_factory=dict)
    extra_headers: dict[str, Any] = Field(default_factory=dict)
    reply_to: str | None = None
    priority: int | None = None

    def headers(self) -> dict[str, Any]:
        """The AMQP headers table: protocol v2's keys, then the user's extra headers.

        A key whose value is the protocol's default (``None``, ``0``, no time limits,
        no stamps) is left out: every worker, Celery's included, reads a missing key as
        that default, and each header costs the broker and both ends on every message.
        :func:`full_headers` gives the table with every key, as Celery's client sends it.
        """
        headers: dict[str, Any] = {"lang": "py", "task": self.task, "id": self.id}
        if self.shadow is not None:
            headers["shadow"] = self.shadow
        if self.eta is not None:
            headers["eta"] = _iso(self.eta)
        if self.expires is not None:
            headers["expires"] = _iso(self.expires)
        if self.group is not None:
            headers["group"] = self.group
        if self.group_index is not None:
            headers["group_index"] = self.group_index
        if self.retries:
            headers["retries"] = self.retries
        if self.timelimit != (None, None):
            headers["timelimit"] = list(self.timelimit)
        headers["root_id"] = self.root_id or self.id
        if self.parent_id is not None:
            headers["parent_id"] = self.parent_id
        headers["argsrepr"] = self.argsrepr if self.argsrepr is not None else repr(tuple(self.args))
        headers["kwargsrepr"] = (
            self.kwargsrepr if self.kwargsrepr is not None else repr(self.kwargs)
        )
        headers["origin"] = self.origin
        headers["ignore_result"] = self.ignore_result
        if self.replaced_task_nesting:
            headers["replaced_task_nesting"] = self.replaced_task_nesting
        if self.stamped_headers is not None:
            headers["stamped_headers"] = self.stamped_headers
        if self.stamps:
            headers["stamps"] = self.stamps
        headers.update(self.extra_headers)
        return headers

    def full_headers(self) -> dict[str, Any]:
        """:meth:`headers` with every protocol v2 key (see :func:`full_headers`)."""
        return full_headers(self.headers())

    def body(self) -> list[Any]:
        """The body value ``[args, kwargs, embed]`` (before serialisation)."""
        embed = {
            "callbacks": self.callbacks,
            "errbacks": self.errbacks,
            "chain": self.chain,
            "chord": self.chord,
        }
        return [self.args, self.kwargs, embed]

    @classmethod
    def from_wire(
        cls,
        headers: dict[str, Any],
        body: Any,
        *,
        reply_to: str | None = None,
        priority: int | None = None,
    ) -> TaskMessage:
        """Build a message from decoded headers and body.

        :raises MalformedMessageError: the headers or body are not protocol v2; the
            message names the field at fault.
        """
        if not isinstance(headers.get("task"), str) or not isinstance(headers.get("id"), str):
            raise MalformedMessageError(
                "not a protocol v2 task message: headers 'task' and 'id' must be strings"
            )
        if not (isinstance(body, list | tuple) and len(body) == 3):
            raise MalformedMessageError(
                f"task {headers['task']!r}: body must be [args, kwargs, embed], "
                f"got {type(body).__name__}"
                + (f" of length {len(body)}" if isinstance(body, list | tuple) else "")
            )
        args, kwargs, embed = body
        if embed is None:
            embed = {}
        if not isinstance(embed, dict):
            raise MalformedMessageError(f"task {headers['task']!r}: embed must be an object")
        fields: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in headers.items():
            if key not in _KNOWN_HEADERS:
                extra[key] = value
            elif value is not None and key != "lang":
                fields[key] = value
        try:
            message = cls(
                args=args,
                kwargs=kwargs,
                callbacks=embed.get("callbacks"),
                errbacks=embed.get("errbacks"),
                chain=embed.get("chain"),
                chord=embed.get("chord"),
                extra_headers=extra,
                reply_to=reply_to or None,
                priority=priority,
                **fields,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise MalformedMessageError(f"task {headers['task']!r}: {problems}") from None
        if _naive(message.eta) or _naive(message.expires):
            # A time without a zone is UTC, as Celery reads it with its default timezone.
            message = message.model_copy(
                update={"eta": _utc(message.eta), "expires": _utc(message.expires)}
            )
        return message


class ResultMessage(BaseModel):
    """A task state as the ``rpc://`` backend sends it to the caller's reply queue."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: State
    result: Any = None
    traceback: str | None = None
    children: list[Any] = Field(default_factory=list)
    date_done: datetime | None = None
    #: The task's group and parent, sent (as Celery's) only when it has them.
    group_id: str | None = None
    parent_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The body value in Celery's key order."""
        body: dict[str, Any] = {
            "status": self.status.value,
            "result": self.result,
            "traceback": self.traceback,
            "children": self.children,
            "date_done": _iso(self.date_done),
        }
        if self.group_id is not None:
            body["group_id"] = self.group_id
        if self.parent_id is not None:
            body["parent_id"] = self.parent_id
        body["task_id"] = self.task_id
        return body


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _naive(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is None


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if _naive(value) else value  # type: ignore[union-attr]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
